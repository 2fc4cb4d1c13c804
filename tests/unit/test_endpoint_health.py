"""Shared bad news: the per-endpoint circuit breaker, driven by an explicit clock (no sleeping).

``simulate_dead_endpoint`` is importable for benchmarks: it returns requests per hour reaching a dead endpoint.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from tests.support.simulation import simulate_dead_endpoint

from oauth_token_operator.endpoint_health import ENDPOINT_MIN_CAP_SECONDS, Admission, EndpointHealth, circuit_key
from oauth_token_operator.errors import (
    CredentialsNotFound,
    EndpointUnavailable,
    InvalidClient,
    InvalidTokenResponse,
    TokenRequestRejected,
)
from oauth_token_operator.reasons import Reason
from oauth_token_operator.schedule import (
    RETRY_AFTER_CAP_SECONDS,
    RETRY_JITTER,
    TRANSIENT_CAP_SECONDS,
)
from oauth_token_operator.tokens.model import TLSMaterial
from oauth_token_operator.tokens.tls import tls_material_key

T0 = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)
URL = "https://idp.example.com/oauth2/token"
OTHER = "https://other.example.com/token"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def down(message: str = "connection refused", retry_after: float | None = None) -> EndpointUnavailable:
    return EndpointUnavailable(message, retry_after=retry_after)


def open_circuit(health: EndpointHealth, failures: int, *, start: float = 0.0) -> float:
    """Fail ``failures`` probes in a row on URL; returns the time of the last failure."""
    now = start
    health.record_failure(URL, down(), at(now))
    for _ in range(failures - 1):
        retry_at = health.retry_at(URL)
        assert retry_at is not None
        now = (retry_at - T0).total_seconds()
        assert health.acquire(URL, at(now), expires_at=at(now + 86_400)).probe  # a calm caller
        health.record_failure(URL, down(), at(now))
    return now


def test_a_healthy_endpoint_lets_everyone_through_and_stores_nothing() -> None:
    health = EndpointHealth()
    assert health.acquire(URL, T0) == Admission(allowed=True)
    health.record_success(URL, T0)
    assert len(health) == 0 and health.retry_at(URL) is None


def test_a_transient_failure_opens_the_circuit_for_everyone() -> None:
    health = EndpointHealth()
    health.record_failure(URL, down("503 Service Unavailable"), T0)
    admission = health.acquire(URL, at(1))
    assert not admission.allowed and not admission.probe
    assert admission.error is not None and admission.error.reason is Reason.ENDPOINT_UNAVAILABLE
    assert admission.error.message == "503 Service Unavailable"
    assert admission.retry_at is not None and at(5) <= admission.retry_at <= at(6)
    assert health.acquire(OTHER, at(1)).allowed  # other endpoints are unaffected


def test_exactly_one_caller_probes_when_the_time_comes() -> None:
    health = EndpointHealth()
    health.record_failure(URL, down(), T0)
    retry_at = health.retry_at(URL)
    assert retry_at is not None
    first, second = health.acquire(URL, retry_at), health.acquire(URL, retry_at)
    assert first.allowed and first.probe
    assert not second.allowed and second.retry_at == retry_at + timedelta(seconds=5)  # a local poll


def test_a_successful_probe_closes_the_circuit() -> None:
    health = EndpointHealth()
    open_circuit(health, 5)
    retry_at = health.retry_at(URL)
    assert retry_at is not None and health.acquire(URL, retry_at).probe
    health.record_success(URL, retry_at)
    assert len(health) == 0
    assert health.acquire(URL, retry_at) == Admission(allowed=True)


def test_failed_probes_back_off_exponentially_up_to_the_cap() -> None:
    health = EndpointHealth()
    now = open_circuit(health, 1)
    gaps = []
    for _ in range(12):
        retry_at = health.retry_at(URL)
        assert retry_at is not None
        gaps.append((retry_at - at(now)).total_seconds())
        now = (retry_at - T0).total_seconds()
        assert health.acquire(URL, retry_at, expires_at=at(now + 86_400)).probe
        health.record_failure(URL, down(), retry_at)
    growing = [g for g in gaps if g < TRANSIENT_CAP_SECONDS]
    assert growing == sorted(growing) and len(growing) >= 5
    assert gaps[-1] >= TRANSIENT_CAP_SECONDS
    assert max(gaps) <= TRANSIENT_CAP_SECONDS * (1 + RETRY_JITTER)


def test_an_urgent_waiter_shortens_the_window_but_not_below_a_minute() -> None:
    health = EndpointHealth()
    now = open_circuit(health, 10)
    calm = health.retry_at(URL)
    assert calm is not None and (calm - at(now)).total_seconds() >= TRANSIENT_CAP_SECONDS
    # a resource whose token expires in 2 minutes asks: the endpoint becomes probe-able within ~60 s
    denied = health.acquire(URL, at(now + 1), expires_at=at(now + 120))
    assert not denied.allowed and denied.retry_at is not None
    gap = (denied.retry_at - at(now)).total_seconds()
    assert ENDPOINT_MIN_CAP_SECONDS <= gap <= ENDPOINT_MIN_CAP_SECONDS * (1 + RETRY_JITTER)
    # an expired token (expires_at None) is urgent too, and a far-away expiry does not undo urgency
    health.acquire(URL, at(now + 2), expires_at=at(now + 86_400))
    assert health.retry_at(URL) == denied.retry_at


def test_a_probe_that_never_reports_back_expires() -> None:
    health = EndpointHealth(probe_timeout=30)
    health.record_failure(URL, down(), T0)
    retry_at = health.retry_at(URL)
    assert retry_at is not None
    assert health.acquire(URL, retry_at).probe  # ... and its caller is cancelled: no report ever comes
    stuck = health.acquire(URL, retry_at + timedelta(seconds=29))
    assert not stuck.allowed and stuck.retry_at == retry_at + timedelta(seconds=30)
    rescued = health.acquire(URL, retry_at + timedelta(seconds=30))
    assert rescued.allowed and rescued.probe


@pytest.mark.parametrize("free", [
    lambda health, now: health.release(URL),
    lambda health, now: health.record_failure(URL, CredentialsNotFound("no such Secret"), now),
])
def test_a_probe_that_never_sent_frees_the_slot(free: object) -> None:
    health = EndpointHealth()
    health.record_failure(URL, down(), T0)
    retry_at = health.retry_at(URL)
    assert retry_at is not None and health.acquire(URL, retry_at).probe
    free(health, retry_at)  # type: ignore[operator]
    assert health.acquire(URL, retry_at).probe
    assert health.retry_at(URL) == retry_at  # no failure was counted


@pytest.mark.parametrize("refusal", [InvalidClient("invalid_client"), TokenRequestRejected("invalid_scope")])
def test_refusals_are_client_specific_and_prove_the_server_is_up(refusal: InvalidClient) -> None:
    health = EndpointHealth()
    health.record_failure(URL, refusal, T0)
    assert len(health) == 0 and health.acquire(URL, T0).allowed  # does not open the circuit
    open_circuit(health, 3)
    health.record_failure(URL, refusal, at(3600))  # a probe answered 401: the server is back
    assert len(health) == 0


def test_input_errors_do_not_open_the_circuit() -> None:
    health = EndpointHealth()
    health.record_failure(URL, CredentialsNotFound("no such Secret"), T0)
    assert len(health) == 0


def test_invalid_token_responses_are_shared_like_outages() -> None:
    health = EndpointHealth()
    health.record_failure(URL, InvalidTokenResponse("HTML login page"), T0)
    admission = health.acquire(URL, at(1))
    assert not admission.allowed and admission.error is not None
    assert admission.error.reason is Reason.INVALID_TOKEN_RESPONSE


@pytest.mark.parametrize(("retry_after", "expected"), [
    (600, 600), (86_400, RETRY_AFTER_CAP_SECONDS), (1, None), (0, None),
])
def test_retry_after_is_a_floor(retry_after: float, expected: float | None) -> None:
    health = EndpointHealth()
    health.record_failure(URL, down("429 Too Many Requests", retry_after=retry_after), T0)
    retry_at = health.retry_at(URL)
    assert retry_at is not None
    if expected is None:  # shorter than the backoff: the backoff wins
        assert at(5) <= retry_at <= at(6)
    else:
        assert retry_at == at(expected)
        # an urgent waiter cannot pull the probe before the server's Retry-After
        assert not health.acquire(URL, at(expected - 1), expires_at=None).allowed
        assert health.acquire(URL, at(expected)).probe


def test_failures_of_requests_already_in_flight_do_not_escalate() -> None:
    health = EndpointHealth()
    for i in range(100):  # 100 resources sent while the circuit was still closed; all fail together
        health.record_failure(URL, down(f"timeout {i}"), at(i / 100))
    retry_at = health.retry_at(URL)
    assert retry_at is not None and retry_at <= at(6)  # still the first step of the backoff
    admission = health.acquire(URL, at(2))
    assert admission.error is not None and admission.error.message == "timeout 99"  # the latest news


def test_memory_is_bounded() -> None:
    health = EndpointHealth(forget_after=3600)
    for i in range(50):
        health.record_failure(f"https://idp{i}.example.com/token", down(), T0)
    assert len(health) == 50
    for i in range(25):
        health.record_success(f"https://idp{i}.example.com/token", at(1))
    assert len(health) == 25
    health.record_failure(URL, down(), at(2 * 3600))  # the rest went quiet (resources deleted): forgotten
    assert len(health) == 1


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        EndpointHealth(probe_timeout=0)


# --- the point of it all ---------------------------------------------------------------------------------

def test_one_resource_on_a_dead_endpoint() -> None:
    counts = simulate_dead_endpoint(1, 3)
    assert counts[0] <= 40  # refreshes at ~20 min, then backs off; its token expires at 30 min
    assert all(c <= 60 for c in counts[1:])  # no valid token: about once a minute


@pytest.mark.parametrize("n_resources", [10, 100, 1000])
def test_many_resources_on_a_dead_endpoint_cost_about_one(n_resources: int) -> None:
    single = simulate_dead_endpoint(1, 2)
    many = simulate_dead_endpoint(n_resources, 2)
    assert all(c <= 65 for c in many)  # <= ~1/min whatever N (5 s, 10 s, 20 s, 40 s, then ~60 s)
    assert sum(many) <= 2 * sum(single)  # not N times as many
    assert math.isclose(many[1], single[1], rel_tol=0.2)  # deep in the outage: the same cadence


def test_a_failure_with_one_tls_material_leaves_the_endpoint_open_to_other_material() -> None:
    public = circuit_key(URL, tls_material_key(TLSMaterial()))
    own_ca = circuit_key(URL, tls_material_key(TLSMaterial(ca_bundle_pem="-----BEGIN CERTIFICATE-----\n...")))
    assert public == circuit_key(URL, tls_material_key(TLSMaterial()))  # the public CAs: one circuit for all
    assert own_ca != public
    assert circuit_key("https://other.example.com/token", tls_material_key(TLSMaterial())) != public
    health = EndpointHealth()
    health.record_failure(own_ca, EndpointUnavailable("TLS certificate verification failed"), T0)

    assert not health.acquire(own_ca, T0 + timedelta(seconds=1)).allowed
    assert health.acquire(public, T0 + timedelta(seconds=1)).allowed
