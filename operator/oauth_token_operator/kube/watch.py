"""Watching Secrets and ConfigMaps for what they are to us: names and versions, nothing else.

A real cluster holds thousands of Secrets that are none of our business (Helm keeps every release revision as
a Secret of 20-200 KiB). Kopf's watches decode every object whole and keep it; this module lists and watches
**metadata only** (the API server serves ``PartialObjectMetadata`` when asked through the ``Accept`` header), so
a foreign Secret costs one small JSON line per change, parsed in the watch's own thread, and is dropped at
once unless a worker references it (``is_referenced``). cert-manager's memory-management design (2022) and
Flux's controllers (Secret caching off by default) chose the same for the same reason; Kopf cannot watch
metadata only, hence this module, which uses the official client like the rest of ``kube/``.

The first listing after start is offered as a *seed* (name to version of every object listed): workers that
start in the next minutes take the versions of the objects they reference from it instead of reading them, so
a restart reads only each target Secret. The registry drops the seed two minutes after every watch has listed
(``workers.SEED_TTL_SECONDS``): in steady state nothing we do not reference is kept.

Each watch runs in a thread of its own (a watch is a long, blocking read); events reach the event loop through
``call_soon_threadsafe``. A watch that breaks (API server restart, 410 Gone, timeout) is re-established after a
short backoff, relisting when the resourceVersion expired; every object seen in a relist is reported again,
and workers ignore versions they already know.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .target import SeenTarget, seen_target

__all__ = ["ListWatch", "MetadataWatch", "OnSeed", "WatchTarget"]

log = logging.getLogger(__name__)

LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PAGE_SIZE = 500
WATCH_SECONDS = 300
# A broken watch is retried quickly (one connection attempt per couple of seconds is cheap even against a dead
# server): its reconnection is also how the operator learns that the API server is back (``on_reconnected``).
RETRY_SECONDS = (0.5, 1.0, 2.0)

#: (namespace, name, resourceVersion or None for a deletion)
Event = tuple[str, str, str | None]
#: The first listing: (kind, every object's version by (namespace, name), our own target Secrets' metadata)
OnSeed = Callable[[str, dict[tuple[str, str], str], dict[tuple[str, str], SeenTarget]], None]


@dataclass(frozen=True)
class WatchTarget:
    """One list+watch: ``kind`` is ``Secret`` or ``ConfigMap``; ``namespace`` None means cluster-wide."""

    kind: str
    namespace: str | None = None
    label_selector: str | None = None

    @property
    def path(self) -> str:
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[self.kind]
        return f"/api/v1/namespaces/{self.namespace}/{plural}" if self.namespace else f"/api/v1/{plural}"


class _Expired(Exception):
    """410 Gone: the resourceVersion we watch from is too old; list again."""


class ListWatch:
    """One list+watch in a thread of its own: list (paged), then watch from the list's version; re-watch after
    a timeout, re-list after 410 Gone, retry quickly after anything else. Subclasses say what to request and
    what to do with the objects."""

    name = "watch"
    #: The watch request's Accept header (None: the client's default, whole objects).
    watch_accept: str | None = None

    def __init__(self, api_client: kubernetes.client.ApiClient, *, loop: asyncio.AbstractEventLoop,
                 on_synced: Callable[[], None] | None = None,
                 on_reconnected: Callable[[], None] | None = None) -> None:
        self._api = api_client
        self._loop = loop
        self._on_synced = on_synced
        self._on_reconnected = on_reconnected
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.lists = 0
        self.events_seen = 0
        self.events_forwarded = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the read in the watch thread
            except Exception:  # noqa: S110  # best effort: the thread is a daemon and re-checks _stop
                pass

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def path(self) -> str:
        """The collection listed and watched."""
        raise NotImplementedError

    def _call(self, accept: str | None, timeout: tuple[float, float], query: dict[str, str]) -> Any:
        """One list or watch request through the official client's ``ApiClient`` (server, TLS, credentials and
        their refresh hook from its configuration), answered as the raw urllib3 response. Not through the
        generated API classes: ``CoreV1Api`` alone costs 0.6 CPU-seconds and 22 MiB of RSS to import (measured,
        kubernetes 37), more than the whole working set of a thousand resources, for four request builders."""
        request = self._api.param_serialize(
            method="GET", resource_path=self.path, query_params=list(query.items()),
            header_params={"Accept": accept or "application/json"}, auth_settings=["BearerToken"])
        response = self._api.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _list(self, *, seed: bool) -> str:
        raise NotImplementedError

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        first = True
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(seed=first)
                    if first and self._on_synced is not None:
                        self._loop.call_soon_threadsafe(self._on_synced)
                    first = False
                version = self._watch(version, after_failure=failures > 0)
                failures = 0
            except _Expired:
                version = None
            except Exception as exc:  # a watch must never die silently: retry whatever broke it
                if self._stop.is_set():
                    return
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watch of %s broke (%s); again in %.0fs", self.describe(), type(exc).__name__, delay)
                self._stop.wait(delay)
                if isinstance(exc, ApiException) and exc.status == 410:
                    version = None

    def _request(self, accept: str | None, timeout: tuple[float, float], **query: str) -> Any:
        try:
            return self._call(accept, timeout, query)
        except ApiException as exc:
            if exc.status == 410:
                raise _Expired() from None
            raise

    def _pages(self, accept: str | None) -> Iterator[dict[str, Any]]:
        """The list, a page at a time (each page parsed and released before the next is asked for)."""
        token = ""
        while True:
            paging = {"continue": token} if token else {}
            response = self._request(accept, (5.0, 60.0), limit=str(PAGE_SIZE), **paging)
            try:
                page: dict[str, Any] = json.loads(response.data)
            finally:
                response.release_conn()
            yield page
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def _watch(self, version: str, *, after_failure: bool) -> str:
        response = self._request(self.watch_accept, (5.0, WATCH_SECONDS + 30.0), watch="true",
                                 resourceVersion=version, allowWatchBookmarks="true",
                                 timeoutSeconds=str(WATCH_SECONDS))
        self._response = response
        if after_failure and self._on_reconnected is not None:
            self._loop.call_soon_threadsafe(self._on_reconnected)
        try:
            lines: Iterator[str] = iter_resp_lines(response)  # type: ignore[no-untyped-call]
            for line in lines:
                if not line:
                    continue
                event = json.loads(line)
                kind = event.get("type", "")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise _Expired()
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                self.events_seen += 1
                self._event(kind, obj)
        finally:
            self._response = None
            response.release_conn()
        return version


class MetadataWatch(ListWatch):
    """List+watch the metadata of one kind in one scope; report changes of referenced objects."""

    name = "watch-metadata"
    watch_accept = WATCH_ACCEPT

    def __init__(self, api_client: kubernetes.client.ApiClient, target: WatchTarget, *,
                 loop: asyncio.AbstractEventLoop,
                 is_referenced: Callable[[str, str, str], bool],
                 on_events: Callable[[str, list[Event]], None],
                 on_seed: OnSeed | None = None,
                 on_synced: Callable[[], None] | None = None,
                 on_reconnected: Callable[[], None] | None = None,
                 count: Callable[[str, bool, int], None] | None = None,
                 is_used: Callable[[str, str, str], bool] | None = None) -> None:
        self.name = f"watch-{target.kind.lower()}"
        super().__init__(api_client, loop=loop, on_synced=on_synced, on_reconnected=on_reconnected)
        self.target = target
        self._is_referenced = is_referenced
        self._on_events = on_events
        self._on_seed = on_seed
        self._count = count or (lambda kind, referenced, n: None)
        # Forwarded is not the same as referenced: while the start-up seed is kept every change is forwarded (to
        # keep the seed current), but counted as referenced only if a resource references the object.
        self._is_used = is_used or is_referenced

    def describe(self) -> str:
        return f"{self.target.kind} {self.target.namespace or '(all namespaces)'}"

    @property
    def path(self) -> str:
        return self.target.path

    def _call(self, accept: str | None, timeout: tuple[float, float], query: dict[str, str]) -> Any:
        if self.target.label_selector:
            query = {**query, "labelSelector": self.target.label_selector}
        return super()._call(accept, timeout, query)

    def _list(self, *, seed: bool) -> str:
        """Every object's metadata, a page at a time; returns the list's resourceVersion."""
        snapshot: dict[tuple[str, str], str] = {}
        targets: dict[tuple[str, str], SeenTarget] = {}
        events: list[Event] = []
        version = ""
        for page in self._pages(LIST_ACCEPT):
            for item in page.get("items") or ():
                meta = item.get("metadata") or {}
                namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
                rv = str(meta.get("resourceVersion", ""))
                if seed:
                    snapshot[(namespace, name)] = rv
                    if self.target.kind == "Secret" and (target := seen_target(meta)) is not None:
                        targets[(namespace, name)] = target
                if self._is_referenced(namespace, self.target.kind, name):
                    events.append((namespace, name, rv))
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        self.lists += 1
        self._count(self.target.kind, True, len(events))
        self._count(self.target.kind, False, len(snapshot) - len(events) if seed else 0)
        if seed and self._on_seed is not None:
            self._loop.call_soon_threadsafe(self._on_seed, self.target.kind, snapshot, targets)
        self._forward(events)
        return version

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        self._count(self.target.kind, self._is_used(namespace, self.target.kind, name), 1)
        if self._is_referenced(namespace, self.target.kind, name):
            self._forward([(namespace, name, None if kind == "DELETED" else meta.get("resourceVersion"))])

    def _forward(self, events: list[Event]) -> None:
        if events:
            self.events_forwarded += len(events)
            self._loop.call_soon_threadsafe(self._on_events, self.target.kind, events)
