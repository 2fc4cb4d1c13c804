"""Credentials that expire: when the client secret runs out, and what the operator says about it.

Identity providers increasingly hand out client secrets with an end date (an analytics product's expire after
72 hours; a government portal's keys carry a date and must be rotated). The credentials Secret may say when:
key ``client_secret_expires_at`` (RFC 7591's name) or the key named by ``clientCredentialsSecretRef.
expiresAtKey``, in RFC 3339 or Unix seconds, ``0`` meaning never. This module is the pure part:

* :func:`parse_credentials_expiry` reads the value (``resolve`` calls it; garbage is CredentialsNotFound,
  like any other unusable key, and the value is never quoted: it sits next to a secret);
* :func:`credentials_expiry_condition` decides the ``CredentialsExpiring`` condition (separate from Ready:
  the current token may be fine): True from ``credentialsExpiryWarning`` before the date, reason
  ``CredentialsExpiring``, then ``CredentialsExpired``; False (``CredentialsValid``) before the window;
  None (no condition) when nothing says the secret expires;
* :func:`credentials_expiry_event` decides the Warning Event, given the condition's previous reason: one on
  entering the window, one on passing the date, none while nothing changes;
* :func:`next_expiry_transition` says when the condition will change by itself (the start of the window, the
  date), so the scheduler can wake up then instead of noticing at the next token refresh, hours later;
* :func:`expired_note` / :func:`note_expired_credentials` add "the client secret expired on <date>" to a
  refusal after that date, which is nearly always why it was refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from .api import parse_duration
from .errors import CredentialsNotFound, OperatorError, TokenRequestRefused

__all__ = [
    "CONDITION_TYPE",
    "ExpiryCondition",
    "ExpiryEvent",
    "ExpiryReason",
    "credentials_expiry_condition",
    "credentials_expiry_event",
    "expired_note",
    "expiry_warning",
    "next_expiry_transition",
    "note_expired_credentials",
    "parse_credentials_expiry",
]

CONDITION_TYPE = "CredentialsExpiring"

_UNIX_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")


class ExpiryReason(StrEnum):
    """Reasons of the ``CredentialsExpiring`` condition (the last two are also Warning Event reasons)."""

    CREDENTIALS_VALID = "CredentialsValid"
    CREDENTIALS_EXPIRING = "CredentialsExpiring"
    CREDENTIALS_EXPIRED = "CredentialsExpired"


@dataclass(frozen=True)
class ExpiryCondition:
    """The ``CredentialsExpiring`` condition to write (type :data:`CONDITION_TYPE`)."""

    status: Literal["True", "False"]
    reason: ExpiryReason
    message: str


@dataclass(frozen=True)
class ExpiryEvent:
    """A Warning Event to post on the resource."""

    reason: ExpiryReason
    message: str
    type: Literal["Warning"] = "Warning"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_credentials_expiry(text: str, *, where: str) -> datetime | None:
    """When the secret expires (UTC), None for ``0`` (never). ``where`` names the Secret and key for messages."""
    value = text.strip()
    try:
        if _UNIX_SECONDS.fullmatch(value):
            seconds = float(value)
            return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)
        if _RFC3339.fullmatch(value):
            return datetime.fromisoformat(value.replace("z", "Z").replace("t", "T")).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass  # a well-formed but impossible date (month 13, year 99999...): said below
    raise CredentialsNotFound(
        f"{where} is not an expiry date: use RFC 3339 (e.g. 2026-11-30T00:00:00Z) or Unix seconds, "
        "or 0 for never"
    )


def expiry_warning(spec_value: str | None, setting: str) -> timedelta:
    """The warning window: ``spec.credentialsExpiryWarning``, else the operator setting (Go durations)."""
    return timedelta(seconds=parse_duration(spec_value or setting))


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{rest // 60}m" if rest // 60 else f"{hours}h"
    return f"{max(1, rest // 60)}m"


def credentials_expiry_condition(
    expires_at: datetime | None, *, now: datetime, warning: timedelta, where: str = "the credentials Secret"
) -> ExpiryCondition | None:
    """The condition for a secret expiring at ``expires_at`` (None: the condition is removed)."""
    if expires_at is None:
        return None
    when = rfc3339(expires_at)
    if now >= expires_at:
        return ExpiryCondition(
            "True", ExpiryReason.CREDENTIALS_EXPIRED,
            f"the client secret in {where} expired on {when}; rotate it and put the new expiry date into the "
            "Secret",
        )
    if now >= expires_at - warning:
        return ExpiryCondition(
            "True", ExpiryReason.CREDENTIALS_EXPIRING,
            f"the client secret in {where} expires on {when} (in {_span(expires_at - now)}); rotate it before "
            "then and put the new expiry date into the Secret",
        )
    return ExpiryCondition(
        "False", ExpiryReason.CREDENTIALS_VALID,
        f"the client secret in {where} expires on {when}; a warning starts {_span(warning)} before",
    )


def credentials_expiry_event(previous_reason: str | None, current: ExpiryCondition | None) -> ExpiryEvent | None:
    """The Warning Event to post when the condition moves from ``previous_reason`` (the stored condition's
    reason, None without one) to ``current``: on entering the window and on passing the date, once each."""
    if current is None or current.reason == previous_reason:
        return None
    if current.reason is ExpiryReason.CREDENTIALS_VALID:
        return None
    return ExpiryEvent(current.reason, current.message)


def next_expiry_transition(expires_at: datetime | None, *, now: datetime, warning: timedelta) -> datetime | None:
    """The next moment the condition changes with no input changing (None: it will not)."""
    if expires_at is None or now >= expires_at:
        return None
    window = expires_at - warning
    return window if now < window else expires_at


def expired_note(expires_at: datetime | None, *, now: datetime) -> str | None:
    """The sentence a refusal after the expiry date carries, or None before it (or without a date)."""
    if expires_at is None or now < expires_at:
        return None
    return f"the client secret expired on {rfc3339(expires_at)}"


def note_expired_credentials(error: OperatorError, expires_at: datetime | None, *, now: datetime) -> OperatorError:
    """``error`` with :func:`expired_note` appended when the server refused us after the expiry date."""
    note = expired_note(expires_at, now=now)
    if note is None or not isinstance(error, TokenRequestRefused):
        return error
    return type(error)(f"{error.message} ({note})", retry_after=error.retry_after)
