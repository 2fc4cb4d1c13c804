"""When to refresh a token and when to retry a failed request: pure functions, no I/O, no clock, no sleeping.

The promise: a pod that reads the mounted token file never sees an expired token while the authorization
server is healthy, and the operator never hammers a server that is not. Everything here is a function of
(issued, expires, policy, now, failure history) and a *stable* jitter key, so an operator that restarts
recomputes exactly the ``nextRefreshTime`` it had written to status.

Refresh (:func:`next_refresh_time`), as offsets after ``issued_at`` for a token of lifetime ``L``:

* target   ``L - renewBefore`` (``renewBefore`` = ``renewBeforePercentage`` % of ``L``, default 33 %: a
  token is refreshed after about two thirds of its lifetime, cert-manager's rule);
* latest   ``L - (kubelet_sync + request_budget)`` (100 s by default): the new token is in the Secret at least
  as long before the old one expires as the kubelet takes to update a Secret volume, so a pod reading the
  file never holds an expired token. ``kubelet_sync`` (90 s) is the kubelet's default ``syncFrequency`` (1m)
  plus the up to 50 % jitter it adds per pod: measured with a real kubelet from the API write to the new
  file content, 69-83 s, up to 90 s (``tests/pods/``); ``request_budget`` is the request timeout (10 s);
* earliest ``max(10 % of L, 10 s)``: no policy makes the operator ask more often than that, but never more
  than ``L / 2``, so that even a 20 s token is renewed before it expires;
* jitter   the target moves *earlier* by up to 5 % of ``L`` (never later, so every guarantee above holds), by
  a hash of the resource uid and the issue time: 1,000 tokens issued in the same second spread over a
  90 s window for 30-minute tokens instead of hitting the server in the same second.

Retry (:func:`retry_delay`), after the ``n``-th consecutive failure, jitter lengthening by 0-20 %:

============================ ==================== ======================================================
error                        delay                why
============================ ==================== ======================================================
transient (unavailable,      5 s x 2^(n-1),       blips recover in seconds; 5 min keeps a long outage at
invalid response)            cap 5 min            12 requests/hour per resource. The cap shrinks to a
                                                  quarter of the current token's remaining validity
                                                  (never below 10 s) so >= 4 attempts fit before it
                                                  expires; with no valid token left the cap is 60 s.
refused (InvalidClient,      2 min x 3^(n-1),     a revoked credential rarely comes back by itself:
TokenRequestRejected)        cap 15 min           <= 6 requests in the first hour, <= 4/hour after.
input (InvalidSpec, ...)     5 min recheck        a change to the spec or a referenced object retries at
                                                  once; the recheck only covers a missed watch event.
Kubernetes API unavailable   1 s x 2^(n-1),       an API server restart takes seconds; due tokens must
                             cap 15 s             follow within seconds of its return.
============================ ==================== ======================================================

``Retry-After`` is honoured: the delay is never shorter than the server asked, even if the current token
expires first (a rate-limited or overloaded server answers an earlier retry with another refusal, and RFC 9110
says that is how long the client ought to wait). Absurd values are capped at one hour: a proxy that sends
``Retry-After: 86400`` must not park a resource for a day; the refresh annotation still forces a request.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from .api import RefreshPolicy, parse_duration
from .errors import OperatorError, Retry
from .settings import OperatorSettings

__all__ = [
    "INPUT_RECHECK_SECONDS",
    "JITTER_FRACTION",
    "KUBERNETES_BASE_SECONDS",
    "KUBERNETES_CAP_SECONDS",
    "MIN_REFRESH_INTERVAL_SECONDS",
    "MIN_REFRESH_LIFETIME_FRACTION",
    "NO_TOKEN_RETRY_CAP_SECONDS",
    "REFUSED_BASE_SECONDS",
    "REFUSED_CAP_SECONDS",
    "REFUSED_FACTOR",
    "RETRY_AFTER_CAP_SECONDS",
    "RETRY_JITTER",
    "TRANSIENT_BASE_SECONDS",
    "TRANSIENT_CAP_SECONDS",
    "TRANSIENT_FACTOR",
    "URGENT_RETRIES",
    "URGENT_RETRY_FLOOR_SECONDS",
    "Policy",
    "backoff",
    "default_lifetime",
    "describe_next",
    "humanize_duration",
    "jitter_unit",
    "next_refresh_time",
    "retry_delay",
    "transient_cap",
]

# --- refresh ---------------------------------------------------------------------------------------------
#: Refresh points move earlier by up to this fraction of the lifetime (Vault Secrets Operator jitters too):
#: enough to spread a fleet issued together (90 s for a 30-minute token), too little to matter for load.
JITTER_FRACTION = 0.05
#: No policy refreshes more often than every 10 s ...
MIN_REFRESH_INTERVAL_SECONDS = 10.0
#: ... or every tenth of the lifetime (the clamp ``renewBefore`` documents in the CRD).
MIN_REFRESH_LIFETIME_FRACTION = 0.10

# --- retry -----------------------------------------------------------------------------------------------
#: First retry after a transient failure: a reset connection or a single 503 usually clears in seconds.
TRANSIENT_BASE_SECONDS = 5.0
TRANSIENT_FACTOR = 2.0
#: Steady retry interval in a long outage while the current token is far from expiry: 12 requests/hour.
TRANSIENT_CAP_SECONDS = 300.0
#: Near expiry the cap is the remaining validity divided by this, so at least this many attempts fit ...
URGENT_RETRIES = 4
#: ... but never closer together than this (the refresh floor): a 20 s token is not retried every 2 s.
URGENT_RETRY_FLOOR_SECONDS = 10.0
#: With no valid token left the pods are already failing: learn of the server's return within a minute,
#: at one request a minute (and one a minute per endpoint, whatever the number of resources: EndpointHealth).
NO_TOKEN_RETRY_CAP_SECONDS = 60.0
#: A refusal (revoked or wrong credentials, bad scope) needs a human or a portal; 2 min, 6 min, then 15 min:
#: at most 6 requests in the first hour (including the refused one) and 4 an hour after.
REFUSED_BASE_SECONDS = 120.0
REFUSED_FACTOR = 3.0
REFUSED_CAP_SECONDS = 900.0
#: The user's objects must change (which retries at once through the watch); this only catches a lost event.
INPUT_RECHECK_SECONDS = 300.0
# The Kubernetes API server failing us (down for an upgrade, restarting, overloaded): 1 s doubling, capped at
# 15 s, so that resources whose tokens came due during an outage get them within seconds after it ends; the
# jitter below spreads them, and the client's own gate (kube/client.py) keeps the outage itself quiet.
KUBERNETES_BASE_SECONDS = 1.0
KUBERNETES_FACTOR = 2.0
KUBERNETES_CAP_SECONDS = 15.0
#: Retry delays are lengthened by 0-20 %: spreads retries without ever retrying sooner than documented.
RETRY_JITTER = 0.2
#: Retry-After is honoured up to an hour; beyond that it is more likely a misconfiguration than a plan.
RETRY_AFTER_CAP_SECONDS = 3600.0


@dataclass(frozen=True)
class Policy:
    """The refresh policy of one resource, in seconds. Build it with :meth:`from_spec`.

    ``renew_before`` (absolute) wins over ``renew_before_percentage`` when set. ``kubelet_sync`` plus
    ``request_budget`` is how long before expiry the new token must be requested, when the lifetime allows:
    the request may take ``request_budget`` (the request timeout) and the kubelet up to ``kubelet_sync`` more
    to update the pod's file.
    """

    renew_before_percentage: float = 33.0
    renew_before: float | None = None
    kubelet_sync: float = 90.0
    request_budget: float = 10.0
    jitter_fraction: float = JITTER_FRACTION
    min_interval: float = MIN_REFRESH_INTERVAL_SECONDS
    min_lifetime_fraction: float = MIN_REFRESH_LIFETIME_FRACTION

    def __post_init__(self) -> None:
        if not 0 < self.renew_before_percentage < 100:
            raise ValueError("renew_before_percentage must be in (0, 100)")
        if self.renew_before is not None and self.renew_before < 0:
            raise ValueError("renew_before must not be negative")
        if self.kubelet_sync < 0 or self.request_budget < 0 or self.min_interval < 0:
            raise ValueError("kubelet_sync, request_budget and min_interval must not be negative")
        if not 0 <= self.jitter_fraction < 0.5 or not 0 <= self.min_lifetime_fraction <= 0.5:
            raise ValueError("jitter_fraction must be in [0, 0.5) and min_lifetime_fraction in [0, 0.5]")

    @classmethod
    def from_spec(cls, spec_policy: RefreshPolicy | None, settings: OperatorSettings) -> Policy:
        """The resource's ``spec.refreshPolicy`` over the operator-wide defaults."""
        percentage = float(settings.renew_before_percentage)
        renew_before: float | None = None
        if spec_policy is not None:
            if spec_policy.renew_before is not None:
                renew_before = parse_duration(spec_policy.renew_before)
            if spec_policy.renew_before_percentage is not None:
                percentage = float(spec_policy.renew_before_percentage)
        return cls(renew_before_percentage=percentage, renew_before=renew_before,
                   kubelet_sync=float(settings.kubelet_sync_seconds),
                   request_budget=float(settings.request_timeout_seconds))


def default_lifetime(spec_policy: RefreshPolicy | None, settings: OperatorSettings) -> float:
    """Seconds assumed for a token whose response states no lifetime (no ``expires_in``, not a JWT with
    ``exp``): the resource's ``refreshPolicy.defaultLifetime``, else the operator setting. The operator and the
    ``token`` command both ask here, so they agree."""
    if spec_policy is not None and spec_policy.default_lifetime:
        return parse_duration(spec_policy.default_lifetime)
    return float(settings.default_token_lifetime_seconds)


def jitter_unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts``: jitter that survives an operator restart."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def next_refresh_time(*, issued_at: datetime, expires_at: datetime, policy: Policy, jitter_key: str) -> datetime:
    """When to request the next token (UTC, whole seconds so it survives a round trip through status).

    ``jitter_key`` is stable per resource (its uid); the issue time is mixed in so each token of the resource
    gets its own jitter. The result may be in the past (e.g. after the operator was down): refresh at once.
    A token that expires when (or before) it is issued (a broken server, or a JWT ``exp`` from a skewed clock)
    is refreshed after ``min_interval``, not in a loop; any other at least 1 s after issue (so only tokens
    living under 2 s can expire before their refresh).
    """
    _require_aware(issued_at, expires_at)
    issued = math.floor(issued_at.timestamp())
    lifetime = expires_at.timestamp() - issued
    if lifetime <= 0:
        return datetime.fromtimestamp(issued + math.ceil(policy.min_interval), tz=UTC)
    earliest = min(max(policy.min_lifetime_fraction * lifetime, policy.min_interval), lifetime / 2)
    latest = max(earliest, lifetime - (policy.kubelet_sync + policy.request_budget))
    renew_before = (policy.renew_before if policy.renew_before is not None
                    else lifetime * policy.renew_before_percentage / 100)
    target = min(max(lifetime - renew_before, earliest), latest)
    window = min(policy.jitter_fraction * lifetime, target - earliest)
    offset = target - window * jitter_unit(jitter_key, "refresh", issued)
    # Never at the issue instant itself: a (pathological) 1 s token must not become a tight request loop.
    return datetime.fromtimestamp(issued + max(1, math.floor(offset)), tz=UTC)


def transient_cap(*, now: datetime, expires_at: datetime | None) -> float:
    """The longest wait before retrying a transient failure, given the current token's expiry.

    5 min while the token has more than 20 min left; then a quarter of what remains (>= 4 attempts before
    expiry), never below 10 s; 60 s when there is no valid token. :class:`EndpointHealth` uses the same
    numbers for a whole endpoint.
    """
    if expires_at is None:
        return NO_TOKEN_RETRY_CAP_SECONDS
    _require_aware(now, expires_at)
    remaining = (expires_at - now).total_seconds()
    if remaining <= 0:
        return NO_TOKEN_RETRY_CAP_SECONDS
    return min(TRANSIENT_CAP_SECONDS, max(URGENT_RETRY_FLOOR_SECONDS, remaining / URGENT_RETRIES))


def backoff(failures: int, *, base: float, factor: float, cap: float, unit: float) -> float:
    """``base * factor**(failures-1)`` capped at ``cap``, then lengthened by ``unit`` x 20 % (``unit`` in [0, 1))."""
    exponent = min(max(failures, 1) - 1, 64)  # large enough to reach any cap, small enough not to overflow
    return min(base * factor**exponent, cap) * (1 + RETRY_JITTER * unit)


def retry_delay(*, error: OperatorError, consecutive_failures: int, now: datetime,
                expires_at: datetime | None, jitter_key: str) -> float:
    """Seconds to wait after the ``consecutive_failures``-th failure in a row (1 for the first) with ``error``.

    ``expires_at`` is the expiry of the token still in the Secret (None when there is none): near it,
    transient failures are retried sooner. See the module docstring for the numbers and why.
    """
    unit = jitter_unit(jitter_key, "retry", consecutive_failures)
    if error.retry is Retry.TRANSIENT:
        if expires_at is None or expires_at <= now:
            delay = backoff(consecutive_failures, base=TRANSIENT_BASE_SECONDS, factor=TRANSIENT_FACTOR,
                            cap=NO_TOKEN_RETRY_CAP_SECONDS, unit=unit)
        else:
            delay = min(backoff(consecutive_failures, base=TRANSIENT_BASE_SECONDS, factor=TRANSIENT_FACTOR,
                                cap=TRANSIENT_CAP_SECONDS, unit=unit),
                        transient_cap(now=now, expires_at=expires_at))
    elif error.retry is Retry.KUBERNETES:
        delay = backoff(consecutive_failures, base=KUBERNETES_BASE_SECONDS, factor=KUBERNETES_FACTOR,
                        cap=KUBERNETES_CAP_SECONDS, unit=unit)
    elif error.retry is Retry.REFUSED:
        delay = backoff(consecutive_failures, base=REFUSED_BASE_SECONDS, factor=REFUSED_FACTOR,
                        cap=REFUSED_CAP_SECONDS, unit=unit)
    else:  # input errors: wait for a change event, recheck slowly
        delay = INPUT_RECHECK_SECONDS * (1 + RETRY_JITTER * unit)
    if error.retry_after is not None and error.retry_after > 0:
        delay = max(delay, min(error.retry_after, RETRY_AFTER_CAP_SECONDS))
    return delay


def humanize_duration(seconds: float) -> str:
    """``40s``, ``2m30s``, ``17m``, ``1h5m``, ``2d3h``: two units at most, rounded down (a validity is never
    overstated), negative values as ``0s``."""
    total = max(0, math.floor(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    return f"{secs}s"


def describe_next(*, now: datetime, next_attempt_at: datetime, expires_at: datetime | None,
                  failing: bool) -> str:
    """The schedule part of the Ready message.

    ``next refresh in 19m`` when healthy; ``retrying in 40s; current token valid for 17m`` (or ``... expired
    3m ago`` / ``... no valid token``) after a failure, so a user reading Ready=False knows whether pods are
    affected yet.
    """
    wait = humanize_duration((next_attempt_at - now).total_seconds())
    if not failing:
        return f"next refresh in {wait}"
    if expires_at is None:
        validity = "no valid token"
    elif expires_at > now:
        validity = f"current token valid for {humanize_duration((expires_at - now).total_seconds())}"
    else:
        validity = f"current token expired {humanize_duration((now - expires_at).total_seconds())} ago"
    return f"retrying in {wait}; {validity}"


def _require_aware(*moments: datetime) -> None:
    # A naive datetime would be read in the operator's local time zone: a silent hours-long error.
    for moment in moments:
        if moment.tzinfo is None:
            raise ValueError("schedule needs timezone-aware datetimes")
