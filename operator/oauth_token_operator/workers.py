"""The live workers of one operator process and what wakes them.

Each resource has one :class:`~.state.WorkerState` and an ``asyncio.Event`` that interrupts its sleep. Watch
events for the resource itself, for the Secrets/ConfigMaps it references and for its target Secret arrive here;
this module only knows *which* workers an object concerns (an index by namespace, kind and name) and asks each
worker's state whether the event is news to it (:meth:`~.state.WorkerState.observe`): an echo of our own write
or the initial listing after a restart wakes nobody, which is what keeps a steady refresh free of extra reads.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from .api import OAuthClientCredential
from .schedule import jitter_unit
from .state import WorkerState

__all__ = ["WorkerRegistry"]

# Sleep at most this long in one go, so a clock jump or a lost wake-up is corrected within the hour.
MAX_SLEEP = 3600.0
# When the API server answers again, the workers waiting for it retry within this many seconds (spread, so
# that thousands of them do not hit it in the same instant).
KUBE_RECOVERY_SPREAD_SECONDS = 3.0
# How long the watches' first listing (the versions of every Secret and ConfigMap) is kept after every watch has
# listed: long enough for the workers of a restarted operator to start, short enough that in steady state
# nothing we do not reference stays in memory.
SEED_TTL_SECONDS = 120.0

ObjectKey = tuple[str, str, str]  # (namespace, kind, name)


class WorkerRegistry:
    def __init__(self) -> None:
        self._workers: dict[str, WorkerState] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._triggers: dict[str, tuple[int, str]] = {}
        # (namespace, kind, name) -> uids of workers that read (or write) that object
        self._refs: defaultdict[ObjectKey, set[str]] = defaultdict(set)
        self._worker_refs: dict[str, set[ObjectKey]] = {}
        # The metadata watches (kube/watch.py): how many are still listing, and the first listing's versions of
        # every object, kept for a couple of minutes so that workers starting now need not read them.
        self._listing = 0
        self._synced = asyncio.Event()
        self._synced.set()
        self._seed: dict[str, dict[tuple[str, str], str]] = {}

    def open(self, uid: str) -> WorkerState:
        if uid not in self._workers:
            self._workers[uid] = WorkerState(uid=uid)
            self._wake[uid] = asyncio.Event()
        return self._workers[uid]

    def close(self, uid: str) -> None:
        self._workers.pop(uid, None)
        self._wake.pop(uid, None)
        self._triggers.pop(uid, None)
        for ref in self._worker_refs.pop(uid, set()):
            self._refs[ref].discard(uid)
            if not self._refs[ref]:
                del self._refs[ref]

    def __len__(self) -> int:
        return len(self._workers)

    def is_referenced(self, namespace: str, kind: str, name: str) -> bool:
        """Whether the watches should report this object: a worker reads or writes it, or the seed of its kind
        is still kept (then every change must reach the seed). Called from the watch threads: one dict lookup,
        atomic under the GIL."""
        return (namespace, kind, name) in self._refs or kind in self._seed

    # -- the metadata watches --------------------------------------------------------------------------------

    def expect_watches(self, count: int) -> None:
        """``count`` watches are about to list; :meth:`wait_synced` waits for all of them."""
        self._listing += count
        if self._listing > 0:
            self._synced.clear()

    def watch_synced(self) -> None:
        self._listing = max(0, self._listing - 1)
        if self._listing == 0 and not self._synced.is_set():
            self._synced.set()
            asyncio.get_running_loop().call_later(SEED_TTL_SECONDS, self.drop_seed)

    async def wait_synced(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) until every watch has listed once."""
        try:
            async with asyncio.timeout(within):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    def seed(self, kind: str, versions: dict[tuple[str, str], str]) -> None:
        self._seed.setdefault(kind, {}).update(versions)

    def drop_seed(self) -> None:
        self._seed.clear()

    def objects_changed(self, kind: str, events: Iterable[tuple[str, str, str | None]]) -> None:
        """Events from a metadata watch: (namespace, name, resourceVersion or None when deleted)."""
        seed = self._seed.get(kind)
        for namespace, name, version in events:
            if seed is not None:
                if version is None:
                    seed.pop((namespace, name), None)
                else:
                    seed[(namespace, name)] = version
            self.object_changed(namespace, kind, name, version)

    def track(self, state: WorkerState, resource: OAuthClientCredential) -> None:
        """Record which objects the worker depends on: on every run, before it reads them (the spec can
        change, and an event arriving mid-run must find the worker)."""
        uid, namespace = state.uid, resource.metadata.namespace
        refs = {(namespace, kind, name) for kind, name in state.references}
        refs.add((namespace, "Secret", resource.spec.target.secret_name))
        old = self._worker_refs.get(uid, set())
        for ref in old - refs:
            self._refs[ref].discard(uid)
            if not self._refs[ref]:
                del self._refs[ref]
        for ref in refs - old:
            self._refs[ref].add(uid)
            ns, kind, name = ref
            seeded = self._seed.get(kind, {}).get((ns, name))
            if seeded is not None:
                state.known_versions.setdefault((kind, name), seeded)
        self._worker_refs[uid] = refs

    def resource_changed(self, uid: str, generation: int, refresh: str) -> None:
        """The resource itself changed: wake its worker only for a new spec or refresh request."""
        trigger = (generation, refresh)
        previous = self._triggers.get(uid)
        self._triggers[uid] = trigger
        if previous is not None and previous != trigger and uid in self._wake:
            self._wake[uid].set()

    def object_changed(self, namespace: str, kind: str, name: str, resource_version: str | None) -> None:
        """A Secret or ConfigMap changed (``resource_version`` None: deleted)."""
        for uid in list(self._refs.get((namespace, kind, name), ())):
            state = self._workers.get(uid)
            if state is not None and state.observe((kind, name), resource_version):
                self._wake[uid].set()

    def endpoint_recovered(self, endpoint: str) -> None:
        """A token endpoint answered again: the workers that were waiting for its circuit retry at once."""
        now = datetime.now(UTC)
        for uid, state in self._workers.items():
            if state.blocked_on == endpoint:
                state.blocked_on = None
                state.next_attempt = now
                self._wake[uid].set()

    def kube_recovered(self) -> None:
        """The Kubernetes API server answers again: the workers backing off because of it retry now."""
        now = datetime.now(UTC)
        for uid, state in self._workers.items():
            if state.kube_retry_at is not None:
                spread = KUBE_RECOVERY_SPREAD_SECONDS * jitter_unit(uid, "kube-recovered")
                state.kube_recovered(now + timedelta(seconds=spread))
                self._wake[uid].set()

    async def sleep_until(self, uid: str, due: datetime) -> None:
        """Sleep until ``due`` or until something wakes the worker, whichever comes first."""
        wake = self._wake[uid]
        delay = min(max((due - datetime.now(UTC)).total_seconds(), 0.0), MAX_SLEEP)
        if delay > 0 and not wake.is_set():
            try:
                await asyncio.wait_for(wake.wait(), timeout=delay)
            except TimeoutError:
                pass
        wake.clear()
