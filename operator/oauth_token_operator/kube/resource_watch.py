"""Watching our own resources, the ``OAuthClientCredential``s, without Kopf's per-event machinery.

Kopf processed each watch event of a resource through its whole handling cycle: diff-base essence (a deep copy
and a JSON-patch diff), progress storage, three loggers, and a finalizer PATCH for every resource that had a
daemon, whose MODIFIED event it then processed again. Measured at 1,000 resources that was 42 % of the
operator's CPU (~9 ms per created resource, ``bench/README.md``), and at 10,000 precreated resources a cold
start that was still working through its initial listing after 75 s. Our resources need none of it: the cycle
is idempotent and reads its facts afresh, the target Secret goes with its resource by ownerReference garbage
collection (so there is nothing to finalize), and the schedule lives in ``scheduler.py``. This is the one
watch Kopf cannot do cheaply, so it runs with the official client, like the Secret and ConfigMap watches
(``kube/watch.py``): a paged list, then a watch, in a thread of its own.

Each object is reduced in the thread to what the operator uses (:class:`ResourceEvent`): the fields that decide
whether its worker must wake (generation, the refresh annotation, deletion), and the object itself as compact
JSON without ``managedFields`` (about a kilobyte; parsed again only when its cycle runs, which also makes it a
snapshot that later events cannot change under a running cycle). After a relist (410 Gone) the resources that
are no longer listed are reported deleted: their DELETED events fell into the gap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes

from .. import api
from .target import parse_time
from .watch import ListWatch

__all__ = ["LEGACY_FINALIZER", "ResourceEvent", "ResourceWatch"]

#: The finalizer Kopf put on every resource while it ran one daemon per resource (the first releases). Nothing
#: needs finalizing any more; a resource that still carries it is released when it is deleted
#: (``workers.resources_changed``).
LEGACY_FINALIZER = f"{api.GROUP}/finalizer"
_KEPT = ("apiVersion", "kind", "metadata", "spec", "status")


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    type: str  # ADDED, MODIFIED, DELETED (a listing reports ADDED)
    uid: str
    namespace: str
    name: str
    generation: int = 0
    refresh: str = ""  # the refresh annotation's value
    holds_token: bool = False  # status says a token was written: a restart must not request a new one at once
    next_refresh: float = 0.0  # status.nextRefreshTime as Unix time (0: none): the order of runs after a start
    deleting: bool = False  # deletionTimestamp is set
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""
    body: bytes = b""

    @property
    def legacy_finalizer(self) -> bool:
        return LEGACY_FINALIZER in self.finalizers

    @classmethod
    def of(cls, kind: str, obj: dict[str, Any]) -> ResourceEvent:
        meta = obj.get("metadata") or {}
        meta.pop("managedFields", None)
        obj.setdefault("apiVersion", api.API_VERSION)
        obj.setdefault("kind", api.KIND)
        return cls(
            type=kind, uid=str(meta.get("uid", "")), namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")), generation=int(meta.get("generation") or 0),
            refresh=str((meta.get("annotations") or {}).get(api.REFRESH_ANNOTATION, "")),
            holds_token=bool((obj.get("status") or {}).get("expiresAt")),
            next_refresh=_unix_time((obj.get("status") or {}).get("nextRefreshTime")),
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=tuple(meta.get("finalizers") or ()),
            resource_version=str(meta.get("resourceVersion", "")),
            body=b"" if kind == "DELETED" else json.dumps(
                {key: obj[key] for key in _KEPT if key in obj}, separators=(",", ":")).encode(),
        )


def _unix_time(value: Any) -> float:
    parsed = parse_time(value) if isinstance(value, str) else None
    return parsed.timestamp() if parsed is not None else 0.0


class ResourceWatch(ListWatch):
    """List+watch the OAuthClientCredentials of one namespace (None: all); report every change in batches."""

    name = "watch-resources"

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str | None, *,
                 loop: asyncio.AbstractEventLoop, on_events: Callable[[list[ResourceEvent]], None],
                 on_synced: Callable[[], None] | None = None,
                 on_reconnected: Callable[[], None] | None = None) -> None:
        super().__init__(api_client, loop=loop, on_synced=on_synced, on_reconnected=on_reconnected)
        self.namespace = namespace
        self._on_events = on_events
        self._known: dict[str, tuple[str, str]] = {}  # uid -> (namespace, name), to detect deletions in a gap

    def describe(self) -> str:
        return f"{api.KIND} {self.namespace or '(all namespaces)'}"

    @property
    def path(self) -> str:
        scope = f"/namespaces/{self.namespace}" if self.namespace is not None else ""
        return f"/apis/{api.GROUP}/{api.VERSION}{scope}/{api.PLURAL}"

    def _list(self, *, seed: bool) -> str:
        listed: dict[str, tuple[str, str]] = {}
        version = ""
        for page in self._pages(None):
            events = [ResourceEvent.of("ADDED", item) for item in page.get("items") or ()]
            for event in events:
                listed[event.uid] = (event.namespace, event.name)
            self._forward(events)  # a page at a time: the first workers start while the rest is listed
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        gone = [ResourceEvent("DELETED", uid, ns, name) for uid, (ns, name) in self._known.items()
                if uid not in listed]
        self._forward(gone)
        self._known = listed
        self.lists += 1
        return version

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        event = ResourceEvent.of(kind, obj)
        if kind == "DELETED":
            self._known.pop(event.uid, None)
        else:
            self._known[event.uid] = (event.namespace, event.name)
        self._forward([event])

    def _forward(self, events: list[ResourceEvent]) -> None:
        if events:
            self.events_forwarded += len(events)
            self._loop.call_soon_threadsafe(self._on_events, events)
