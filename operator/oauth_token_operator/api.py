"""The ``OAuthClientCredential`` API (v1alpha1) as pydantic models: the single source of truth.

``crdgen`` renders ``crds/*.yaml`` from these models, the operator parses live objects with them, and the
``token`` command validates files with them, so the three can never disagree. Descriptions here become
``kubectl explain`` text: write them for users. Rules that span fields are written twice on purpose, once as
CEL (``x-kubernetes-validations``, enforced by the API server at apply time) and once as a pydantic validator
(enforced for ``token -f FILE`` and for objects created before the rule existed); a unit test checks both.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "API_VERSION",
    "CLIENT_SECRET_EXPIRES_AT_KEY",
    "GROUP",
    "HMAC_ALGORITHMS",
    "KIND",
    "PLURAL",
    "REFRESH_ANNOTATION",
    "SECRET_FREE_METHODS",
    "SECRET_OPT_IN_LABEL",
    "SHORT_NAME",
    "TEMPLATE_PLACEHOLDERS",
    "VERSION",
    "AuthMethod",
    "CABundleRef",
    "ClientCredentialsSecretRef",
    "Condition",
    "LocalObjectRef",
    "OAuthClientCredential",
    "OAuthClientCredentialSpec",
    "OAuthClientCredentialStatus",
    "ObjectMeta",
    "RefreshPolicy",
    "RolloutRestartTarget",
    "SecretKeyRef",
    "ServiceAccountAssertion",
    "SigningAlgorithm",
    "TLSConfig",
    "TargetSecret",
    "TargetTemplate",
    "parse_duration",
]

GROUP = "oauth-token-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "OAuthClientCredential"
PLURAL = "oauthclientcredentials"
SINGULAR = "oauthclientcredential"
SHORT_NAME = "occ"
REFRESH_ANNOTATION = f"{GROUP}/refresh"
# With OAUTH_TOKEN_OPERATOR_REQUIRE_SECRET_LABEL, a referenced Secret is read only when it carries this label
# set to "true" (SECURITY.md: creating an OAuthClientCredential then no longer reads any Secret of the namespace).
SECRET_OPT_IN_LABEL = f"{GROUP}/allow-read"
# RFC 7591's name for when a client secret expires; read from the credentials Secret when present.
CLIENT_SECRET_EXPIRES_AT_KEY = "client_secret_expires_at"

# RFC 3986 scheme + something that could be a host; finer checks (http vs https) happen in the operator,
# because whether plain http is allowed is an operator setting, not a property of the resource.
# No "@" in the authority: userinfo (user:password@) in a URL is refused; credentials belong in Secrets, and
# the URL is echoed in status.
URL_PATTERN = r"^https?://[^\s/?#@]+([/?#]\S*)?$"
USERINFO_RULE = "!self.matches('^[a-zA-Z][-a-zA-Z0-9+.]*://[^/?#]*@')"
"""CEL: a URL-shaped value with userinfo is refused (for fields that need not be URLs, e.g. assertionAudience)."""
_USERINFO = re.compile(r"^[a-zA-Z][-a-zA-Z0-9+.]*://[^/?#]*@")
# A Kubernetes object name (DNS subdomain) and a Secret/ConfigMap data key.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# Go-style durations as cert-manager accepts them: 90s, 10m, 1h30m.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Form parameters the operator sets itself (see RESERVED_PARAMS).
_RESERVED = ("grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type",
             "scope", "audience", "resource")
# The only names target.template may substitute: plain replacement, never evaluation.
TEMPLATE_PLACEHOLDERS = ("access_token", "token_type", "expires_at", "scope")
_PLACEHOLDER_USE = re.compile(r"\$\{([^}]*)\}")


class _Model(BaseModel):
    # Unknown fields are an error: a typo such as `scope:` for `scopes:` must not be silently ignored.
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=False)


class AuthMethod(StrEnum):
    """How the client authenticates to the token endpoint (RFC 6749 §2.3, RFC 7523, RFC 8705)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"
    TLS_CLIENT_AUTH = "tls_client_auth"
    CLIENT_SECRET_JWT = "client_secret_jwt"
    KUBERNETES_SERVICE_ACCOUNT = "kubernetes_service_account"


class SigningAlgorithm(StrEnum):
    """JWS algorithms for client assertions: RS*/PS*/ES* for ``private_key_jwt``, HS* for ``client_secret_jwt``."""

    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"
    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"
    HS256 = "HS256"
    HS384 = "HS384"
    HS512 = "HS512"


# The HMAC algorithms: only these with client_secret_jwt, and client_secret_jwt only with these.
HMAC_ALGORITHMS = frozenset({SigningAlgorithm.HS256, SigningAlgorithm.HS384, SigningAlgorithm.HS512})


class ClientCredentialsSecretRef(_Model):
    """A Secret in the resource's own namespace holding the client ID (and secret)."""

    name: str = Field(description="Name of the Secret, in the same namespace as this resource.",
                      pattern=NAME_PATTERN, max_length=253)
    client_id_key: str = Field("client_id", alias="clientIDKey", pattern=KEY_PATTERN,
                               description="Key in the Secret holding the client ID (consumer key).")
    client_secret_key: str = Field("client_secret", alias="clientSecretKey", pattern=KEY_PATTERN,
                                   description="Key in the Secret holding the client secret (consumer secret). "
                                               "Read only by client_secret_basic, client_secret_post and "
                                               "client_secret_jwt.")
    expires_at_key: str | None = Field(
        None, alias="expiresAtKey", pattern=KEY_PATTERN,
        description="Key in the Secret saying when the client secret expires (RFC 3339 or Unix seconds; 0 = "
                    "never): shown in status.credentialsExpireAt and warned about ahead of time. Default: "
                    "client_secret_expires_at (RFC 7591's name), read when present; a key named here must exist.")


class SecretKeyRef(_Model):
    """One key of a Secret in the resource's own namespace."""

    name: str = Field(description="Name of the Secret, in the same namespace as this resource.",
                      pattern=NAME_PATTERN, max_length=253)
    key: str = Field("private_key", pattern=KEY_PATTERN,
                     description="Key in the Secret holding the PEM-encoded private key (RSA or EC).")


class ServiceAccountAssertion(_Model):
    """A ServiceAccount whose tokens authenticate the client (authMethod kubernetes_service_account)."""

    service_account_name: str = Field(
        alias="serviceAccountName", pattern=NAME_PATTERN, max_length=253,
        description="The ServiceAccount, in the same namespace as this resource. It must opt in with the "
                    "annotation oauth-token-operator.dev/token-audiences listing the audience (comma-separated).")
    audience: str | None = Field(
        None, min_length=1, max_length=2048,
        description="The aud of the minted token: what the authorization server expects, e.g. "
                    "api://AzureADTokenExchange for Entra ID or the realm issuer for Keycloak. Default: the "
                    "token endpoint URL.")
    expiration_seconds: int = Field(
        600, alias="expirationSeconds", ge=600, le=3600,
        description="Requested lifetime of each minted token (TokenRequest API; at least 600). A token is "
                    "minted for every token request and used once, so a longer lifetime only adds risk.")


class LocalObjectRef(_Model):
    """A Secret in the resource's own namespace."""

    name: str = Field(description="Name of the Secret, in the same namespace as this resource.",
                      pattern=NAME_PATTERN, max_length=253)


class CABundleRef(_Model):
    """PEM certificates that are trusted in addition to the system roots."""

    kind: Literal["ConfigMap", "Secret"] = Field(
        "ConfigMap", description="Kind of the object holding the bundle: ConfigMap or Secret.")
    name: str = Field(description="Name of the ConfigMap or Secret, in the same namespace as this resource.",
                      pattern=NAME_PATTERN, max_length=253)
    key: str = Field("ca.crt", pattern=KEY_PATTERN, description="Key holding one or more PEM certificates.")


class TLSConfig(_Model):
    """TLS settings for talking to the token endpoint (and the discovery documents)."""

    ca_bundle_ref: CABundleRef | None = Field(
        None, alias="caBundleRef",
        description="A private CA to trust in addition to the system roots (for example a self-signed "
                    "WSO2 or internal gateway certificate).")
    client_certificate_secret_ref: LocalObjectRef | None = Field(
        None, alias="clientCertificateSecretRef",
        description="A kubernetes.io/tls Secret (tls.crt, tls.key) presented as the client certificate: "
                    "mutual TLS, required by authMethod tls_client_auth.")
    insecure_skip_verify: bool = Field(
        False, alias="insecureSkipVerify",
        description="Do not verify the server certificate. Tokens can then be stolen by anyone on the path; "
                    "the Ready message and a Warning Event flag every use. Prefer caBundleRef.")


class TargetTemplate(_Model):
    """Shapes the target Secret for its consumers."""

    # Bounded so that the API server can afford the CEL rule below (it estimates the worst case).
    data: dict[str, Annotated[str, Field(max_length=16384)]] | None = Field(
        None, max_length=32,
        json_schema_extra={"x-kubernetes-validations": [{
            # The same rule as _known_placeholders: what is left after removing the known placeholders must
            # not look like a placeholder.
            "rule": "self.all(k, !self[k]" + "".join(
                f".replace('${{{name}}}', '')" for name in ("access_token", "token_type", "expires_at", "scope"))
                    + ".matches('[$][{][^}]*[}]'))",
            "message": "target.template.data may only use ${access_token}, ${token_type}, ${expires_at} and "
                       "${scope}"}, {
            # What the API server accepts as a Secret key: refused at admission instead of at every write.
            "rule": "self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && k != '..')",
            "message": "target.template.data keys must be valid Secret keys: letters, digits, '-', '_' and '.', "
                       "at most 253 characters, not '.' or '..'"}]},
        description="Keys of the target Secret and their values. Values may use ${access_token}, "
                          "${token_type}, ${expires_at} and ${scope}; nothing else is substituted and nothing "
                          "is evaluated. When absent the keys access_token, token_type and expires_at are "
                          "written.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Extra labels on the target Secret.")
    annotations: dict[str, str] = Field(default_factory=dict,
                                        description="Extra annotations on the target Secret.")

    @field_validator("data")
    @classmethod
    def _known_placeholders(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if len(key) > 253 or not re.fullmatch(KEY_PATTERN, key) or key in (".", ".."):
                raise ValueError(f"target.template.data key {key!r} is not a valid Secret key: letters, digits, "
                                 "'-', '_' and '.', at most 253 characters, not '.' or '..'")
        for key, text in (value or {}).items():
            unknown = sorted(set(_PLACEHOLDER_USE.findall(text)) - set(TEMPLATE_PLACEHOLDERS))
            if unknown:
                raise ValueError(f"target.template.data[{key}] uses unknown placeholder(s) "
                                 f"{', '.join('${' + u + '}' for u in unknown)}; "
                                 f"only {', '.join('${' + p + '}' for p in TEMPLATE_PLACEHOLDERS)} exist")
        return value


class TargetSecret(_Model):
    """The Secret the operator creates, owns and keeps up to date."""

    secret_name: str = Field(alias="secretName", pattern=NAME_PATTERN, max_length=253,
                             description="Name of the Secret to write, in the same namespace. The operator "
                                         "creates it and never takes over a Secret it did not create.")
    template: TargetTemplate | None = Field(None, description="Optional shape of the Secret's data, labels "
                                                              "and annotations.")


class RolloutRestartTarget(_Model):
    """A workload restarted (like ``kubectl rollout restart``) after each new token."""

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = Field(
        description="Kind of the workload: Deployment, StatefulSet or DaemonSet.")
    name: str = Field(pattern=NAME_PATTERN, max_length=253,
                      description="Name of the workload, in the same namespace.")


class RefreshPolicy(_Model):
    """When to request a new token. At most one of renewBefore and renewBeforePercentage."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!(has(self.renewBefore) && has(self.renewBeforePercentage))",
        "message": "set at most one of renewBefore and renewBeforePercentage"}]})

    renew_before: str | None = Field(
        None, alias="renewBefore", pattern=DURATION_PATTERN,
        description="Request a new token this long before the current one expires (Go duration, e.g. "
                    "10m). Clamped so that at least a tenth of the lifetime passes between requests.")
    renew_before_percentage: int | None = Field(
        None, alias="renewBeforePercentage", ge=5, le=90,
        description="Request a new token when this percentage of its lifetime remains. Default 33 (a "
                    "token is refreshed after about two thirds of its lifetime), with a little jitter.")
    default_lifetime: str | None = Field(
        None, alias="defaultLifetime", pattern=DURATION_PATTERN,
        description="Lifetime assumed for tokens whose response has no expires_in and that are not JWTs "
                    "with exp. Default: the operator setting OAUTH_TOKEN_OPERATOR_DEFAULT_TOKEN_LIFETIME_SECONDS "
                    "(3600 s, 1h).")

    @model_validator(mode="after")
    def _one_of(self) -> RefreshPolicy:
        if self.renew_before is not None and self.renew_before_percentage is not None:
            raise ValueError("set at most one of renewBefore and renewBeforePercentage")
        return self


# Methods that read no client secret: with spec.clientID they need no credentials Secret at all.
SECRET_FREE_METHODS = frozenset(
    {AuthMethod.PRIVATE_KEY_JWT, AuthMethod.TLS_CLIENT_AUTH, AuthMethod.KUBERNETES_SERVICE_ACCOUNT})
# Messages of the cross-field rules, shared by the CEL rules and the pydantic validator.
_NO_CLIENT_ID = "set clientID or clientCredentialsSecretRef (whose clientIDKey holds the client ID)"
_TWO_CLIENT_IDS = ("set the client ID in one place: clientID or clientCredentialsSecretRef.clientIDKey, "
                   "not both")
_NEEDS_SECRET = ("this authMethod needs clientCredentialsSecretRef (the client secret); only private_key_jwt, "
                 "tls_client_auth and kubernetes_service_account work with clientID alone")
_HS_ONLY_FOR_SECRET_JWT = "signingAlgorithm HS256, HS384 and HS512 are only for authMethod client_secret_jwt"
_SECRET_JWT_ONLY_HS = "authMethod client_secret_jwt signs with signingAlgorithm HS256, HS384 or HS512"
_SA_ASSERTION_PAIRING = ("authMethod kubernetes_service_account needs serviceAccountAssertion, and "
                         "serviceAccountAssertion is only for that authMethod")
_SA_AUDIENCE = ("authMethod kubernetes_service_account takes its audience from serviceAccountAssertion.audience, "
                "not assertionAudience")


class OAuthClientCredentialSpec(_Model):
    """Where and how to request a client_credentials token, and where to keep it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.tokenURL) != has(self.issuerURL)",
                 "message": "set exactly one of tokenURL and issuerURL"},
                {"rule": "!has(self.authMethod) || self.authMethod != 'private_key_jwt' "
                         "|| has(self.privateKeySecretRef)",
                 "message": "authMethod private_key_jwt needs privateKeySecretRef"},
                {"rule": "!has(self.authMethod) || self.authMethod != 'tls_client_auth' "
                         "|| (has(self.tls) && has(self.tls.clientCertificateSecretRef))",
                 "message": "authMethod tls_client_auth needs tls.clientCertificateSecretRef"},
                {"rule": "has(self.clientID) || has(self.clientCredentialsSecretRef)",
                 "message": _NO_CLIENT_ID},
                {"rule": "!has(self.clientID) || !has(self.clientCredentialsSecretRef) "
                         "|| self.clientCredentialsSecretRef.clientIDKey == 'client_id'",
                 "message": _TWO_CLIENT_IDS},
                {"rule": "has(self.clientCredentialsSecretRef) || (has(self.authMethod) && self.authMethod in "
                         + str(sorted(m.value for m in SECRET_FREE_METHODS)) + ")",
                 "message": _NEEDS_SECRET},
                {"rule": "!has(self.signingAlgorithm) || !self.signingAlgorithm.startsWith('HS') "
                         "|| (has(self.authMethod) && self.authMethod == 'client_secret_jwt')",
                 "message": _HS_ONLY_FOR_SECRET_JWT},
                {"rule": "!has(self.authMethod) || self.authMethod != 'client_secret_jwt' "
                         "|| !has(self.signingAlgorithm) || self.signingAlgorithm.startsWith('HS')",
                 "message": _SECRET_JWT_ONLY_HS},
                {"rule": "(has(self.authMethod) && self.authMethod == 'kubernetes_service_account') "
                         "== has(self.serviceAccountAssertion)",
                 "message": _SA_ASSERTION_PAIRING},
                {"rule": "!has(self.assertionAudience) || !has(self.authMethod) "
                         "|| self.authMethod != 'kubernetes_service_account'",
                 "message": _SA_AUDIENCE},
            ]
        }
    )

    token_url: str | None = Field(
        None, alias="tokenURL", pattern=URL_PATTERN, max_length=2048,
        description="The token endpoint (e.g. https://idp.example.com/oauth2/token). Exactly one of tokenURL "
                    "and issuerURL. Plain http:// is refused unless the operator allows insecure HTTP.")
    issuer_url: str | None = Field(
        None, alias="issuerURL", pattern=URL_PATTERN, max_length=2048,
        description="An OAuth 2.0 / OpenID Connect issuer; the token endpoint is found through RFC 8414 "
                    "(/.well-known/oauth-authorization-server) or OpenID discovery "
                    "(/.well-known/openid-configuration). Exactly one of tokenURL and issuerURL.")
    client_id: str | None = Field(
        None, alias="clientID", min_length=1, max_length=1024,
        description="The client ID, when no Secret holds it (a client ID is not a secret). Then the "
                    "credentials Secret is needed only by the methods that use a client secret, and its "
                    "clientIDKey is not read.")
    client_credentials_secret_ref: ClientCredentialsSecretRef | None = Field(
        None, alias="clientCredentialsSecretRef",
        description="The Secret holding the client ID and secret, in the same namespace. Optional for "
                    "private_key_jwt, tls_client_auth and kubernetes_service_account when clientID is set.")
    auth_method: AuthMethod = Field(
        AuthMethod.CLIENT_SECRET_BASIC, alias="authMethod",
        description="Client authentication: client_secret_basic (HTTP Basic, the default), client_secret_post "
                    "(credentials in the form body), client_secret_jwt (a JWT signed with the client secret, "
                    "which is never sent), private_key_jwt (RFC 7523 signed assertion), tls_client_auth (RFC "
                    "8705 mutual TLS) or kubernetes_service_account (a ServiceAccount token minted for each "
                    "request as the RFC 7523 assertion: workload identity federation, no secret at all).")
    service_account_assertion: ServiceAccountAssertion | None = Field(
        None, alias="serviceAccountAssertion",
        description="For authMethod kubernetes_service_account: which ServiceAccount's tokens authenticate the "
                    "client, for which audience and how long each lives.")
    private_key_secret_ref: SecretKeyRef | None = Field(
        None, alias="privateKeySecretRef",
        description="The PEM private key (RSA or EC) that signs private_key_jwt assertions.")
    signing_algorithm: SigningAlgorithm | None = Field(
        None, alias="signingAlgorithm",
        description="JWS algorithm of the client assertion. private_key_jwt: RS*/PS*/ES*, default RS256 for "
                    "RSA keys and ES256/ES384/ES512 for EC keys by curve. client_secret_jwt: HS256 (default), "
                    "HS384 or HS512.")
    signing_key_id: str | None = Field(
        None, alias="signingKeyID", max_length=256,
        description="The kid header of private_key_jwt assertions: the key's id in the JWKS registered with "
                    "the server, for servers that hold several keys per client.")
    assertion_audience: str | None = Field(
        None, alias="assertionAudience", max_length=2048,
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": USERINFO_RULE,
            "message": "assertionAudience may not contain user information (user:password@)"}]},
        description="The aud claim of private_key_jwt and client_secret_jwt assertions. Default: the token "
                    "endpoint URL. Some servers want the issuer instead. (kubernetes_service_account uses "
                    "serviceAccountAssertion.audience.)")
    scopes: list[str] = Field(default_factory=list,
                              description="Scopes to request, sent space-separated in the scope parameter "
                                          "(e.g. api://app/.default for Entra ID).")
    audience: str | None = Field(None, max_length=2048,
                                 description="Sent as the audience parameter (Auth0 and others).")
    resources: list[str] = Field(default_factory=list,
                                 description="Sent as repeated resource parameters (RFC 8707).")
    extra_params: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, alias="extraParams", max_length=64,
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": "!self.exists(k, k in " + str(sorted(_RESERVED)) + ")",
            "message": "extraParams may not set grant_type, client_id, client_secret, client_assertion, "
                       "client_assertion_type, scope, audience or resource: use the dedicated fields"}]},
        description="Any other form parameters, e.g. WSO2's validity_period. May not override grant_type, "
                    "client_id, client_secret, client_assertion, client_assertion_type, scope, audience or "
                    "resource.")
    tls: TLSConfig | None = Field(None, description="TLS settings for the token endpoint.")
    credentials_expiry_warning: str | None = Field(
        None, alias="credentialsExpiryWarning", pattern=DURATION_PATTERN,
        description="How long before the client secret expires (see clientCredentialsSecretRef.expiresAtKey) "
                    "the CredentialsExpiring condition turns True and a Warning Event is posted (Go duration, "
                    "e.g. 336h). Default: the operator setting credentialsExpiryWarning (168h).")
    target: TargetSecret = Field(description="The Secret that receives the token.")
    refresh_policy: RefreshPolicy | None = Field(
        None, alias="refreshPolicy", description="When to request a new token; defaults suit most users.")
    rollout_restart_targets: list[RolloutRestartTarget] = Field(
        default_factory=list, alias="rolloutRestartTargets",
        description="Workloads that read the token from environment variables or subPath mounts (which never "
                    "update): each gets a rollout restart after every new token. Restarts cost pod churn; "
                    "prefer plain volume mounts, which the kubelet updates within its syncFrequency plus 50 % (90 s by "
                    "default; the operator refreshes early enough for that).")

    @field_validator("extra_params")
    @classmethod
    def _no_reserved_params(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(set(value) & RESERVED_PARAMS)
        if reserved:
            raise ValueError(f"extraParams may not set {', '.join(reserved)}: use the dedicated fields")
        return value

    @field_validator("assertion_audience")
    @classmethod
    def _no_userinfo(cls, value: str | None) -> str | None:
        if value is not None and _USERINFO.match(value):
            raise ValueError("assertionAudience may not contain user information (user:password@)")
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> OAuthClientCredentialSpec:
        if (self.token_url is None) == (self.issuer_url is None):
            raise ValueError("set exactly one of tokenURL and issuerURL")
        if self.auth_method is AuthMethod.PRIVATE_KEY_JWT and self.private_key_secret_ref is None:
            raise ValueError("authMethod private_key_jwt needs privateKeySecretRef")
        if self.auth_method is AuthMethod.TLS_CLIENT_AUTH and (
            self.tls is None or self.tls.client_certificate_secret_ref is None
        ):
            raise ValueError("authMethod tls_client_auth needs tls.clientCertificateSecretRef")
        secret_ref = self.client_credentials_secret_ref
        if self.client_id is None and secret_ref is None:
            raise ValueError(_NO_CLIENT_ID)
        if self.client_id is not None and secret_ref is not None and secret_ref.client_id_key != "client_id":
            raise ValueError(_TWO_CLIENT_IDS)
        if secret_ref is None and self.auth_method not in SECRET_FREE_METHODS:
            raise ValueError(_NEEDS_SECRET)
        hmac = self.signing_algorithm in HMAC_ALGORITHMS
        if hmac and self.auth_method is not AuthMethod.CLIENT_SECRET_JWT:
            raise ValueError(_HS_ONLY_FOR_SECRET_JWT)
        if self.auth_method is AuthMethod.CLIENT_SECRET_JWT and self.signing_algorithm is not None and not hmac:
            raise ValueError(_SECRET_JWT_ONLY_HS)
        if (self.auth_method is AuthMethod.KUBERNETES_SERVICE_ACCOUNT) != (self.service_account_assertion is not None):
            raise ValueError(_SA_ASSERTION_PAIRING)
        if self.assertion_audience is not None and self.auth_method is AuthMethod.KUBERNETES_SERVICE_ACCOUNT:
            raise ValueError(_SA_AUDIENCE)
        return self


# Form parameters the operator sets itself; extraParams may not smuggle in a second copy.
RESERVED_PARAMS = frozenset(_RESERVED)


class Condition(_Model):
    """A Kubernetes API convention condition."""

    type: str = Field(description="Type of the condition; Ready is the one that matters.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason, e.g. TokenIssued or InvalidClient.")
    message: str = Field("", description="What happened and what happens next, for humans.")
    last_transition_time: datetime | None = Field(None, alias="lastTransitionTime",
                                                  description="When status last changed.")
    observed_generation: int | None = Field(None, alias="observedGeneration",
                                            description="The spec generation the condition describes.")


class OAuthClientCredentialStatus(_Model):
    """What the operator observed and did; written only by the operator."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list, description="Ready and its reason.")
    expires_at: datetime | None = Field(None, alias="expiresAt",
                                        description="When the token now in the target Secret expires.")
    credentials_expire_at: datetime | None = Field(
        None, alias="credentialsExpireAt",
        description="When the client secret expires, as the credentials Secret says (client_secret_expires_at "
                    "or clientCredentialsSecretRef.expiresAtKey); absent when it does not say or never expires.")
    expiry_source: Literal["expires_in", "jwt_exp", "default"] | None = Field(
        None, alias="expirySource",
        description="Where expiresAt came from: the response's expires_in, the JWT's exp claim, or the "
                    "default lifetime (the server said nothing).")
    last_refresh_time: datetime | None = Field(None, alias="lastRefreshTime",
                                               description="When the current token was issued to us.")
    next_refresh_time: datetime | None = Field(None, alias="nextRefreshTime",
                                               description="When the operator will next request a token.")
    consecutive_failures: int = Field(0, alias="consecutiveFailures",
                                      description="Failed token requests since the last success.")
    token_endpoint: str | None = Field(None, alias="tokenEndpoint",
                                       description="The token endpoint in use (found by discovery when "
                                                   "issuerURL is set).")
    scope: str | None = Field(None, description="The scope the server granted, when it said.")
    observed_generation: int | None = Field(None, alias="observedGeneration",
                                            description="The spec generation last acted on.")
    inputs_hash: str | None = Field(
        None, alias="inputsHash",
        description="Identifies the spec, refresh annotation and referenced objects' versions the last token "
                    "request used (a hash of versions, never of secret values); a change requests a new token.")
    target_resource_version: str | None = Field(
        None, alias="targetResourceVersion",
        description="The resourceVersion of the target Secret as the operator's last write of it returned: "
                    "after a restart, a target Secret still at this version is known without reading it.")


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("annotations", "labels", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class OAuthClientCredential(BaseModel):
    """Keeps an OAuth 2.0 client_credentials access token fresh in a Secret."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: Literal["oauth-token-operator.dev/v1alpha1"] = Field(
        "oauth-token-operator.dev/v1alpha1", alias="apiVersion")
    kind: Literal["OAuthClientCredential"] = "OAuthClientCredential"
    metadata: ObjectMeta
    spec: OAuthClientCredentialSpec
    status: OAuthClientCredentialStatus = Field(default_factory=OAuthClientCredentialStatus)


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``1h30m`` (the format cert-manager users already write)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 10m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
