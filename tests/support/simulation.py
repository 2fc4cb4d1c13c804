"""A deterministic simulation of N resources sharing a dead token endpoint, through the operator's own
``EndpointHealth`` and ``schedule`` (no clock, no network). Used by ``tests/unit/test_endpoint_health.py`` and
``bench/dead_endpoint.py``; it lives here so that the benchmark does not import a unit test.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

from oauth_token_operator.endpoint_health import EndpointHealth
from oauth_token_operator.errors import EndpointUnavailable
from oauth_token_operator.schedule import Policy, next_refresh_time, retry_delay

__all__ = ["simulate_dead_endpoint"]

T0 = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)
URL = "https://idp.example.com/oauth2/token"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def simulate_dead_endpoint(n_resources: int, hours: int, *, lifetime: float = 1800.0) -> list[int]:
    """Requests per hour that reach a token endpoint which is down for ``hours``.

    ``n_resources`` resources share the endpoint; when it goes down their tokens (``lifetime`` long) are at
    evenly spread points of their lives, so some need a refresh at once and some expire during the outage.
    Each resource follows the operator's loop: at its refresh or retry time it asks ``EndpointHealth``; if
    allowed it sends (counted; fails at once) and backs off with ``retry_delay``; if not, it comes back at the
    circuit's ``retry_at``.
    """
    health, policy, error = EndpointHealth(), Policy(), EndpointUnavailable("connection refused")
    end = at(hours * 3600)
    expires: list[datetime] = []
    failures = [0] * n_resources
    wakeups: list[tuple[datetime, int]] = []
    for i in range(n_resources):
        issued = at(-lifetime * i / n_resources)
        expires.append(issued + timedelta(seconds=lifetime))
        first = next_refresh_time(issued_at=issued, expires_at=expires[i], policy=policy, jitter_key=f"uid-{i}")
        heapq.heappush(wakeups, (max(first, T0), i))
    counts = [0] * hours
    while wakeups:
        now, i = heapq.heappop(wakeups)
        if now >= end:
            break
        valid = expires[i] if expires[i] > now else None
        admission = health.acquire(URL, now, expires_at=valid)
        if admission.allowed:
            counts[int((now - T0).total_seconds() // 3600)] += 1
            health.record_failure(URL, error, now)
            failures[i] += 1
            delay = retry_delay(error=error, consecutive_failures=failures[i], now=now, expires_at=valid,
                                jitter_key=f"uid-{i}")
            heapq.heappush(wakeups, (now + timedelta(seconds=delay), i))
        else:
            assert admission.retry_at is not None and admission.retry_at > now
            heapq.heappush(wakeups, (admission.retry_at, i))
    return counts
