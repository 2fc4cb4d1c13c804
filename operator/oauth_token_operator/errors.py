"""Every failure the operator can report, in one tree, each class carrying what happens next.

A failure's behaviour lives on its class (Kopf's ``PermanentError``/``TemporaryError`` idea), not in
``isinstance`` chains spread over modules: the :class:`~oauth_token_operator.reasons.Reason` it is reported
under (condition, Event and metric label), how it is retried (:class:`Retry`), what it tells the endpoint's
circuit breaker (:class:`Circuit`), and the ``token`` command's exit status. ``tests/unit/test_errors.py`` proves
that every concrete class sets all four::

    OperatorError                     never carries a secret in its message
    ├── InputError                    the user's objects must change before a retry can succeed   exit 2
    │   ├── InvalidSpec               the spec cannot be used as written            (InvalidSpec)
    │   │   └── TargetSecretRejected  the API server refused the Secret we rendered (InvalidSpec)
    │   ├── CredentialsNotFound       a referenced Secret/ConfigMap or key is missing (CredentialsNotFound)
    │   ├── TargetSecretConflict      the target Secret exists and is not ours       (TargetSecretConflict)
    │   ├── SecretNotPermitted        the Secret lacks the opt-in label the install requires (SecretNotPermitted)
    │   └── AssertionNotPermitted     the ServiceAccount did not opt in to that audience (AssertionNotPermitted)
    ├── TokenError                    the token endpoint did not give us a usable token
    │   ├── TokenRequestRefused       the server said no (4xx / OAuth error): retried slowly        exit 3
    │   │   ├── InvalidClient         401, 403, invalid_client, unauthorized_client  (InvalidClient)
    │   │   └── TokenRequestRejected  invalid_scope, invalid_target, other 4xx       (TokenRequestRejected)
    │   ├── EndpointUnavailable       network, TLS, timeout, 429, 5xx: transient     (EndpointUnavailable) exit 4
    │   └── InvalidTokenResponse      a 2xx that is not a usable token: transient    (InvalidTokenResponse) exit 4
    └── KubernetesError               the Kubernetes API server failed one of our calls            exit 4
        ├── KubernetesUnavailable     connection refused, timeout, 429, 5xx: retried within seconds
        └── KubernetesRequestRefused  403 or another 4xx: retried slowly             (KubernetesAPIError)

``Retry.INPUT`` errors wait for a change to the inputs (which triggers a retry at once) and are otherwise
rechecked slowly; ``Retry.REFUSED`` errors are retried on a long, capped backoff, because a revoked key
sometimes comes back (a portal re-approving an app) and a user should not have to poke the resource.
``retry_after`` carries a server's ``Retry-After`` in seconds, when it sent one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from .reasons import Reason

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "AssertionNotPermitted",
    "Circuit",
    "CredentialsNotFound",
    "EndpointUnavailable",
    "InputError",
    "InvalidClient",
    "InvalidSpec",
    "InvalidTokenResponse",
    "KubernetesError",
    "KubernetesRequestRefused",
    "KubernetesUnavailable",
    "OperatorError",
    "Retry",
    "SecretNotPermitted",
    "TargetSecretConflict",
    "TargetSecretRejected",
    "TokenError",
    "TokenRequestRefused",
    "TokenRequestRejected",
]

#: Exit statuses of ``oauth-token-operator token`` (API.md).
EXIT_OK, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 2, 3, 4


class Retry(StrEnum):
    """How a failure is retried (the numbers are in :mod:`~oauth_token_operator.schedule`)."""

    TRANSIENT = "transient"
    """The token endpoint may recover by itself: 5 s doubling, capped at 5 min (sooner near expiry)."""
    REFUSED = "refused"
    """The server said no: 2 min tripling, capped at 15 min."""
    INPUT = "input"
    """Only a change to the user's objects helps (which retries at once); rechecked every 5 min."""
    KUBERNETES = "kubernetes"
    """The API server failed us (down, restarting, overloaded): 1 s doubling, capped at 15 s, so that
    resources whose tokens came due during an outage get them seconds after it ends."""


class Circuit(StrEnum):
    """What a failed token request says about its endpoint (``endpoint_health``)."""

    OPEN = "open"
    """The endpoint is failing for everybody: open (or extend) its circuit."""
    CLOSE = "close"
    """The server answered, so it is up: close its circuit."""
    UNTOUCHED = "untouched"
    """The request never reached the server: only free the probe slot."""


class OperatorError(Exception):
    """Base of every reportable failure. ``message`` is shown to users verbatim: it never holds a secret.

    Concrete subclasses set all four class attributes; the base sets none, so a new class that forgets
    one fails ``tests/unit/test_errors.py`` instead of inheriting a wrong behaviour."""

    reason: ClassVar[Reason]
    retry: ClassVar[Retry]
    circuit: ClassVar[Circuit]
    exit_code: ClassVar[int]

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    @property
    def transient(self) -> bool:
        """Waiting alone may cure it (the endpoint or the API server may come back)."""
        return self.retry in (Retry.TRANSIENT, Retry.KUBERNETES)


class InputError(OperatorError):
    """The user's objects must change before a retry can succeed."""

    retry = Retry.INPUT
    circuit = Circuit.UNTOUCHED
    exit_code = EXIT_BAD_INPUT


class InvalidSpec(InputError):
    reason = Reason.INVALID_SPEC


class TargetSecretRejected(InvalidSpec):
    """The API server refused the Secret rendered from the spec (422: a template key or label it does not
    accept). Only a spec change can fix it."""


class CredentialsNotFound(InputError):
    reason = Reason.CREDENTIALS_NOT_FOUND


class TargetSecretConflict(InputError):
    reason = Reason.TARGET_SECRET_CONFLICT


class SecretNotPermitted(InputError):
    """``require_secret_label`` is on and a referenced Secret does not carry the opt-in label."""

    reason = Reason.SECRET_NOT_PERMITTED


class AssertionNotPermitted(InputError):
    """The ServiceAccount does not allow tokens for that audience (annotation missing or without it)."""

    reason = Reason.ASSERTION_NOT_PERMITTED


class TokenError(OperatorError):
    """The token endpoint did not give us a usable token."""


class TokenRequestRefused(TokenError):
    """The server understood the request and refused it."""

    retry = Retry.REFUSED
    circuit = Circuit.CLOSE
    exit_code = EXIT_REFUSED


class InvalidClient(TokenRequestRefused):
    reason = Reason.INVALID_CLIENT


class TokenRequestRejected(TokenRequestRefused):
    reason = Reason.TOKEN_REQUEST_REJECTED


class EndpointUnavailable(TokenError):
    reason = Reason.ENDPOINT_UNAVAILABLE
    retry = Retry.TRANSIENT
    circuit = Circuit.OPEN
    exit_code = EXIT_UNAVAILABLE


class InvalidTokenResponse(TokenError):
    reason = Reason.INVALID_TOKEN_RESPONSE
    retry = Retry.TRANSIENT
    circuit = Circuit.OPEN
    exit_code = EXIT_UNAVAILABLE


class KubernetesError(OperatorError):
    """The Kubernetes API server failed one of our calls (not the token endpoint: no circuit is touched)."""

    reason = Reason.KUBERNETES_API_ERROR
    circuit = Circuit.UNTOUCHED
    exit_code = EXIT_UNAVAILABLE


class KubernetesUnavailable(KubernetesError):
    """Connection refused or reset, timeout, 429 or 5xx: the API server is away or overloaded."""

    retry = Retry.KUBERNETES


class KubernetesRequestRefused(KubernetesError):
    """403 or another 4xx the API server gave to one of our requests: RBAC or admission said no."""

    retry = Retry.REFUSED
