"""Credentials that expire: parsing the date, the CredentialsExpiring condition, its Events, the refusal note."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from oauth_token_operator.credentials_expiry import (
    ExpiryReason,
    credentials_expiry_condition,
    credentials_expiry_event,
    expired_note,
    expiry_warning,
    next_expiry_transition,
    note_expired_credentials,
    parse_credentials_expiry,
)
from oauth_token_operator.errors import CredentialsNotFound, EndpointUnavailable, InvalidClient

WHERE = "Secret team-a/creds key 'client_secret_expires_at'"
EXPIRES = datetime(2026, 12, 24, 18, 0, 0, tzinfo=UTC)
WEEK = timedelta(hours=168)


@pytest.mark.parametrize(("text", "expected"), [
    ("1798135200", EXPIRES),
    ("1798135200.0\n", EXPIRES),
    ("2026-12-24T18:00:00Z", EXPIRES),
    ("2026-12-24t18:00:00z", EXPIRES),
    ("2026-12-24T19:00:00+01:00", EXPIRES),
    ("2026-12-24 18:00:00.000Z", EXPIRES),
    ("0", None),
    (" 0 ", None),
])
def test_rfc3339_unix_seconds_and_zero_for_never(text: str, expected: datetime | None) -> None:
    assert parse_credentials_expiry(text, where=WHERE) == expected


@pytest.mark.parametrize("text", ["next tuesday", "2026-12-24", "2026-12-24T18:00:00", "2026-13-40T18:00:00Z",
                                  "-5", "1e10", "99999999999999999999", "CANARY-s3cr3t"])
def test_garbage_is_a_clear_message_that_does_not_quote_the_value(text: str) -> None:
    with pytest.raises(CredentialsNotFound) as caught:
        parse_credentials_expiry(text, where=WHERE)
    message = caught.value.message
    assert WHERE in message and "RFC 3339" in message and "Unix seconds" in message
    assert text not in message


def test_warning_window_from_the_spec_or_the_setting() -> None:
    assert expiry_warning(None, "168h") == WEEK
    assert expiry_warning("336h", "168h") == timedelta(days=14)


def test_condition_before_inside_and_after_the_window() -> None:
    assert credentials_expiry_condition(None, now=EXPIRES, warning=WEEK) is None

    before = credentials_expiry_condition(EXPIRES, now=EXPIRES - WEEK - timedelta(seconds=1), warning=WEEK)
    assert before is not None and (before.status, before.reason) == ("False", ExpiryReason.CREDENTIALS_VALID)
    assert "2026-12-24T18:00:00Z" in before.message

    inside = credentials_expiry_condition(EXPIRES, now=EXPIRES - timedelta(days=2, hours=3), warning=WEEK, where=WHERE)
    assert inside is not None and (inside.status, inside.reason) == ("True", ExpiryReason.CREDENTIALS_EXPIRING)
    assert "in 2d3h" in inside.message and WHERE in inside.message and "2026-12-24T18:00:00Z" in inside.message

    starts = credentials_expiry_condition(EXPIRES, now=EXPIRES - WEEK, warning=WEEK)
    assert starts is not None and starts.reason is ExpiryReason.CREDENTIALS_EXPIRING

    after = credentials_expiry_condition(EXPIRES, now=EXPIRES, warning=WEEK)
    assert after is not None and (after.status, after.reason) == ("True", ExpiryReason.CREDENTIALS_EXPIRED)
    assert "expired on 2026-12-24T18:00:00Z" in after.message


def test_one_warning_event_on_entering_the_window_and_one_on_passing_the_date() -> None:
    valid = credentials_expiry_condition(EXPIRES, now=EXPIRES - 2 * WEEK, warning=WEEK)
    expiring = credentials_expiry_condition(EXPIRES, now=EXPIRES - timedelta(days=1), warning=WEEK)
    expired = credentials_expiry_condition(EXPIRES, now=EXPIRES + timedelta(days=1), warning=WEEK)
    assert valid and expiring and expired

    assert credentials_expiry_event(None, valid) is None
    assert credentials_expiry_event(None, None) is None
    entering = credentials_expiry_event("CredentialsValid", expiring)
    assert entering is not None and (entering.type, entering.reason) == ("Warning", "CredentialsExpiring")
    assert credentials_expiry_event(None, expiring) == entering  # first look already inside the window
    assert credentials_expiry_event("CredentialsExpiring", expiring) is None  # once, not on every refresh
    passing = credentials_expiry_event("CredentialsExpiring", expired)
    assert passing is not None and (passing.type, passing.reason) == ("Warning", "CredentialsExpired")
    assert credentials_expiry_event("CredentialsExpired", expired) is None
    assert credentials_expiry_event("CredentialsExpired", valid) is None  # rotated: no warning


def test_a_refusal_after_the_date_says_the_secret_expired() -> None:
    assert expired_note(EXPIRES, now=EXPIRES - timedelta(seconds=1)) is None
    assert expired_note(None, now=EXPIRES) is None
    assert expired_note(EXPIRES, now=EXPIRES) == "the client secret expired on 2026-12-24T18:00:00Z"

    refused = InvalidClient("token endpoint answered 401 invalid_client; check the client ID", retry_after=5)
    noted = note_expired_credentials(refused, EXPIRES, now=EXPIRES + timedelta(hours=1))
    assert isinstance(noted, InvalidClient) and noted.retry_after == 5
    assert noted.message.endswith("(the client secret expired on 2026-12-24T18:00:00Z)")
    assert note_expired_credentials(refused, EXPIRES, now=EXPIRES - timedelta(hours=1)) is refused
    outage = EndpointUnavailable("connection refused")
    assert note_expired_credentials(outage, EXPIRES, now=EXPIRES + timedelta(hours=1)) is outage


def test_next_transition_is_the_start_of_the_window_then_the_date() -> None:
    assert next_expiry_transition(EXPIRES, now=EXPIRES - 2 * WEEK, warning=WEEK) == EXPIRES - WEEK
    assert next_expiry_transition(EXPIRES, now=EXPIRES - WEEK, warning=WEEK) == EXPIRES
    assert next_expiry_transition(EXPIRES, now=EXPIRES - timedelta(seconds=1), warning=WEEK) == EXPIRES
    assert next_expiry_transition(EXPIRES, now=EXPIRES, warning=WEEK) is None
    assert next_expiry_transition(None, now=EXPIRES, warning=WEEK) is None
