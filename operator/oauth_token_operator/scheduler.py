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
* ``forget`` drops a resource and cancels its running cycle (it was deleted).

While the operator is paused (another replica leads, see ``kopf_edge/peering.py``), nothing is started;
running cycles finish. The cycles themselves are ``run(uid)``, which returns when that resource wants to run
again (None: not at all until woken).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

__all__ = ["CONCURRENCY", "Scheduler"]

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


class Scheduler:
    def __init__(self, run: Run, *, concurrency: int = CONCURRENCY,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._run = run
        self._concurrency = concurrency
        self._clock = clock or (lambda: datetime.now(UTC))
        self._due: dict[str, float] = {}  # uid -> loop time it is due (the valid heap entry)
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # woken while running: run once more right after
        self._kick = asyncio.Event()
        self._paused = False
        self.started = 0  # cycles started, for tests and the benchmark

    # -- what the rest of the operator calls ---------------------------------------------------------------

    def schedule(self, uid: str, at: datetime | None = None) -> None:
        """Run ``uid``'s cycle at ``at`` (now if None), unless it is due earlier already."""
        loop = asyncio.get_running_loop()
        delay = 0.0 if at is None else (at - self._clock()).total_seconds()
        when = loop.time() + min(max(delay, 0.0), MAX_DELAY_SECONDS)
        if uid in self._running and delay <= 0:
            self._again.add(uid)
            return
        current = self._due.get(uid)
        if current is not None and current <= when:
            return
        self._due[uid] = when
        heapq.heappush(self._heap, (when, next(self._order), uid))
        if self._heap[0][2] == uid:
            self._kick.set()

    def wake(self, uid: str) -> None:
        self.schedule(uid)

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
        """Start what is due while there is room; returns how long until the next one (None: nothing
        scheduled, or no room: a finishing cycle kicks the dispatcher)."""
        while self._heap:
            when, _, uid = self._heap[0]
            if self._due.get(uid) != when:
                heapq.heappop(self._heap)  # superseded by an earlier wish, or forgotten
                continue
            if when > now:
                return when - now
            if len(self._running) >= self._concurrency:
                return None
            heapq.heappop(self._heap)
            del self._due[uid]
            if uid in self._running:  # cannot happen (schedule() keeps running uids out), but never run twice
                self._again.add(uid)
                continue
            self.started += 1
            self._running[uid] = asyncio.create_task(self._cycle(uid), name=f"refresh {uid}")
        return None

    async def _cycle(self, uid: str) -> None:
        due: datetime | None = None
        try:
            due = await self._run(uid)
        except Exception:
            log.exception("the refresh cycle of %s failed unexpectedly; again in %.0fs", uid, CRASH_DELAY_SECONDS)
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
