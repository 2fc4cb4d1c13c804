"""The live workers of one operator process and what wakes them.

Each resource has one :class:`~.state.WorkerState` and, while it exists, the latest copy of its object (from
``kube/resource_watch.py``); *when* its cycle runs is the scheduler's business (``scheduler.py``), which this
module calls through ``wake``. Watch events for the resource itself, for the Secrets/ConfigMaps it references
and for its target Secret arrive here; this module only knows *which* workers an object concerns (an index by
namespace, kind and name) and asks each worker's state whether the event is news to it
(:meth:`~.state.WorkerState.observe`): an echo of our own write or the initial listing after a restart wakes
nobody, which is what keeps a steady refresh free of extra reads.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from .api import OAuthClientCredential
from .kube.resource_watch import ResourceEvent
from .kube.target import SeenTarget
from .schedule import jitter_unit
from .state import WorkerState

__all__ = ["WorkerRegistry"]

# When the API server answers again, the workers waiting for it retry within this many seconds (spread, so
# that thousands of them do not hit it in the same instant).
KUBE_RECOVERY_SPREAD_SECONDS = 3.0
# How long the watches' first listing (the versions of every Secret and ConfigMap) is kept after every watch has
# listed: long enough for the workers of a restarted operator to start, short enough that in steady state
# nothing we do not reference stays in memory.
SEED_TTL_SECONDS = 120.0

ObjectKey = tuple[str, str, str]  # (namespace, kind, name)


#: After a start, a resource that already holds a token waits at most this long for the Secret and ConfigMap
#: watches' first listing (which tells it the versions of what it references, so that it reads only its target
#: Secret); bounded, because a slow listing must cost reads, not correctness.
WATCH_SYNC_TIMEOUT = 30.0


def _nobody(uid: str) -> None:
    pass


def _no_wake(uid: str, rank: float) -> None:
    pass


def _no_resource(namespace: str, name: str) -> None:
    pass


class WorkerRegistry:
    def __init__(self, *, wake: Callable[[str, float], None] = _no_wake, forget: Callable[[str], None] = _nobody,
                 gone: Callable[[str, str], None] = _no_resource,
                 release_finalizer: Callable[[ResourceEvent], None] | None = None,
                 unreferenced: Callable[[ObjectKey], None] | None = None) -> None:
        # The scheduler's: run a worker's cycle now (of those due now, lower ranks first: see scheduler.py); drop a
        # worker's schedule and cancel its cycle.
        self.wake = wake
        self.forget = forget
        self.gone = gone  # a resource was deleted (its metrics go)
        self.release_finalizer = release_finalizer
        self.unreferenced = unreferenced  # nobody references this object any more (shared_reads drops it)
        self._workers: dict[str, WorkerState] = {}
        self._bodies: dict[str, bytes] = {}
        self._triggers: dict[str, tuple[int, str]] = {}
        self._waiting_for_sync: set[str] = set()
        # When each resource's status says it next refreshes (Unix time; 0: no token yet): the rank of its first
        # run after a start or a pause, so that a backlog is worked through soonest-due first.
        self._ranks: dict[str, float] = {}
        # (namespace, kind, name) -> uids of workers that read (or write) that object
        self._refs: defaultdict[ObjectKey, set[str]] = defaultdict(set)
        self._worker_refs: dict[str, set[ObjectKey]] = {}
        # The newest version the watches (or a read) showed of each referenced object: what shared_reads keys
        # its cache on.
        self._versions: dict[ObjectKey, str] = {}
        # The metadata watches (kube/watch.py): how many are still listing, and the first listing's versions of
        # every object, kept for a couple of minutes so that workers starting now need not read them.
        self._listing = 0
        self._synced = True
        self._seed: dict[str, dict[tuple[str, str], str]] = {}
        # ... and of our own target Secrets, what their metadata says (so that an unchanged one is not read).
        self._seen_targets: dict[tuple[str, str], SeenTarget] = {}

    def open(self, uid: str) -> WorkerState:
        if uid not in self._workers:
            self._workers[uid] = WorkerState(uid=uid)
        return self._workers[uid]

    def close(self, uid: str) -> None:
        self._workers.pop(uid, None)
        self._bodies.pop(uid, None)
        self._triggers.pop(uid, None)
        self._waiting_for_sync.discard(uid)
        self._ranks.pop(uid, None)
        self._drop_refs(uid)

    def _drop_refs(self, uid: str) -> None:
        for ref in self._worker_refs.pop(uid, set()):
            self._unref(ref, uid)

    def _unref(self, ref: ObjectKey, uid: str) -> None:
        self._refs[ref].discard(uid)
        if not self._refs[ref]:
            del self._refs[ref]
            self._versions.pop(ref, None)
            if self.unreferenced is not None:
                self.unreferenced(ref)

    def watched_version(self, key: ObjectKey) -> str | None:
        """The newest version of a referenced object that we know of (None: unknown, or not referenced)."""
        if key not in self._refs:
            return None
        known = self._versions.get(key)
        if known is None:
            namespace, kind, name = key
            known = self._seed.get(kind, {}).get((namespace, name))
        return known

    def referrers(self, key: ObjectKey) -> int:
        return len(self._refs.get(key, ()))

    def note_read(self, key: ObjectKey, version: str) -> None:
        if key in self._refs and key not in self._versions:
            self._versions[key] = version

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, uid: str) -> WorkerState | None:
        return self._workers.get(uid)

    def body(self, uid: str) -> bytes | None:
        """The latest copy of the resource (compact JSON), None once it is gone."""
        return self._bodies.get(uid)

    # -- the resources themselves ----------------------------------------------------------------------------

    def resources_changed(self, events: Iterable[ResourceEvent]) -> None:
        """Events from the resource watch (``kube/resource_watch.py``)."""
        for event in events:
            uid = event.uid
            if event.type == "DELETED" or event.deleting:
                # Deleted, or being deleted: the worker stops at once (its target Secret goes by garbage
                # collection). A finalizer left by an older version is released, or the deletion would hang.
                if event.legacy_finalizer and self.release_finalizer is not None:
                    self.release_finalizer(event)
                if uid in self._workers:
                    self.close(uid)
                    self.forget(uid)
                    self.gone(event.namespace, event.name)
                continue
            new = uid not in self._workers
            self._bodies[uid] = event.body
            self._ranks[uid] = event.next_refresh if event.holds_token else 0.0
            if new:
                self.open(uid)
                self._triggers[uid] = (event.generation, event.refresh)
                if not self._synced:
                    # client-go's WaitForCacheSync: no first read before the watches have listed. A referenced
                    # object deleted between a worker's read and the listing is in neither, and its deletion
                    # would never be seen (found when the first cycles got faster than the Secret listing).
                    self._waiting_for_sync.add(uid)
                else:
                    self.wake(uid, self._ranks[uid])
            else:
                self.resource_changed(uid, event.generation, event.refresh)

    def release_waiting(self) -> None:
        """Start the workers that waited for the watches' first listing (it is done, or took too long)."""
        waiting, self._waiting_for_sync = self._waiting_for_sync, set()
        for uid in waiting:
            if uid in self._workers:
                self.wake(uid, self._ranks.get(uid, 0.0))

    def reset(self) -> None:
        """Forget what every worker remembers, as a restart would (the operator was paused: another replica
        may have written since); the objects and the watches' versions stay."""
        for uid in self._workers:
            self._workers[uid] = WorkerState(uid=uid)
            self._drop_refs(uid)

    def wake_all(self) -> None:
        for uid in self._workers:
            self.wake(uid, self._ranks.get(uid, 0.0))

    def references(self, namespace: str, kind: str, name: str) -> bool:
        """Whether a resource reads or writes this object (what the watched-objects metric counts)."""
        return (namespace, kind, name) in self._refs

    def is_referenced(self, namespace: str, kind: str, name: str) -> bool:
        """Whether the watches should report this object: a worker reads or writes it, or the seed of its kind
        is still kept (then every change must reach the seed). Called from the watch threads: one dict lookup,
        atomic under the GIL."""
        return (namespace, kind, name) in self._refs or kind in self._seed

    # -- the metadata watches --------------------------------------------------------------------------------

    def expect_watches(self, count: int) -> None:
        """``count`` watches are about to list; the resources found meanwhile wait for all of them to finish."""
        self._listing += count
        if self._listing > 0:
            self._synced = False

    def watch_synced(self) -> None:
        self._listing = max(0, self._listing - 1)
        if self._listing == 0 and not self._synced:
            self._synced = True
            self.release_waiting()
            asyncio.get_running_loop().call_later(SEED_TTL_SECONDS, self.drop_seed)

    @property
    def synced(self) -> bool:
        return self._synced

    def seed(self, kind: str, versions: dict[tuple[str, str], str],
             targets: dict[tuple[str, str], SeenTarget] | None = None) -> None:
        self._seed.setdefault(kind, {}).update(versions)
        self._seen_targets.update(targets or {})

    def drop_seed(self) -> None:
        self._seed.clear()
        self._seen_targets.clear()

    def objects_changed(self, kind: str, events: Iterable[tuple[str, str, str | None]]) -> None:
        """Events from a metadata watch: (namespace, name, resourceVersion or None when deleted)."""
        seed = self._seed.get(kind)
        for namespace, name, version in events:
            if kind == "Secret":
                self._seen_targets.pop((namespace, name), None)  # changed since the listing: read it
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
            self._unref(ref, uid)
        for ref in refs - old:
            self._refs[ref].add(uid)
            ns, kind, name = ref
            seeded = self._seed.get(kind, {}).get((ns, name))
            if seeded is not None:
                state.known_versions.setdefault((kind, name), seeded)
        self._worker_refs[uid] = refs
        if state.target is None:
            state.seen_target = self._seen_targets.get((namespace, resource.spec.target.secret_name))

    def resource_changed(self, uid: str, generation: int, refresh: str) -> None:
        """The resource itself changed: wake its worker only for a new spec or refresh request."""
        trigger = (generation, refresh)
        previous = self._triggers.get(uid)
        self._triggers[uid] = trigger
        if previous is not None and previous != trigger and uid in self._workers:
            self.wake(uid, 0.0)

    def object_changed(self, namespace: str, kind: str, name: str, resource_version: str | None) -> None:
        """A Secret or ConfigMap changed (``resource_version`` None: deleted)."""
        key = (namespace, kind, name)
        if key in self._refs:
            if resource_version is None:
                self._versions.pop(key, None)
            else:
                self._versions[key] = resource_version
        for uid in list(self._refs.get((namespace, kind, name), ())):
            state = self._workers.get(uid)
            if state is not None and state.observe((kind, name), resource_version):
                self.wake(uid, 0.0)

    def endpoint_recovered(self, circuit: str) -> None:
        """A token endpoint answered again: the workers that were waiting for its circuit retry at once."""
        now = datetime.now(UTC)
        for uid, state in self._workers.items():
            if state.blocked_on == circuit:
                state.blocked_on = None
                state.next_attempt = now
                self.wake(uid, 0.0)

    def kube_recovered(self) -> None:
        """The Kubernetes API server answers again: the workers backing off because of it retry now."""
        now = datetime.now(UTC)
        for uid, state in self._workers.items():
            if state.kube_retry_at is not None:
                spread = KUBE_RECOVERY_SPREAD_SECONDS * jitter_unit(uid, "kube-recovered")
                state.kube_recovered(now + timedelta(seconds=spread))
                self.wake(uid, 0.0)
