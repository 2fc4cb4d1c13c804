"""When to refresh and when to retry: table-driven, deterministic, no clock and no sleeping."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from oauth_token_operator.api import RefreshPolicy
from oauth_token_operator.errors import (
    CredentialsNotFound,
    EndpointUnavailable,
    InvalidClient,
    InvalidSpec,
    InvalidTokenResponse,
    OperatorError,
    TargetSecretConflict,
    TokenRequestRejected,
)
from oauth_token_operator.schedule import (
    NO_TOKEN_RETRY_CAP_SECONDS,
    REFUSED_CAP_SECONDS,
    RETRY_AFTER_CAP_SECONDS,
    RETRY_JITTER,
    TRANSIENT_BASE_SECONDS,
    TRANSIENT_CAP_SECONDS,
    Policy,
    describe_next,
    humanize_duration,
    next_refresh_time,
    retry_delay,
)
from oauth_token_operator.settings import OperatorSettings

T0 = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)
MIN, HOUR = 60.0, 3600.0


def refresh_offset(lifetime: float, policy: Policy | None = None, key: str = "uid-1") -> float:
    """Seconds after issue at which a token of ``lifetime`` is refreshed."""
    when = next_refresh_time(issued_at=T0, expires_at=T0 + timedelta(seconds=lifetime),
                             policy=policy or Policy(), jitter_key=key)
    return (when - T0).total_seconds()


def simulate_revoked_credential(hours: int) -> list[int]:
    """Requests per hour from one resource whose credential the server refuses from t=0 on."""
    counts = [0] * hours
    elapsed, failures = 0.0, 0
    while elapsed < hours * HOUR:
        counts[int(elapsed // HOUR)] += 1
        failures += 1
        elapsed += retry_delay(error=InvalidClient("invalid_client"), consecutive_failures=failures,
                               now=T0 + timedelta(seconds=elapsed), expires_at=None, jitter_key="uid-revoked")
    return counts


# --- refresh ---------------------------------------------------------------------------------------------

def test_default_30_minute_token_is_refreshed_after_about_20_minutes() -> None:
    # Apigee's default lifetime. Target 1800 - 33 % = 1206 s; jitter moves it up to 5 % (90 s) earlier.
    for key in ("uid-1", "uid-2", "uid-3", "4c0f6a52-92d4-4a35-9e2b-2f1d8a6c5e11"):
        assert 1206 - 90 <= refresh_offset(30 * MIN, key=key) <= 1206


@pytest.mark.parametrize("lifetime", [2, 3, 5, 10, 20, 30, 60, 90, 120, 300])
def test_short_tokens_are_refreshed_before_expiry_with_margin(lifetime: float) -> None:
    for i in range(20):
        offset = refresh_offset(lifetime, key=f"uid-{i}")
        assert 1 <= offset < lifetime
        # half the lifetime or kubelet sync + request budget left, whichever is less (whole-second rounding)
        assert lifetime - offset >= min(lifetime / 2, 100)


def test_a_one_second_token_is_not_a_request_loop() -> None:
    assert refresh_offset(1) == 1


def test_20_second_token_is_refreshed_after_10_seconds() -> None:
    # Halfway: the 10 s floor and the "before expiry" promise meet; 10 s is the request budget.
    assert refresh_offset(20) == 10


def test_jitter_spreads_a_thousand_tokens_issued_together() -> None:
    offsets = [refresh_offset(30 * MIN, key=f"uid-{i}") for i in range(1000)]
    assert min(offsets) >= 1206 - 90 and max(offsets) <= 1206
    assert max(offsets) - min(offsets) >= 80  # spread over (almost) the whole 90 s window
    assert len(set(offsets)) >= 85  # whole seconds: nearly every second of the window is used
    assert max(Counter(offsets).values()) <= 30  # no second gets more than 3 % of the fleet (uniform: ~11)


def test_schedule_is_deterministic_and_survives_a_status_round_trip() -> None:
    expires = T0 + timedelta(minutes=30)
    first = next_refresh_time(issued_at=T0, expires_at=expires, policy=Policy(), jitter_key="uid-1")
    again = next_refresh_time(issued_at=T0, expires_at=expires, policy=Policy(), jitter_key="uid-1")
    # status stores RFC 3339 with whole seconds: the sub-second part must not change the answer
    precise = next_refresh_time(issued_at=T0 + timedelta(microseconds=123_456), expires_at=expires,
                                policy=Policy(), jitter_key="uid-1")
    reparsed = datetime.fromisoformat(first.isoformat().replace("+00:00", "Z"))
    assert first == again == precise == reparsed
    assert first.microsecond == 0 and first.tzinfo is not None


def test_each_token_of_a_resource_gets_its_own_jitter() -> None:
    offsets = set()
    for n in range(20):
        issued = T0 + timedelta(minutes=20 * n)
        when = next_refresh_time(issued_at=issued, expires_at=issued + timedelta(minutes=30),
                                 policy=Policy(), jitter_key="uid-1")
        offsets.add((when - issued).total_seconds())
    assert len(offsets) > 10


@pytest.mark.parametrize(("lifetime", "policy", "low", "high"), [
    # renewBefore: refresh that long before expiry, minus up to 5 % jitter
    (HOUR, Policy(renew_before=10 * MIN), 50 * MIN - 180, 50 * MIN),
    (30 * MIN, Policy(renew_before=10 * MIN), 20 * MIN - 90, 20 * MIN),
    # renewBefore near the lifetime: clamped so that at least a tenth of the lifetime passes (no jitter left)
    (HOUR, Policy(renew_before=59 * MIN), 6 * MIN, 6 * MIN),
    (HOUR, Policy(renew_before=2 * HOUR), 6 * MIN, 6 * MIN),
    # ... and the 10 s floor when a tenth is less than that
    (60, Policy(renew_before=59), 10, 10),
    # renewBefore shorter than the kubelet allowance: raised to kubelet sync + request budget (100 s)
    (HOUR, Policy(renew_before=30), HOUR - 100 - 180, HOUR - 100),
    (HOUR, Policy(renew_before=0), HOUR - 100 - 180, HOUR - 100),
    # percentages
    (HOUR, Policy(renew_before_percentage=50), 30 * MIN - 180, 30 * MIN),
    (HOUR, Policy(renew_before_percentage=90), 6 * MIN, 6 * MIN),  # 10 % floor, no room for jitter
    (HOUR, Policy(renew_before_percentage=5), 57 * MIN - 180, 57 * MIN),
    (10 * MIN, Policy(renew_before_percentage=5), 500 - 30, 500),  # 30 s left < 100 s allowance: 500
    # a 2-minute token: 33 % (40 s) is less than the allowance, so it is refreshed 100 s before expiry
    (120, Policy(), 20 - 6, 20),
    # the real-pod tier's 180 s token (tests/pods/): the margin (80 s), not 2/3 (120 s), decides
    (180, Policy(), 80 - 9, 80),
    # a day: 16 h 5 m minus up to 72 min
    (24 * HOUR, Policy(), 0.67 * 24 * HOUR - 0.05 * 24 * HOUR, 0.67 * 24 * HOUR),
])
def test_policies_and_their_clamps(lifetime: float, policy: Policy, low: float, high: float) -> None:
    for key in ("uid-1", "uid-2", "uid-3"):
        assert low - 1 <= refresh_offset(lifetime, policy, key) <= high


@pytest.mark.parametrize("lifetime", [120, 150, 180, 300, 30 * MIN, HOUR, 12 * HOUR, 24 * HOUR, 7 * 24 * HOUR])
@pytest.mark.parametrize("policy", [Policy(), Policy(renew_before=1), Policy(renew_before_percentage=5)])
def test_new_token_lands_a_kubelet_sync_before_the_old_one_expires(lifetime: float, policy: Policy) -> None:
    # "when the lifetime allows": 10 % floor <= L - 100 s
    for i in range(50):
        assert lifetime - refresh_offset(lifetime, policy, f"uid-{i}") >= 90 + 10


def test_default_allowance_covers_the_kubelets_default_sync_period_and_its_jitter() -> None:
    # Measured with a real kubelet (tests/pods/): syncFrequency 1m puts a Secret change into the pod's file
    # 69-83 s, at most 90 s (1m + 50 % jitter), after the API write. The new token must be requested at least
    # that long, plus the request timeout, before the old one expires.
    settings = OperatorSettings()
    policy = Policy.from_spec(None, settings)
    measured_worst = 1.5 * 60
    assert policy.kubelet_sync == settings.kubelet_sync_seconds >= measured_worst
    assert policy.request_budget == settings.request_timeout_seconds
    for lifetime in (150, 180, 240, 300, 30 * MIN, HOUR):
        for i in range(20):
            assert lifetime - refresh_offset(lifetime, policy, f"uid-{i}") >= measured_worst + policy.request_budget


def test_kubelet_allowance_follows_the_setting() -> None:
    no_sync = Policy(renew_before=5, kubelet_sync=0, request_budget=2)
    slow_sync = Policy(renew_before=5, kubelet_sync=300, request_budget=10)
    assert HOUR - refresh_offset(HOUR, no_sync) >= 5
    assert HOUR - refresh_offset(HOUR, no_sync) <= 5 + 180  # renewBefore respected (jitter only earlier)
    assert HOUR - refresh_offset(HOUR, slow_sync) >= 310


def test_a_token_expired_at_issue_is_retried_after_the_minimum_interval_not_in_a_loop() -> None:
    assert refresh_offset(0) == 10
    assert refresh_offset(-30) == 10


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_refresh_time(issued_at=datetime(2026, 1, 1), expires_at=datetime(2026, 1, 1, 1),
                          policy=Policy(), jitter_key="uid-1")


DEFAULTS = {"kubelet_sync": 90.0, "request_budget": 10.0}


@pytest.mark.parametrize(("spec", "expected"), [
    (None, Policy(renew_before_percentage=33, **DEFAULTS)),
    ({"renewBefore": "10m"}, Policy(renew_before=600, **DEFAULTS)),
    ({"renewBefore": "1h30m"}, Policy(renew_before=5400, **DEFAULTS)),
    ({"renewBeforePercentage": 50}, Policy(renew_before_percentage=50, **DEFAULTS)),
])
def test_policy_from_spec(spec: dict[str, object] | None, expected: Policy) -> None:
    policy = None if spec is None else RefreshPolicy.model_validate(spec)
    assert Policy.from_spec(policy, OperatorSettings()) == expected


def test_policy_from_spec_takes_operator_defaults() -> None:
    settings = OperatorSettings(renew_before_percentage=20, kubelet_sync_seconds=180, request_timeout_seconds=5)
    assert Policy.from_spec(None, settings) == Policy(renew_before_percentage=20, kubelet_sync=180,
                                                      request_budget=5)


@pytest.mark.parametrize("kwargs", [
    {"renew_before_percentage": 0}, {"renew_before_percentage": 100}, {"renew_before": -1},
    {"kubelet_sync": -1}, {"jitter_fraction": 0.5}, {"min_lifetime_fraction": 0.6},
])
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)


# --- retry -----------------------------------------------------------------------------------------------

def delays(error: OperatorError, count: int, *, expires_in: float | None = 24 * HOUR) -> list[float]:
    expires = None if expires_in is None else T0 + timedelta(seconds=expires_in)
    return [retry_delay(error=error, consecutive_failures=n, now=T0, expires_at=expires, jitter_key="uid-1")
            for n in range(1, count + 1)]


@pytest.mark.parametrize("error", [EndpointUnavailable("connection refused"), InvalidTokenResponse("not JSON")])
def test_transient_backoff_grows_and_is_capped(error: OperatorError) -> None:
    sequence = delays(error, 12)
    assert TRANSIENT_BASE_SECONDS <= sequence[0] <= TRANSIENT_BASE_SECONDS * (1 + RETRY_JITTER)
    growing = [d for d in sequence if d < TRANSIENT_CAP_SECONDS]
    assert growing == sorted(growing) and len(set(growing)) == len(growing)  # strictly increasing ...
    assert len(growing) >= 5  # 5, 10, 20, 40, 80, 160 s ...
    assert all(d <= TRANSIENT_CAP_SECONDS * (1 + RETRY_JITTER) for d in sequence)  # ... up to 5 min
    assert sequence[-1] >= TRANSIENT_CAP_SECONDS
    assert sequence != delays(error, 12, expires_in=None)  # sanity: the expiry matters (see below)


def test_transient_backoff_with_no_valid_token_is_capped_at_a_minute() -> None:
    for expires_in in (None, 0.0, -HOUR):
        sequence = delays(EndpointUnavailable("503"), 12, expires_in=expires_in)
        assert sequence[-1] >= NO_TOKEN_RETRY_CAP_SECONDS
        assert max(sequence) <= NO_TOKEN_RETRY_CAP_SECONDS * (1 + RETRY_JITTER)


@pytest.mark.parametrize("remaining", [20.0, 45.0, 2 * MIN, 5 * MIN, 10 * MIN, 20 * MIN, HOUR])
def test_transient_retries_near_expiry_fit_before_it(remaining: float) -> None:
    """Deep in an outage (failure 20 and on), at least 4 attempts still fit before the token expires
    (at least 2 for a token with under 40 s left, where the 10 s floor wins)."""
    now, expires = T0, T0 + timedelta(seconds=remaining)
    attempts, failures = 0, 20
    while True:
        now += timedelta(seconds=retry_delay(error=EndpointUnavailable("timeout"), consecutive_failures=failures,
                                             now=now, expires_at=expires, jitter_key="uid-1"))
        if now >= expires:
            break
        attempts += 1
        failures += 1
    assert attempts >= (4 if remaining >= 40 else 1)
    # and the cap shrinks with the remaining validity
    first = delays(EndpointUnavailable("timeout"), 20, expires_in=remaining)[-1]
    assert first <= max(remaining / 4, 10)


def test_refused_backoff_sequence() -> None:
    sequence = delays(InvalidClient("invalid_client"), 8)
    assert 120 <= sequence[0] <= 144 and 360 <= sequence[1] <= 432
    assert all(REFUSED_CAP_SECONDS <= d <= REFUSED_CAP_SECONDS * (1 + RETRY_JITTER) for d in sequence[2:])
    assert delays(TokenRequestRejected("invalid_scope"), 8) == sequence
    assert delays(InvalidClient("x"), 8, expires_in=60) == sequence  # near expiry changes nothing here


def test_revoked_credential_makes_a_handful_of_requests_an_hour() -> None:
    counts = simulate_revoked_credential(hours=6)
    assert counts[0] <= 6  # t=0 (refused), +2 min, +6 min, then every 15-18 min
    assert all(c <= 4 for c in counts[1:])
    assert all(c >= 3 for c in counts)  # still checking: a re-approved app recovers within ~18 min


@pytest.mark.parametrize("error", [InvalidSpec("bad"), CredentialsNotFound("gone"), TargetSecretConflict("x")])
def test_input_errors_wait_for_a_change_with_a_slow_recheck(error: OperatorError) -> None:
    for delay in delays(error, 5):
        assert 300 <= delay <= 360


@pytest.mark.parametrize(("error", "failures", "expires_in", "retry_after", "expected"), [
    (EndpointUnavailable("429"), 1, HOUR, 120, 120),       # never sooner than asked
    (EndpointUnavailable("503"), 1, 30, 120, 120),         # even when the token expires first: polite default
    (EndpointUnavailable("429"), 1, HOUR, 86_400, RETRY_AFTER_CAP_SECONDS),   # absurd values capped at 1 h
    (InvalidClient("401"), 1, None, 1_000, 1_000),
    (EndpointUnavailable("503"), 1, HOUR, 0, None),         # Retry-After: 0 changes nothing
])
def test_retry_after_is_honoured(error: OperatorError, failures: int, expires_in: float | None,
                                 retry_after: float, expected: float | None) -> None:
    error.retry_after = retry_after
    delay = delays(error, failures, expires_in=expires_in)[-1]
    error.retry_after = None
    without = delays(error, failures, expires_in=expires_in)[-1]
    assert delay == (without if expected is None else max(expected, without))


def test_retry_delay_is_deterministic() -> None:
    assert delays(EndpointUnavailable("x"), 10) == delays(EndpointUnavailable("y"), 10)
    other = [retry_delay(error=EndpointUnavailable("x"), consecutive_failures=n, now=T0,
                         expires_at=T0 + timedelta(hours=24), jitter_key="uid-2") for n in range(1, 11)]
    assert other != delays(EndpointUnavailable("x"), 10)  # ... and keyed per resource


# --- human text ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "0s"), (0, "0s"), (0.9, "0s"), (40, "40s"), (40.9, "40s"), (59, "59s"), (60, "1m"), (90, "1m30s"),
    (9 * 60 + 59, "9m59s"), (10 * 60 + 30, "10m"), (17 * 60, "17m"), (17 * 60 + 59, "17m"), (3600, "1h"),
    (3900, "1h5m"), (3959, "1h5m"), (86_400, "1d"), (90_000, "1d1h"), (7200, "2h"),
])
def test_humanize_duration(seconds: float, text: str) -> None:
    assert humanize_duration(seconds) == text


@pytest.mark.parametrize(("next_in", "expires_in", "failing", "text"), [
    (19 * MIN, 29 * MIN, False, "next refresh in 19m"),
    (40, 17 * MIN, True, "retrying in 40s; current token valid for 17m"),
    (40, -3 * MIN, True, "retrying in 40s; current token expired 3m ago"),
    (65 * MIN, None, True, "retrying in 1h5m; no valid token"),
    (-5, 10 * MIN, False, "next refresh in 0s"),
])
def test_describe_next(next_in: float, expires_in: float | None, failing: bool, text: str) -> None:
    expires = None if expires_in is None else T0 + timedelta(seconds=expires_in)
    assert describe_next(now=T0, next_attempt_at=T0 + timedelta(seconds=next_in), expires_at=expires,
                         failing=failing) == text


def test_default_lifetime_prefers_the_resource_then_the_setting() -> None:
    from oauth_token_operator.api import RefreshPolicy
    from oauth_token_operator.schedule import default_lifetime
    from oauth_token_operator.settings import OperatorSettings

    settings = OperatorSettings(default_token_lifetime_seconds=1800)
    assert default_lifetime(None, settings) == 1800
    assert default_lifetime(RefreshPolicy(), settings) == 1800
    assert default_lifetime(RefreshPolicy(defaultLifetime="15m"), settings) == 900
