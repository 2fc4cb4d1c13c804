"""The live workers of one operator process and what wakes them.

Each resource has one :class:`~.reconcile.Worker` (its cache) and an ``asyncio.Event`` that interrupts its
sleep. Watch events for the resource itself, for the Secrets/ConfigMaps it references and for its target
Secret arrive here and wake exactly the workers they concern — but only when something really changed: an
event carrying a resourceVersion the worker has already seen (its own write coming back through the watch, the
initial listing after a restart) wakes nobody, which is what keeps a steady refresh free of extra reads.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

from .api import OAuthClientCredential
from .reconcile import Worker

__all__ = ["WorkerRegistry"]

# Sleep at most this long in one go, so a clock jump or a lost wake-up is corrected within the hour.
MAX_SLEEP = 3600.0


class WorkerRegistry:
    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._triggers: dict[str, tuple[int, str]] = {}
        # (namespace, kind, name) -> uids of workers that read (or write) that object
        self._refs: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._worker_refs: dict[str, set[tuple[str, str, str]]] = {}
        self._targets: dict[str, tuple[str, str]] = {}

    def open(self, uid: str) -> Worker:
        if uid not in self._workers:
            self._workers[uid] = Worker(uid=uid)
            self._wake[uid] = asyncio.Event()
        return self._workers[uid]

    def close(self, uid: str) -> None:
        self._workers.pop(uid, None)
        self._wake.pop(uid, None)
        self._triggers.pop(uid, None)
        self._targets.pop(uid, None)
        for ref in self._worker_refs.pop(uid, set()):
            self._refs[ref].discard(uid)
            if not self._refs[ref]:
                del self._refs[ref]

    def __len__(self) -> int:
        return len(self._workers)

    def track(self, worker: Worker, resource: OAuthClientCredential) -> None:
        """Record which objects the worker depends on: on every run, before it reads them (the spec can
        change, and an event arriving mid-run must find the worker)."""
        uid, namespace = worker.uid, resource.metadata.namespace
        target_name = resource.spec.target.secret_name
        refs = {(namespace, kind, name) for kind, name in worker.references}
        refs.add((namespace, "Secret", target_name))
        old = self._worker_refs.get(uid, set())
        for ref in old - refs:
            self._refs[ref].discard(uid)
            if not self._refs[ref]:
                del self._refs[ref]
        for ref in refs - old:
            self._refs[ref].add(uid)
        self._worker_refs[uid] = refs
        self._targets[uid] = (namespace, target_name)

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
            worker = self._workers.get(uid)
            if worker is None:
                continue
            key = (kind, name)
            if resource_version is not None and worker.seen_versions.get(key) == resource_version:
                continue  # our own write, or a version we already read
            is_target = kind == "Secret" and self._targets.get(uid) == (namespace, name)
            if is_target and worker.writing_target:
                # Probably our own write, echoed before its response arrived: the writer decides.
                worker.target_event_during_write = resource_version or ""
                continue
            if resource_version is None:
                worker.seen_versions.pop(key, None)
            if is_target:
                worker.target_changed = True
            if key in worker.references:
                worker.refs_changed = True
            self._wake[uid].set()

    def endpoint_recovered(self, endpoint: str) -> None:
        """A token endpoint answered again: the workers that were waiting for its circuit retry at once."""
        now = datetime.now(UTC)
        for uid, worker in self._workers.items():
            if worker.blocked_on == endpoint:
                worker.blocked_on = None
                worker.next_attempt = now
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
