"""Every operator knob, from flags or ``OAUTH_TOKEN_OPERATOR_*`` environment variables (pydantic-settings).

Flags given to ``oauth-token-operator run``/``token`` win over the environment, which wins over the defaults
below. Each field's description is the documentation users see in ``--help`` and in the chart's values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .api import DURATION_PATTERN

__all__ = ["OperatorSettings"]


class OperatorSettings(BaseSettings):
    """Operator-wide settings. Per-resource behaviour lives in the resource's spec instead."""

    model_config = SettingsConfigDict(env_prefix="OAUTH_TOKEN_OPERATOR_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch; empty means all namespaces (needs cluster-wide RBAC).")
    allow_insecure_http: bool = Field(
        False, description="Allow plain http:// token and issuer URLs. Every such resource is flagged in its "
                           "Ready message and by a Warning Event. For local development only.")
    allow_insecure_skip_verify: bool = Field(
        False, description="Allow tls.insecureSkipVerify on resources. Off by default: a resource could otherwise "
                           "send credentials to any HTTPS server that answers, and reach internal HTTPS "
                           "services without a trusted certificate. Every allowed resource is flagged.")
    denied_endpoint_networks: str | None = Field(
        None, description="Comma-separated CIDRs that token, issuer and discovered endpoints may not connect to "
                          "(checked on every resolved address, and on the address actually connected to). "
                          "Unset: loopback, link-local, unspecified, cloud metadata addresses and the cluster's "
                          "own API server address; an explicit value replaces that list; an empty value denies "
                          "nothing.")
    metrics_port: int = Field(8080, ge=0, le=65535,
                              description="Port of the Prometheus /metrics endpoint; 0 turns metrics off.")
    health_port: int = Field(8081, ge=0, le=65535,
                             description="Port of the liveness endpoint (/healthz); 0 turns it off.")
    log_format: Literal["text", "json"] = Field("text", description="text (default) or json (one object "
                                                                    "per line).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    peering: str | None = Field(
        None, description="Kopf peering name for running several replicas with leader election; empty runs "
                          "standalone (one replica).")
    peering_priority: int | None = Field(
        None, ge=0, le=2**31 - 1,
        description="This replica's Kopf peering priority: the live peer with the highest priority works, the "
                    "others stand by. Peers with EQUAL priorities all pause (Kopf's rule), so the default is a "
                    "random priority per process start: identical replicas of one Deployment then differ.")
    peering_lifetime_seconds: int = Field(
        60, ge=5, le=3600,
        description="How long a peer's keep-alive counts (Kopf's peering lifetime; it is renewed 5-10 s "
                    "before it runs out). A stand-by replica takes over at most this long after the active one "
                    "dies without saying goodbye (killed, node lost).")
    request_timeout_seconds: float = Field(10.0, gt=0, le=300,
                                           description="Timeout of one token or discovery request.")
    max_response_bytes: int = Field(262_144, ge=1024,
                                    description="Token responses larger than this are refused unread.")
    default_token_lifetime_seconds: int = Field(
        3600, ge=60, description="Lifetime assumed when a response has no expires_in and the token is not a "
                                 "JWT with exp (reported in status.expirySource).")
    renew_before_percentage: int = Field(
        33, ge=5, le=90, description="Default refresh point: request a new token when this percentage of "
                                     "its lifetime remains (cert-manager's 2/3 rule).")
    kubelet_sync_seconds: int = Field(
        90, ge=0, le=3600,
        description="How long a pod may take to see an updated Secret volume: the kubelet's syncFrequency "
                    "(1m by default) times 1.5 (it jitters each pod's sync by up to 50 %), plus the "
                    "configMapAndSecretChangeDetectionStrategy cache TTL when that is Cache. Measured with "
                    "the default 1m: 69-83 s, up to 90 s. New tokens land at least this long plus the request "
                    "timeout before the old ones expire, when the lifetime allows. For a kubelet with a longer "
                    "syncFrequency set syncFrequency x 1.5 (+ TTL), e.g. 180 for 2m.")
    enable_rollout_restarts: bool = Field(
        False, description="Act on spec.rolloutRestartTargets (restart the named Deployments, StatefulSets and "
                           "DaemonSets after each new token). Off by default: the install then grants no "
                           "permission on workloads, and a resource that lists targets says in its status that "
                           "the feature is off.")
    kube_client_threads: int = Field(
        16, ge=1, le=256, description="Connections for the Kubernetes calls the refresh cycles make (more calls "
                                       "wait for a free one); the watches have their own.")
    kube_request_timeout_seconds: float = Field(
        15.0, gt=0, le=300,
        description="Read timeout of one Kubernetes API call: a half-open connection cannot hold a pooled "
                    "connection longer than this.")
    require_secret_label: bool = Field(
        False, description="Read a referenced Secret only if it carries the label "
                           "oauth-token-operator.dev/allow-read=true. Without it, whoever may create an "
                           "OAuthClientCredential in a namespace can have any Secret of that namespace sent to a "
                           "URL of their choice; with it, only Secrets someone deliberately labelled (and "
                           "labelling needs write access to the Secret). The operator then also watches only "
                           "labelled Secrets and its own target Secrets.")

    @field_validator("denied_endpoint_networks")
    @classmethod
    def _networks_parse(cls, value: str | None) -> str | None:
        if value is not None:
            from .tokens.networks import parse_networks

            parse_networks(value)  # a ValueError names the bad entry
        return value
    credentials_expiry_warning: str = Field(
        "168h", pattern=DURATION_PATTERN,
        description="How long before a client secret expires (the credentials Secret's client_secret_expires_at) "
                    "the CredentialsExpiring condition turns True and a Warning Event is posted (Go duration); "
                    "a resource's spec.credentialsExpiryWarning overrides it.")
