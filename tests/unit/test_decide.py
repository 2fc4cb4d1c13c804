"""The decision chain, policy by policy and in order (pure: microseconds, no cluster, no network)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from oauth_token_operator import decide as d
from oauth_token_operator.decide import Action, Facts, Trigger, decide
from oauth_token_operator.kube.target import TargetState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GOOD = TargetState(exists=True, ours=True, resource_version="5", issued_at=NOW - timedelta(minutes=10),
                   expires_at=NOW + timedelta(minutes=50), inputs="in-1", has_token=True, intact=True)
FRESH = Facts(now=NOW, target=GOOD, inputs="in-1", attempted_inputs="in-1", failures=0, next_attempt=None,
              held_token_valid=False, held_token_written=False, write_rejected=False,
              refresh_at=NOW + timedelta(minutes=30))


def facts(**changes: object) -> Facts:
    return replace(FRESH, **changes)  # type: ignore[arg-type]


def test_a_fresh_token_waits_for_its_refresh_time() -> None:
    decision = decide(FRESH)
    assert (decision.action, decision.trigger, decision.at) == (Action.WAIT, Trigger.FRESH, FRESH.refresh_at)


def test_a_due_token_is_requested() -> None:
    decision = decide(facts(refresh_at=NOW))
    assert (decision.action, decision.trigger) == (Action.REQUEST, Trigger.RENEWAL_DUE)
    assert not decision.requested_by_user


def test_a_secret_that_is_not_ours_is_a_conflict_whatever_else_is_true() -> None:
    foreign = TargetState(exists=True, ours=False, has_token=True, intact=True)
    for extra in ({}, {"attempted_inputs": "old"}, {"held_token_valid": True}, {"failures": 3}):
        assert decide(facts(target=foreign, **extra)).action is Action.CONFLICT


def test_a_spec_or_reference_change_requests_at_once_even_while_backing_off() -> None:
    decision = decide(facts(attempted_inputs="in-0", failures=4, next_attempt=NOW + timedelta(minutes=10)))
    assert (decision.action, decision.trigger) == (Action.REQUEST, Trigger.INPUTS_CHANGED)
    assert decision.requested_by_user, "a user's change bypasses an open endpoint circuit"


def test_a_backoff_is_respected_and_its_end_retries() -> None:
    later = NOW + timedelta(minutes=2)
    assert decide(facts(failures=1, next_attempt=later)) == d.Decision(Action.WAIT, Trigger.BACKING_OFF, at=later)
    due = decide(facts(failures=1, next_attempt=NOW, refresh_at=NOW + timedelta(minutes=30)))
    assert (due.action, due.trigger) == (Action.REQUEST, Trigger.RETRY_DUE)


@pytest.mark.parametrize(("target", "trigger"), [
    (TargetState(exists=False, ours=False), Trigger.TARGET_MISSING),
    (replace(GOOD, intact=False), Trigger.TARGET_TAMPERED),
])
def test_a_missing_or_tampered_secret_gets_the_held_token_back_without_a_request(
        target: TargetState, trigger: Trigger) -> None:
    decision = decide(facts(target=target, held_token_valid=True, held_token_written=True))
    assert (decision.action, decision.trigger) == (Action.WRITE, trigger)


@pytest.mark.parametrize(("target", "refresh_at", "trigger"), [
    (TargetState(exists=False, ours=False), None, Trigger.TARGET_MISSING),
    (replace(GOOD, intact=False), FRESH.refresh_at, Trigger.TARGET_TAMPERED),
    (replace(GOOD, expires_at=None), None, Trigger.NO_TOKEN),
])
def test_without_a_held_token_a_missing_tampered_or_unrecorded_secret_gets_a_new_one(
        target: TargetState, refresh_at: datetime | None, trigger: Trigger) -> None:
    decision = decide(facts(target=target, refresh_at=refresh_at))
    assert (decision.action, decision.trigger) == (Action.REQUEST, trigger)


def test_a_held_token_not_yet_written_is_written_even_during_a_backoff() -> None:
    decision = decide(facts(held_token_valid=True, held_token_written=False, failures=2,
                            next_attempt=NOW + timedelta(minutes=5)))
    assert (decision.action, decision.trigger) == (Action.WRITE, Trigger.HELD_TOKEN_UNWRITTEN)


def test_a_held_token_for_other_inputs_is_not_written_back() -> None:
    # The caller says "valid" only for the current inputs; a token for an old spec is never restored.
    decision = decide(facts(target=replace(GOOD, intact=False), held_token_valid=False, held_token_written=True))
    assert decision.action is Action.REQUEST


def test_a_secret_the_api_server_refused_is_not_requested_again_until_the_inputs_change() -> None:
    missing = TargetState(exists=False, ours=False)
    decision = decide(facts(target=missing, refresh_at=None, write_rejected=True))
    assert (decision.action, decision.trigger) == (Action.WAIT, Trigger.WRITE_REJECTED)
    assert decision.at is not None and decision.at > NOW
    changed = decide(facts(target=missing, refresh_at=None, write_rejected=False, attempted_inputs="in-0"))
    assert changed.action is Action.REQUEST


def test_a_token_whose_inputs_nobody_recorded_is_replaced_once() -> None:
    decision = decide(facts(attempted_inputs=None))
    assert (decision.action, decision.trigger) == (Action.REQUEST, Trigger.INPUTS_CHANGED)
    assert not decision.requested_by_user


def test_the_chain_is_in_the_documented_order() -> None:
    assert [p.__name__ for p in d.POLICIES] == [
        "target_not_ours", "held_token_belongs_in_target", "inputs_changed", "write_was_rejected",
        "backing_off", "target_lacks_token", "retry_due", "renewal"]
