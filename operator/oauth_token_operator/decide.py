"""What to do next for one resource: an ordered chain of small, named policies over explicit facts.

Modelled on cert-manager's trigger policy chain (``pkg/controller/certificates/trigger/policies``): each policy
looks at the :class:`Facts` and either returns a :class:`Decision` (with the :class:`Trigger` that explains it)
or passes to the next one. Pure: no clock, no I/O; ``tests/unit/test_decide.py`` tests every policy alone and
the chain's order. The refresh cycle (``reconcile``) gathers the facts, asks :func:`decide`, and carries the
decision out.

The order matters, and says what wins:

1. a target Secret that is not ours is a clash, whatever else is true;
2. a token this process holds that is still valid for the current inputs is written back when the Secret lacks
   it (a write that failed, a tampered or deleted Secret): no new request is needed for that;
3. a change the user made (spec, referenced object, refresh annotation) requests a token at once, even during
   a backoff (and even while the endpoint's circuit is open: it is deliberate and doubles as a probe);
4. a Secret the API server refused to store for these inputs is not requested again until they change;
5. a backoff after a failure is respected;
6. a Secret without a usable token (missing, tampered with, no expiry recorded) gets one;
7. otherwise the schedule decides (``schedule.next_refresh_time``, computed by the caller into
   :attr:`Facts.refresh_at`).

The API server's own failures are not a policy: while it fails us nothing can even be read, so the cycle waits
for its backoff before gathering facts (``reconcile.Refresher.run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .kube.target import TargetState
from .schedule import INPUT_RECHECK_SECONDS

__all__ = ["POLICIES", "Action", "Decision", "Facts", "Trigger", "decide"]


class Action(StrEnum):
    REQUEST = "request"  # request a token now
    WRITE = "write"  # write the held token into the target Secret (no request)
    WAIT = "wait"  # nothing to do until Decision.at (or a change wakes the worker)
    CONFLICT = "conflict"  # report that the target Secret belongs to somebody else


class Trigger(StrEnum):
    """Why the decision was taken (logged, and part of messages)."""

    NOT_OURS = "the target Secret exists and was not created by this resource"
    WRITE_REJECTED = "the API server refused the target Secret rendered from these inputs"
    HELD_TOKEN_UNWRITTEN = "the token obtained earlier is not in the target Secret yet"
    TARGET_TAMPERED = "the target Secret's data was changed by somebody else"
    TARGET_MISSING = "the target Secret does not exist"
    INPUTS_CHANGED = "the spec, a referenced object or the refresh annotation changed"
    BACKING_OFF = "backing off after a failure"
    RETRY_DUE = "the retry after a failure is due"
    NO_TOKEN = "the target Secret records no token expiry"
    RENEWAL_DUE = "the token is due for renewal"
    FRESH = "the token is fresh"


@dataclass(frozen=True)
class Facts:
    """Everything a decision depends on, gathered by the caller."""

    now: datetime
    target: TargetState
    inputs: str
    """The inputs hash now (spec, refresh annotation, referenced objects' versions)."""
    attempted_inputs: str | None
    """The inputs of the last token request (None: never, or to be repeated)."""
    failures: int
    next_attempt: datetime | None
    """When the backoff after the last failure ends (None: no failure)."""
    write_rejected: bool
    """The API server refused (422) the target Secret rendered from these very inputs."""
    held_token_valid: bool
    """This process holds a token for these very inputs that has not expired."""
    held_token_written: bool
    """...and that token is what the target Secret should hold now."""
    refresh_at: datetime | None
    """When the token in the target Secret is due for renewal (None: no usable token there)."""


@dataclass(frozen=True)
class Decision:
    action: Action
    trigger: Trigger
    at: datetime | None = None
    """For WAIT: until when."""
    requested_by_user: bool = False
    """For REQUEST: a change the user made, sent even while the endpoint's circuit is open."""


Policy = Callable[[Facts], Decision | None]


def target_not_ours(facts: Facts) -> Decision | None:
    if facts.target.exists and not facts.target.ours:
        return Decision(Action.CONFLICT, Trigger.NOT_OURS)
    return None


#: How long a WAIT without a natural end lasts: a change wakes the worker before, this only covers a missed
#: watch event (the same as ``schedule.INPUT_RECHECK_SECONDS``).
RECHECK = timedelta(seconds=INPUT_RECHECK_SECONDS)


def write_was_rejected(facts: Facts) -> Decision | None:
    if facts.write_rejected:
        return Decision(Action.WAIT, Trigger.WRITE_REJECTED, at=facts.now + RECHECK)
    return None


def held_token_belongs_in_target(facts: Facts) -> Decision | None:
    if not facts.held_token_valid:
        return None
    if not facts.held_token_written:
        return Decision(Action.WRITE, Trigger.HELD_TOKEN_UNWRITTEN)
    if not facts.target.exists:
        return Decision(Action.WRITE, Trigger.TARGET_MISSING)
    if not facts.target.intact:
        return Decision(Action.WRITE, Trigger.TARGET_TAMPERED)
    return None


def inputs_changed(facts: Facts) -> Decision | None:
    # None means no request was ever recorded: the first request is not "a change by the user".
    if facts.attempted_inputs is not None and facts.inputs != facts.attempted_inputs:
        return Decision(Action.REQUEST, Trigger.INPUTS_CHANGED, requested_by_user=True)
    return None


def backing_off(facts: Facts) -> Decision | None:
    if facts.failures > 0 and facts.next_attempt is not None and facts.next_attempt > facts.now:
        return Decision(Action.WAIT, Trigger.BACKING_OFF, at=facts.next_attempt)
    return None


def target_lacks_token(facts: Facts) -> Decision | None:
    if not facts.target.exists:
        return Decision(Action.REQUEST, Trigger.TARGET_MISSING)
    if not facts.target.intact:
        return Decision(Action.REQUEST, Trigger.TARGET_TAMPERED)
    if facts.refresh_at is None:
        return Decision(Action.REQUEST, Trigger.NO_TOKEN)
    if facts.attempted_inputs is None:
        # A token whose inputs nobody recorded (status and annotation lost): we cannot tell what it was
        # requested with, so get one we can vouch for.
        return Decision(Action.REQUEST, Trigger.INPUTS_CHANGED)
    return None


def retry_due(facts: Facts) -> Decision | None:
    if facts.failures > 0:
        return Decision(Action.REQUEST, Trigger.RETRY_DUE)
    return None


def renewal(facts: Facts) -> Decision | None:
    assert facts.refresh_at is not None  # target_lacks_token handled a Secret without one
    if facts.refresh_at <= facts.now:
        return Decision(Action.REQUEST, Trigger.RENEWAL_DUE)
    return Decision(Action.WAIT, Trigger.FRESH, at=facts.refresh_at)


#: The chain, in the order of the module docstring.
POLICIES: tuple[Policy, ...] = (
    target_not_ours,
    held_token_belongs_in_target,
    inputs_changed,
    write_was_rejected,
    backing_off,
    target_lacks_token,
    retry_due,
    renewal,
)


def decide(facts: Facts) -> Decision:
    for policy in POLICIES:
        decision = policy(facts)
        if decision is not None:
            return decision
    raise AssertionError("renewal always decides")  # pragma: no cover
