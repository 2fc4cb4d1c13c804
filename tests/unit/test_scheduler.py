"""The scheduler's promises (scheduler.py): due order, one cycle per resource at a time, a wake-up during a cycle
is never lost, a bounded number of cycles at once, forgotten resources stay forgotten, nothing runs paused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from oauth_token_operator.scheduler import Scheduler


class Cycles:
    """A stand-in for the refresh cycle that records what ran and can be held in the middle of a run."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.running: set[str] = set()
        self.most_at_once = 0
        self.hold: dict[str, asyncio.Event] = {}
        self.next: dict[str, datetime | None] = {}

    async def __call__(self, uid: str) -> datetime | None:
        assert uid not in self.running, f"{uid} ran twice at once"
        self.running.add(uid)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.ran.append(uid)
        try:
            if uid in self.hold:
                await self.hold[uid].wait()
            else:
                await asyncio.sleep(0.01)
        finally:
            self.running.discard(uid)
        return self.next.get(uid)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Scheduler, Cycles]]:
    cycles = Cycles()
    scheduler = Scheduler(cycles, concurrency=4)
    task = asyncio.create_task(scheduler.serve())
    yield scheduler, cycles
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def settle(seconds: float = 0.1) -> None:
    await asyncio.sleep(seconds)


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_resources_run_in_due_order_and_not_before(served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    scheduler.schedule("late", soon(0.3))
    scheduler.schedule("early", soon(0.1))
    scheduler.schedule("later", soon(5))
    await settle(0.5)
    assert cycles.ran == ["early", "late"]


async def test_the_earliest_wish_wins(served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    scheduler.schedule("r", soon(5))
    scheduler.schedule("r", soon(0.05))  # woken earlier: moves
    scheduler.schedule("r", soon(10))  # a later wish does not postpone it
    await settle(0.3)
    assert cycles.ran == ["r"]


async def test_a_wake_during_a_cycle_runs_it_once_more_after_never_at_the_same_time(
        served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    hold = cycles.hold["r"] = asyncio.Event()
    cycles.next["r"] = soon(3600)
    scheduler.wake("r")
    await settle(0.05)
    assert cycles.running == {"r"}
    scheduler.wake("r")
    scheduler.wake("r")  # two wake-ups while running: one more cycle, not two
    await settle(0.05)
    assert cycles.ran == ["r"], "not while the first cycle runs"
    hold.set()
    await settle(0.2)
    assert cycles.ran == ["r", "r"]


async def test_the_due_time_a_cycle_returns_is_when_it_runs_again(served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    cycles.next["r"] = soon(0.2)
    scheduler.wake("r")
    await settle(0.1)
    assert cycles.ran == ["r"]
    cycles.next["r"] = None  # the second cycle wants nothing more
    await settle(0.3)
    assert cycles.ran == ["r", "r"]
    await settle(0.2)
    assert cycles.ran == ["r", "r"]


async def test_no_more_than_the_bound_run_at_once(served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    for i in range(20):
        scheduler.wake(f"r{i}")
    await settle(0.5)
    assert sorted(cycles.ran) == sorted(f"r{i}" for i in range(20))
    assert cycles.most_at_once == 4


async def test_a_forgotten_resource_is_cancelled_and_not_rescheduled(served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    cycles.hold["gone"] = asyncio.Event()
    cycles.next["gone"] = soon(0.05)
    scheduler.wake("gone")
    scheduler.schedule("also-gone", soon(0.1))
    await settle(0.05)
    assert cycles.running == {"gone"}
    scheduler.forget("gone")
    scheduler.forget("also-gone")
    await settle(0.3)
    assert cycles.running == set() and cycles.ran == ["gone"]
    assert "gone" not in scheduler and "also-gone" not in scheduler


async def test_nothing_starts_while_paused_and_everything_due_starts_on_resume(
        served: tuple[Scheduler, Cycles]) -> None:
    scheduler, cycles = served
    scheduler.pause()
    scheduler.wake("a")
    scheduler.schedule("b", soon(0.05))
    await settle(0.2)
    assert cycles.ran == []
    scheduler.resume()
    await settle(0.1)
    assert sorted(cycles.ran) == ["a", "b"]


async def test_a_cycle_that_crashes_runs_again_later_not_in_a_loop(
        served: tuple[Scheduler, Cycles], caplog: pytest.LogCaptureFixture) -> None:
    scheduler, _ = served
    calls = 0

    async def crash(uid: str) -> datetime | None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug quoting CANARY-secret-value")

    scheduler._run = crash
    scheduler.wake("r")
    await settle(0.2)
    assert calls == 1
    assert "r" in scheduler, "scheduled again (after the crash delay)"
    assert "RuntimeError at test_scheduler.py:" in caplog.text, "what and where, for the bug report"
    assert "CANARY" not in caplog.text, "never the message: it may quote a value"


async def test_of_what_is_due_now_the_lowest_rank_runs_first_and_a_timed_one_waits() -> None:
    cycles = Cycles()
    scheduler = Scheduler(cycles, concurrency=1)
    for uid, rank in (("c", 3.0), ("a", 1.0), ("b", 2.0)):
        scheduler.wake(uid, rank)
    scheduler.schedule("timed", soon(0.0001))
    scheduler.wake("c", 0.0)  # woken by a change: ahead of the backlog
    await asyncio.sleep(0.01)
    task = asyncio.create_task(scheduler.serve())
    await settle(0.3)
    task.cancel()
    assert cycles.ran == ["c", "a", "b", "timed"]


async def test_a_time_already_past_is_ranked_by_that_time_not_as_a_change() -> None:
    # A cycle that returns a refresh time already past (or a caller that got there late) is a timer that came
    # due: it goes after what a change woke and before a backlog of fresh tokens, whatever the clock did since.
    cycles = Cycles()
    scheduler = Scheduler(cycles, concurrency=1)
    now = datetime.now(UTC).timestamp()
    scheduler.wake("fresh", now + 600)  # start-up backlog: its token is due in ten minutes
    scheduler.schedule("overdue", soon(-1))
    scheduler.wake("changed", 0.0)
    task = asyncio.create_task(scheduler.serve())
    await settle(0.2)
    task.cancel()
    assert cycles.ran == ["changed", "overdue", "fresh"]


def test_the_first_run_after_a_start_is_ranked_by_the_next_refresh_time_in_status() -> None:
    from oauth_token_operator.kube.resource_watch import ResourceEvent

    body = {"metadata": {"uid": "u", "name": "r", "namespace": "ns"},
            "status": {"expiresAt": "2026-12-01T14:00:00Z", "nextRefreshTime": "2026-12-01T13:40:00Z"}}
    event = ResourceEvent.of("ADDED", body)
    assert event.holds_token and event.next_refresh == datetime(2026, 12, 1, 13, 40, tzinfo=UTC).timestamp()
    assert ResourceEvent.of("ADDED", {"metadata": {"uid": "v"}, "status": {"nextRefreshTime": "garbage"}}
                            ).next_refresh == 0.0


async def test_a_refresh_that_fell_due_goes_before_a_backlog_of_fresh_tokens() -> None:
    cycles = Cycles()
    scheduler = Scheduler(cycles, concurrency=1)
    fresh_until = (datetime.now(UTC) + timedelta(minutes=30)).timestamp()
    for i in range(5):
        scheduler.wake(f"fresh{i}", fresh_until + i)  # the start-up backlog: tokens good for half an hour
    scheduler.schedule("due", soon(0.0001))
    await asyncio.sleep(0.01)
    task = asyncio.create_task(scheduler.serve())
    await settle(0.3)
    task.cancel()
    assert cycles.ran[0] == "due" and cycles.ran[1:] == [f"fresh{i}" for i in range(5)]


async def test_a_crashed_scheduler_stops_the_process_instead_of_leaving_it_healthy_and_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from oauth_token_operator import app

    sent: list[int] = []
    monkeypatch.setattr(app.os, "kill", lambda pid, sig: sent.append(sig))

    async def broken() -> None:
        raise RuntimeError("a bug in the dispatcher")

    async def cancelled() -> None:
        await asyncio.sleep(3600)

    crashed = asyncio.create_task(broken())
    stopped = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    stopped.cancel()
    for task in (crashed, stopped):
        with pytest.raises((RuntimeError, asyncio.CancelledError)):
            await task
        app._stop_if_crashed(task)
    assert sent == [signal.SIGTERM], "only the crash stops the operator, not a shutdown's cancellation"
