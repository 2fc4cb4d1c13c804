"""What the user is told about each outcome of a refresh cycle: pure builders of :class:`Outcome`.

An outcome is everything the reporting funnel (``report.Reporter.report``) needs to set the Ready condition,
update the typed status, post Events and update the metrics together. Building it is pure (tested in
``tests/unit/test_outcomes.py``); delivering it is the funnel's job, and the funnel is the only way anything
reaches a condition, an Event or a per-resource metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import schedule
from .credentials_expiry import ExpiryCondition
from .errors import InputError, OperatorError
from .kube.status import whole_seconds
from .kube.target import rfc3339
from .reasons import EventReason, Reason
from .tokens.model import Token

__all__ = ["CredentialsNote", "Notice", "Outcome", "credentials_only", "failure", "issued", "unparseable"]


@dataclass(frozen=True)
class Notice:
    """One Event."""

    kind: Literal["Normal", "Warning"]
    reason: Reason | EventReason
    message: str


@dataclass(frozen=True)
class CredentialsNote:
    """What the credentials Secret says about its own expiry (``status.credentialsExpireAt`` and the
    ``CredentialsExpiring`` condition; ``condition`` None removes it)."""

    expires_at: datetime | None
    condition: ExpiryCondition | None


@dataclass(frozen=True)
class Outcome:
    ready: bool | None
    """None: the Ready condition is left as it is (an outcome about the credentials' expiry only)."""
    reason: Reason
    message: str
    status: dict[str, Any] = field(default_factory=dict)
    """Fields of :class:`~oauth_token_operator.api.OAuthClientCredentialStatus` (Python names) to set."""
    on_transition: Notice | None = None
    """Posted only when the Ready reason changes (a failure repeated every retry is said once)."""
    notices: tuple[Notice, ...] = ()
    """Posted every time (e.g. an insecure transport is flagged on every use)."""
    failures: int = 0
    expires_at: datetime | None = None
    credentials: CredentialsNote | None = None
    """None: unknown this time (nothing is changed)."""


def issued(*, token: Token, endpoint: str, secret_name: str, inputs: str, next_refresh: datetime, now: datetime,
           warnings: tuple[str, ...], previous_reason: str | None, notes: tuple[str, ...] = (),
           notices: tuple[Notice, ...] = (), target_version: str | None = None) -> Outcome:
    """A token is in the target Secret (new, or the held one written back); ``target_version`` is the
    resourceVersion that write returned."""
    message = (f"token from {endpoint} valid until {rfc3339(token.expires_at)} "
               f"({schedule.humanize_duration((token.expires_at - now).total_seconds())}); "
               + schedule.describe_next(now=now, next_attempt_at=next_refresh, expires_at=token.expires_at,
                                        failing=False))
    if token.expiry_source == "default":
        message += "; the server sent no expires_in, so the default lifetime is assumed"
    for note in notes:
        message += f"; {note}"
    for warning in warnings:
        message += f"; WARNING: {warning}"
    verb = "issued" if previous_reason is None else "issued again after failures"
    return Outcome(
        ready=True,
        reason=Reason.TOKEN_ISSUED,
        message=message,
        status={
            "expires_at": whole_seconds(token.expires_at),
            "expiry_source": token.expiry_source,
            "last_refresh_time": whole_seconds(token.issued_at),
            "next_refresh_time": whole_seconds(next_refresh),
            "consecutive_failures": 0,
            "token_endpoint": endpoint,
            "scope": token.scope,
            "inputs_hash": inputs,
            "target_resource_version": target_version,
        },
        on_transition=Notice("Normal", Reason.TOKEN_ISSUED,
                             f"Token {verb}; stored in Secret {secret_name}, valid until "
                             f"{rfc3339(token.expires_at)}"),
        notices=(*(Notice("Warning", EventReason.INSECURE_TRANSPORT, w) for w in warnings), *notices),
        failures=0,
        expires_at=token.expires_at,
    )


def failure(*, error: OperatorError, now: datetime, retry_at: datetime, expires_at: datetime | None,
            failures: int, shared: bool, endpoint: str | None, attempted_inputs: str | None) -> Outcome:
    """A failure; the token already in the Secret (valid until ``expires_at``) stays."""
    if isinstance(error, InputError):
        message = (f"{error.message}; waiting for a change to the resource or the objects it references"
                   + _validity(expires_at, now))
    else:
        suffix = " (shared by every resource using this endpoint)" if shared else ""
        message = f"{error.message}{suffix}; " + schedule.describe_next(
            now=now, next_attempt_at=retry_at, expires_at=expires_at, failing=True)
    status: dict[str, Any] = {
        "next_refresh_time": whole_seconds(retry_at),
        "consecutive_failures": failures,
        "inputs_hash": attempted_inputs,
    }
    if endpoint:
        status["token_endpoint"] = endpoint
    return Outcome(ready=False, reason=error.reason, message=message, status=status,
                   on_transition=Notice("Warning", error.reason, message), failures=failures,
                   expires_at=expires_at)


def credentials_only(note: CredentialsNote) -> Outcome:
    """The credentials' expiry moved into (or out of) its warning window while nothing else happened."""
    return Outcome(ready=None, reason=Reason.TOKEN_ISSUED, message="", credentials=note)


def unparseable(error: OperatorError) -> Outcome:
    """A resource our models cannot even parse (stored before a CRD upgrade added a rule)."""
    return Outcome(ready=False, reason=error.reason, message=error.message,
                   on_transition=Notice("Warning", error.reason, error.message))


def _validity(expires: datetime | None, now: datetime) -> str:
    if expires is None:
        return "; no valid token in the target Secret"
    if expires > now:
        return f"; current token valid for {schedule.humanize_duration((expires - now).total_seconds())}"
    return "; the current token has expired"
