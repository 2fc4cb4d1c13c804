"""Shared bad news: one circuit breaker per token endpoint, so N resources on a dead server cost one resource's
requests, not N times as many.

Resources that share a token endpoint share its outages, as long as they also reach it with the same TLS
material (:func:`circuit_key`): a TLS failure may be one client's own (a CA bundle that is not the server's, a
client certificate the server refuses), and another tenant whose settings work must not inherit it.

Each resource asks :meth:`EndpointHealth.acquire` before sending; while the endpoint's circuit is open the
answer is "don't", with the failure that opened it (for the resource's Ready message) and when to come back.
The life of a circuit::

    closed ──transient failure──▶ open ──retry_at reached──▶ half-open (one probe in flight)
      ▲                            ▲                            │
      └── success or a refusal ────┼──── probe fails ───────────┤
          (the server answered)    └──── probe silent for probe_timeout: another caller may probe

* Open lasts the schedule's transient backoff for the *endpoint* (5 s doubling, +0-20 % jitter keyed by the URL
  and failure count), capped at 5 min; the cap shrinks to what the most urgent waiting resource needs (a
  quarter of its token's remaining validity, :func:`~oauth_token_operator.schedule.transient_cap`) but never
  below 60 s, also when tokens have expired: the endpoint is probed as often as its most urgent resource
  needs, and never more than about once a minute in a long outage, whatever the number of resources.
* ``Retry-After`` (capped at 1 h) is a floor under ``retry_at``.
* Refusals (``InvalidClient``, ``TokenRequestRejected``) are about one client: they prove the server is up,
  so they close the circuit rather than open it. Input errors never reached the server: they only free the
  probe slot, as :meth:`EndpointHealth.release` does for a cancelled caller.
* Only open circuits are stored; one nobody has asked about for an hour is forgotten.

No clock inside: every method takes ``now``. No locks: methods never await, so on one asyncio event loop each
call is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import Circuit, OperatorError
from .schedule import (
    NO_TOKEN_RETRY_CAP_SECONDS,
    RETRY_AFTER_CAP_SECONDS,
    TRANSIENT_BASE_SECONDS,
    TRANSIENT_CAP_SECONDS,
    TRANSIENT_FACTOR,
    backoff,
    jitter_unit,
    transient_cap,
)

__all__ = ["ENDPOINT_MIN_CAP_SECONDS", "Admission", "EndpointHealth", "circuit_key"]

#: However urgent its waiters, a dead endpoint is not probed more than about once a minute in a long outage.
ENDPOINT_MIN_CAP_SECONDS = NO_TOKEN_RETRY_CAP_SECONDS


def circuit_key(endpoint: str, tls_key: str) -> str:
    """The circuit a request belongs to: its token endpoint and the digest of the TLS material it connects with
    (``tokens.tls.tls_material_key``, which also keys the connection pools). Everybody trusting the public CAs
    shares one circuit per endpoint; a tenant with its own CA bundle or client certificate has its own."""
    return f"{endpoint} tls:{tls_key[:16]}"


@dataclass(frozen=True)
class Admission:
    """The answer to "may I send a token request to this endpoint now?".

    ``allowed``: send. ``probe``: this caller tests an open circuit and must report the outcome
    (``record_success``/``record_failure``, or ``release`` if it never sent). When not allowed, come back at
    ``retry_at`` (a local wake-up, not a request) and report ``error``, the failure that keeps the circuit open.
    """

    allowed: bool
    probe: bool = False
    retry_at: datetime | None = None
    error: OperatorError | None = None


@dataclass
class _Circuit:
    error: OperatorError
    failures: int
    last_failure_at: datetime
    not_before: datetime
    last_seen: datetime
    cap: float = TRANSIENT_CAP_SECONDS
    probe_started: datetime | None = None


class EndpointHealth:
    """In-memory circuit breakers keyed by :func:`circuit_key` (opaque here). See the module docstring.

    ``probe_timeout``: a probe that has not reported back after this long is presumed lost (its caller was
    cancelled) and another caller may probe; keep it above the request timeout. ``probe_poll``: callers
    denied while a probe is in flight come back this soon, to pick up a success quickly.
    ``forget_after``: a circuit nobody asked about for this long is dropped (its resources are gone).
    """

    def __init__(self, *, probe_timeout: float = 60.0, probe_poll: float = 5.0,
                 forget_after: float = 3600.0) -> None:
        if probe_timeout <= 0 or probe_poll <= 0 or forget_after <= 0:
            raise ValueError("probe_timeout, probe_poll and forget_after must be positive")
        self._probe_timeout = timedelta(seconds=probe_timeout)
        self._probe_poll = timedelta(seconds=probe_poll)
        self._forget_after = timedelta(seconds=forget_after)
        self._circuits: dict[str, _Circuit] = {}

    def __len__(self) -> int:
        """The number of open circuits (closed ones are not stored)."""
        return len(self._circuits)

    def acquire(self, endpoint: str, now: datetime, *, expires_at: datetime | None = None) -> Admission:
        """May the caller send a request to ``endpoint`` at ``now``?

        ``expires_at`` is the caller's current token expiry (None: it has no valid token): an urgent caller
        shortens the open window of the endpoint, down to :data:`ENDPOINT_MIN_CAP_SECONDS`.
        """
        circuit = self._circuits.get(endpoint)
        if circuit is None:
            return Admission(allowed=True)
        circuit.last_seen = now
        circuit.cap = min(circuit.cap, max(ENDPOINT_MIN_CAP_SECONDS, transient_cap(now=now, expires_at=expires_at)))
        if circuit.probe_started is not None:
            deadline = circuit.probe_started + self._probe_timeout
            if now < deadline:
                return Admission(allowed=False, retry_at=min(deadline, now + self._probe_poll),
                                 error=circuit.error)
            circuit.probe_started = None  # the probe never reported back: let this caller try
        retry_at = self._retry_at(endpoint, circuit)
        if now < retry_at:
            return Admission(allowed=False, retry_at=retry_at, error=circuit.error)
        circuit.probe_started = now
        return Admission(allowed=True, probe=True, error=circuit.error)

    def record_success(self, endpoint: str, now: datetime) -> None:
        """The endpoint issued a token: close (forget) its circuit."""
        del now  # part of the signature so that every report carries the time; a success needs none
        self._circuits.pop(endpoint, None)

    def record_failure(self, endpoint: str, error: OperatorError, now: datetime) -> None:
        """A request to ``endpoint`` failed with ``error`` at ``now``.

        Transient errors open the circuit (or, from a probe or after ``retry_at``, extend its backoff; late
        failures of requests sent before it opened only refresh the message). Refusals close it: the server
        answered. Anything else never reached the server and only frees the probe slot.
        """
        if error.circuit is Circuit.CLOSE:
            self._circuits.pop(endpoint, None)
            return
        if error.circuit is Circuit.UNTOUCHED:
            self.release(endpoint)
            return
        not_before = now
        if error.retry_after is not None and error.retry_after > 0:
            not_before = now + timedelta(seconds=min(error.retry_after, RETRY_AFTER_CAP_SECONDS))
        circuit = self._circuits.get(endpoint)
        if circuit is None:
            self._forget_stale(now)
            self._circuits[endpoint] = _Circuit(error=error, failures=1, last_failure_at=now,
                                                not_before=not_before, last_seen=now)
            return
        escalate = circuit.probe_started is not None or now >= self._retry_at(endpoint, circuit)
        circuit.error = error
        circuit.last_seen = now
        circuit.not_before = max(circuit.not_before, not_before)
        if escalate:
            circuit.failures += 1
            circuit.last_failure_at = now
            circuit.probe_started = None

    def release(self, endpoint: str) -> None:
        """The caller holding the probe never sent it (cancelled, input error): another caller may probe."""
        circuit = self._circuits.get(endpoint)
        if circuit is not None:
            circuit.probe_started = None

    def retry_at(self, endpoint: str) -> datetime | None:
        """When the endpoint's circuit lets a probe through; None when it is closed."""
        circuit = self._circuits.get(endpoint)
        return None if circuit is None else self._retry_at(endpoint, circuit)

    @staticmethod
    def _retry_at(endpoint: str, circuit: _Circuit) -> datetime:
        delay = backoff(circuit.failures, base=TRANSIENT_BASE_SECONDS, factor=TRANSIENT_FACTOR, cap=circuit.cap,
                        unit=jitter_unit(endpoint, "endpoint", circuit.failures))
        return max(circuit.not_before, circuit.last_failure_at + timedelta(seconds=delay))

    def _forget_stale(self, now: datetime) -> None:
        stale = [url for url, circuit in self._circuits.items() if now - circuit.last_seen > self._forget_after]
        for url in stale:
            del self._circuits[url]
