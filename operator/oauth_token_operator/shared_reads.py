"""One read per version of a referenced object, however many resources reference it.

A thousand resources that trust one CA bundle (``tls.caBundleRef``), or share one credentials Secret, used to
read it a thousand times when they were created or when it changed. Here the reads of one object are shared:

* concurrent reads of the same object become one request (the others wait for its answer);
* an answer for an object that more than one resource references is kept while the watch (``kube/watch.py``)
  reports no newer version of it: a later read of the same version is answered from memory. The cache is keyed
  on the object and its resourceVersion, so a rotated Secret is read again at once, whatever the clock says;
* an object nobody references any more is dropped (:meth:`SharedReads.drop`, called by the worker registry), so
  the cache holds only what our resources reference, never the rest of the cluster (issue 10).

Secrets stay in this process's memory only as long as the resolved configurations that use them would anyway.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from .resolve import ObjectSource

__all__ = ["SharedReads"]

JSON = dict[str, Any]
ObjectKey = tuple[str, str, str]  # (namespace, kind, name)


class Versions(Protocol):
    """What the watches know (``workers.WorkerRegistry``)."""

    def watched_version(self, key: ObjectKey) -> str | None:
        """The newest version of a referenced object we know of; None: not referenced, or not known."""

    def note_read(self, key: ObjectKey, version: str) -> None:
        """A read showed this version (kept only for referenced objects whose version is not known yet)."""

    def referrers(self, key: ObjectKey) -> int:
        """How many resources reference the object."""


class SharedReads:
    def __init__(self, source: ObjectSource, versions: Versions) -> None:
        self._source = source
        self._versions = versions
        self._cache: dict[ObjectKey, tuple[str, JSON | None]] = {}
        self._inflight: dict[ObjectKey, asyncio.Future[JSON | None]] = {}
        self.reads = 0  # requests actually made, for tests and the benchmark

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        return await self._get((namespace, "Secret", name))

    async def get_configmap(self, namespace: str, name: str) -> JSON | None:
        return await self._get((namespace, "ConfigMap", name))

    def drop(self, key: ObjectKey) -> None:
        self._cache.pop(key, None)

    def __len__(self) -> int:
        return len(self._cache)

    async def _get(self, key: ObjectKey) -> JSON | None:
        watched = self._versions.watched_version(key)
        cached = self._cache.get(key)
        if cached is not None and watched is not None and cached[0] == watched:
            return cached[1]
        inflight = self._inflight.get(key)
        if inflight is not None:
            try:
                return await asyncio.shield(inflight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not inflight.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The reader we waited for was cancelled (its resource was deleted), we were not: read ourselves.
        future: asyncio.Future[JSON | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            obj = await self._read(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: a read nobody else waited for must not warn at exit
            raise
        finally:
            del self._inflight[key]
        future.set_result(obj)
        if obj is not None:
            version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            self._versions.note_read(key, version)
            # Kept if it is still the newest version we know, and shared: a Secret only one resource reads (the
            # usual credentials Secret) would only add a copy of what that resource's resolved configuration
            # holds anyway, a few KiB per resource. What is kept loses its managedFields.
            if self._versions.watched_version(key) == version and self._versions.referrers(key) > 1:
                (obj.get("metadata") or {}).pop("managedFields", None)
                self._cache[key] = (version, obj)
        return obj

    async def _read(self, key: ObjectKey) -> JSON | None:
        namespace, kind, name = key
        self.reads += 1
        if kind == "Secret":
            return await self._source.get_secret(namespace, name)
        return await self._source.get_configmap(namespace, name)
