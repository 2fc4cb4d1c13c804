"""Every failure the operator can report, in one tree.

Each class carries the :class:`~oauth_token_operator.reasons.Reason` it is reported under (the condition
reason, the Event reason and the metric label all come from here), and whether waiting alone may cure it::

    OperatorError                     never carries a secret in its message
    ├── InputError                    the user's objects must change before a retry can succeed
    │   ├── InvalidSpec               the spec cannot be used as written            (InvalidSpec)
    │   ├── CredentialsNotFound       a referenced Secret/ConfigMap or key is missing (CredentialsNotFound)
    │   ├── TargetSecretConflict      the target Secret exists and is not ours       (TargetSecretConflict)
    │   └── AssertionNotPermitted     the ServiceAccount did not opt in to that audience (AssertionNotPermitted)
    └── TokenError                    the token endpoint did not give us a usable token
        ├── TokenRequestRefused       the server said no (4xx / OAuth error): retried slowly
        │   ├── InvalidClient         401, 403, invalid_client, unauthorized_client  (InvalidClient)
        │   └── TokenRequestRejected  invalid_scope, invalid_target, other 4xx       (TokenRequestRejected)
        ├── EndpointUnavailable       network, TLS, timeout, 429, 5xx: transient     (EndpointUnavailable)
        └── InvalidTokenResponse      a 2xx that is not a usable token: transient    (InvalidTokenResponse)

``transient`` errors are retried with short exponential backoff; the others wait for a change to the inputs
(which triggers a retry at once) and are otherwise retried on a long, capped backoff, because a revoked key
sometimes comes back (a portal re-approving an app) and a user should not have to poke the resource.
``retry_after`` carries a server's ``Retry-After`` in seconds, when it sent one.
"""

from __future__ import annotations

from .reasons import Reason

__all__ = [
    "AssertionNotPermitted",
    "CredentialsNotFound",
    "EndpointUnavailable",
    "InputError",
    "InvalidClient",
    "InvalidSpec",
    "InvalidTokenResponse",
    "OperatorError",
    "TargetSecretConflict",
    "TokenError",
    "TokenRequestRefused",
    "TokenRequestRejected",
]


class OperatorError(Exception):
    """Base of every reportable failure. ``message`` is shown to users verbatim: it never holds a secret."""

    reason: Reason = Reason.INVALID_SPEC
    transient: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InputError(OperatorError):
    """The user's objects must change before a retry can succeed."""


class InvalidSpec(InputError):
    reason = Reason.INVALID_SPEC


class CredentialsNotFound(InputError):
    reason = Reason.CREDENTIALS_NOT_FOUND


class TargetSecretConflict(InputError):
    reason = Reason.TARGET_SECRET_CONFLICT


class AssertionNotPermitted(InputError):
    """The ServiceAccount of ``serviceAccountAssertion`` does not allow tokens for that audience (its annotation
    ``oauth-token-operator.dev/token-audiences`` is missing or does not list it): nothing was minted."""

    reason = Reason.ASSERTION_NOT_PERMITTED


class TokenError(OperatorError):
    """The token endpoint did not give us a usable token."""


class TokenRequestRefused(TokenError):
    """The server understood the request and refused it."""


class InvalidClient(TokenRequestRefused):
    reason = Reason.INVALID_CLIENT


class TokenRequestRejected(TokenRequestRefused):
    reason = Reason.TOKEN_REQUEST_REJECTED


class EndpointUnavailable(TokenError):
    reason = Reason.ENDPOINT_UNAVAILABLE
    transient = True


class InvalidTokenResponse(TokenError):
    reason = Reason.INVALID_TOKEN_RESPONSE
    transient = True
