"""When each resource's refresh cycle runs: one work queue by due time, a bounded number of cycles at once.

This replaces one Kopf daemon per resource (issue 10). A sleeping daemon is an asyncio task, a wake-up event and,
at every wait, a timer and a second task; each daemon also made Kopf add a finalizer to its resource and
process every watch event of it through its full machinery. Here a resource that waits costs one entry in a
heap, and at most :data:`CONCURRENCY` cycles run at the same time, however many resources come due at once (a
cold start with 10,000 resources): the rest wait their turn in due order instead of all queueing for the
Kubernetes client's threads and the token endpoint's connections at once. client-go's delaying work queue, which
every controller-runtime operator (cert-manager, External Secrets) runs on, has the same three promises:

* one cycle per resource at a time: a wake-up that arrives while its cycle runs makes the cycle run once more
  right after (never two at once, never a lost change);
* the earliest wish wins: scheduling a resource earlier than it is due moves it, later does not;
* ``forget`` drops a resource and cancels its running cycle (it was deleted);
* what is due now runs in order of ``rank``: after a start the listing wakes every resource at once, and a
  backlog of 10,000 takes minutes to work through, so each resource that holds a token is ranked by its next
  refresh time (the one due soonest goes first, before its token runs low), a resource woken by a change (rank
  0) goes before all of them, and a timer that comes due is ranked by its due time.

While the operator is paused (another replica leads, see ``kopf_edge/peering.py``), nothing is started;
running cycles finish. The cycles themselves are ``run(uid)``, which returns when that resource wants to run
again (None: not at all until woken).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

__all__ = ["CONCURRENCY", "Scheduler", "where"]

log = logging.getLogger(__name__)

#: Cycles running at the same time. Each waits mostly on I/O (the token endpoint, the API server through the
#: client's 16 threads); more than a few times the threads only makes them queue there.
CONCURRENCY = 64
#: Never plan further ahead than this: a clock jump or a lost wake-up is corrected within the hour.
MAX_DELAY_SECONDS = 3600.0
#: A cycle that raised something unforeseen (a bug: the cycle reports every expected failure itself) runs again
#: after this long, like Kopf's daemon backoff did.
CRASH_DELAY_SECONDS = 60.0

Run = Callable[[str], Awaitable[datetime | None]]


def where(exc: BaseException) -> str:
    """file:line of the innermost frame an exception passed through."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


class Scheduler:
    def __init__(self, run: Run, *, concurrency: int = CONCURRENCY,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._run = run
        self._concurrency = concurrency
        self._clock = clock or (lambda: datetime.now(UTC))
        # Two heaps: timers (loop time a cycle is due) and the ready queue (cycles due now, by rank). A uid's one
        # valid entry is recorded in _due as (0, rank) when ready or (1, loop time) when waiting; entries that no
        # longer match are skipped when they surface.
        self._due: dict[str, tuple[int, float]] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._ready: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # woken while running: run once more right after
        self._kick = asyncio.Event()
        self._paused = False
        self.started = 0  # cycles started, for tests and the benchmark

    # -- what the rest of the operator calls ---------------------------------------------------------------

    def schedule(self, uid: str, at: datetime | None = None, *, rank: float = 0.0) -> None:
        """Run ``uid``'s cycle at ``at`` (now if None, with ``rank``), unless it is due earlier already. What is due
        now runs lowest rank first; a timer that comes due, or an ``at`` already past, is ranked by its due time
        (Unix seconds), so a refresh that fell due goes before a start-up backlog of resources whose tokens are
        still fresh, and after a resource woken by a change."""
        loop = asyncio.get_running_loop()
        delay = 0.0 if at is None else (at - self._clock()).total_seconds()
        if uid in self._running and delay <= 0:
            self._again.add(uid)
            return
        if delay <= 0:
            # A time already past is a timer that came due: ranked by that time, like one popped from the timers
            # (how late the caller got here must not decide whether it jumps the start-up backlog).
            key = (0, rank if at is None else at.timestamp())
        else:
            key = (1, loop.time() + min(delay, MAX_DELAY_SECONDS))
        current = self._due.get(uid)
        if current is not None and current <= key:
            return
        self._due[uid] = key
        heap = self._ready if key[0] == 0 else self._timers
        heapq.heappush(heap, (key[1], next(self._order), uid))
        if heap[0][2] == uid:
            self._kick.set()

    def wake(self, uid: str, rank: float = 0.0) -> None:
        self.schedule(uid, rank=rank)

    def forget(self, uid: str) -> None:
        """``uid`` is gone: drop its schedule and cancel its running cycle."""
        self._due.pop(uid, None)  # its heap entry is skipped when it surfaces
        self._again.discard(uid)
        task = self._running.pop(uid, None)
        if task is not None:
            task.cancel()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._kick.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def __contains__(self, uid: str) -> bool:
        return uid in self._due or uid in self._running

    @property
    def running(self) -> int:
        return len(self._running)

    # -- the dispatcher ------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Start due cycles for as long as the operator runs (cancel to stop; running cycles are cancelled)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._kick.clear()
                timeout: float | None = None
                if not self._paused:
                    timeout = self._start_due(loop.time())
                if timeout is None or timeout > 0:
                    try:
                        async with asyncio.timeout(timeout):
                            await self._kick.wait()
                    except TimeoutError:
                        pass
        finally:
            for task in list(self._running.values()):
                task.cancel()

    def _start_due(self, now: float) -> float | None:
        """Start what is due while there is room; returns how long until the next timer (None: no timer, or no
        room: a finishing cycle kicks the dispatcher)."""
        wall = self._clock().timestamp()
        while self._timers and self._timers[0][0] <= now:
            when, _, uid = heapq.heappop(self._timers)
            if self._due.get(uid) == (1, when):
                rank = wall - (now - when)  # its due time in Unix seconds
                self._due[uid] = (0, rank)
                heapq.heappush(self._ready, (rank, next(self._order), uid))
        while self._ready:
            rank, _, uid = self._ready[0]
            if self._due.get(uid) != (0, rank):
                heapq.heappop(self._ready)  # superseded by an earlier wish, or forgotten
                continue
            if len(self._running) >= self._concurrency:
                return None
            heapq.heappop(self._ready)
            del self._due[uid]
            if uid in self._running:  # cannot happen (schedule() keeps running uids out), but never run twice
                self._again.add(uid)
                continue
            self.started += 1
            self._running[uid] = asyncio.create_task(self._cycle(uid), name=f"refresh {uid}")
        while self._timers and self._due.get(self._timers[0][2]) != (1, self._timers[0][0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] - now if self._timers else None

    async def _cycle(self, uid: str) -> None:
        due: datetime | None = None
        try:
            due = await self._run(uid)
        except Exception as exc:
            # The type and where it was raised, never the message: an unforeseen exception may quote a value.
            log.error("the refresh cycle of %s failed unexpectedly (%s at %s); again in %.0fs", uid,
                      type(exc).__name__, where(exc), CRASH_DELAY_SECONDS)
            due = datetime.fromtimestamp(self._clock().timestamp() + CRASH_DELAY_SECONDS, UTC)
        finally:
            # Forgotten meanwhile (deleted): its task is no longer the one on record, and it is not rescheduled.
            mine = self._running.get(uid) is asyncio.current_task()
            if mine:
                del self._running[uid]
            self._kick.set()
        if not mine:
            return
        if uid in self._again:
            self._again.discard(uid)
            self.schedule(uid)
        elif due is not None:
            self.schedule(uid, due)
