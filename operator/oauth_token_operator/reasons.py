"""The condition reasons of the public API (``API.md``), also used as Event reasons and metric labels.

One enum, so that a typo in a reason is a type error rather than a silently new reason an alert never matches.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason"]


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
