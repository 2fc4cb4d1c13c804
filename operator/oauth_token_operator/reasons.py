"""The reasons of the public API (``API.md``): condition reasons, Event reasons and metric labels.

Two closed enums, so that a typo in a reason is a type error rather than a silently new reason an alert never
matches: :class:`Reason` for the Ready condition (every one is also used as an Event reason), and
:class:`EventReason` for what only ever appears as an Event. The reporting funnel (``report.py``) takes
nothing else.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventReason", "Reason"]


class Reason(StrEnum):
    """Why the resource is (not) Ready. The names are a public contract: never rename one."""

    TOKEN_ISSUED = "TokenIssued"
    INVALID_CLIENT = "InvalidClient"
    TOKEN_REQUEST_REJECTED = "TokenRequestRejected"
    ENDPOINT_UNAVAILABLE = "EndpointUnavailable"
    INVALID_TOKEN_RESPONSE = "InvalidTokenResponse"
    CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
    INVALID_SPEC = "InvalidSpec"
    TARGET_SECRET_CONFLICT = "TargetSecretConflict"
    ASSERTION_NOT_PERMITTED = "AssertionNotPermitted"
    SECRET_NOT_PERMITTED = "SecretNotPermitted"
    KUBERNETES_API_ERROR = "KubernetesAPIError"


class EventReason(StrEnum):
    """Reasons that appear only on Events (the condition keeps its own reason)."""

    INSECURE_TRANSPORT = "InsecureTransport"
    """A token was requested over plain http or without TLS verification (posted on every such request)."""
    TARGET_SECRET_REPAIRED = "TargetSecretRepaired"
    """Somebody changed the target Secret's data; the operator wrote the current token back."""
    ROLLOUT_RESTART_FAILED = "RolloutRestartFailed"
    """A workload in rolloutRestartTargets could not be restarted."""
    ROLLOUT_RESTARTS_DISABLED = "RolloutRestartsDisabled"
    """rolloutRestartTargets is set but the operator runs without --enable-rollout-restarts."""
    CREDENTIALS_EXPIRING = "CredentialsExpiring"
    """The client secret's expiry date is within the warning window."""
    CREDENTIALS_EXPIRED = "CredentialsExpired"
    """The client secret's expiry date has passed."""
