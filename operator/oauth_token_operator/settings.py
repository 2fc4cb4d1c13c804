"""Every operator knob, from flags or ``OAUTH_TOKEN_OPERATOR_*`` environment variables (pydantic-settings).

Flags given to ``oauth-token-operator run``/``token`` win over the environment, which wins over the defaults
below. Each field's description is the documentation users see in ``--help`` and in the chart's values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
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
        60, ge=0, le=600, description="How long a pod may take to see an updated Secret volume (kubelet "
                                      "sync period + cache TTL); refreshes land at least this long before "
                                      "expiry when the lifetime allows.")
    kube_client_threads: int = Field(
        16, ge=1, le=256, description="Threads for calls through the (synchronous) Kubernetes client.")
    credentials_expiry_warning: str = Field(
        "168h", pattern=DURATION_PATTERN,
        description="How long before a client secret expires (the credentials Secret's client_secret_expires_at) "
                    "the CredentialsExpiring condition turns True and a Warning Event is posted (Go duration); "
                    "a resource's spec.credentialsExpiryWarning overrides it.")
