"""The Kopf registrations: the only module that imports kopf, and deliberately thin.

* one async daemon per resource runs the refresh loop (``reconcile.Refresher``) and sleeps in between; Kopf
  starts it for every existing resource on start-up (no token request while the stored one is fresh), stops it
  on deletion (cancelled at once: the target Secret goes by ownerReference garbage collection, so there is
  nothing to clean up even when the token endpoint is down), and pauses it when another replica leads;
* an event handler (which Kopf neither persists nor retries) wakes the worker when its resource changes.
  Secrets and ConfigMaps are not Kopf's business: ``kube/watch.py`` watches their metadata only, started here
  at start-up.

Daemons are async on purpose: sync daemons would each hold one of a handful of threads.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
from typing import Any

import kopf

from .. import api
from ..app import App

__all__ = ["register"]

WATCH_SYNC_TIMEOUT = 30.0


def register(registry: kopf.OperatorRegistry) -> None:
    """Attach the handlers to ``registry`` (a fresh one per operator run, so tests can run several)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the official client: in-cluster service account or KUBECONFIG.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = f"{api.GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=api.GROUP, key="last-handled-configuration")
        # We post our own, precise Events from one place; Kopf's would duplicate them with tracebacks.
        settings.posting.enabled = False
        settings.posting.level = logging.CRITICAL
        # `kill -USR1 <pid>` writes every asyncio task's stack to stderr: how to see where a hung operator
        # waits, which no thread dump (py-spy, faulthandler) shows for coroutines.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
        # Secrets and ConfigMaps are watched by kube/watch.py (metadata only), not by Kopf: Kopf would decode
        # and keep every Secret of the cluster.
        app: App = memo["app"]
        app.start_watches(asyncio.get_running_loop())

    @kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, id="token", registry=registry,
                 cancellation_timeout=5.0)
    async def keep_token_fresh(body: kopf.Body, meta: kopf.Meta, uid: str, memo: kopf.Memo,
                               stopped: kopf.DaemonStopped, **_: Any) -> None:
        app: App = memo["app"]
        worker = app.workers.open(uid)
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        # After a start, a resource that already holds a token waits for the watches' first listing: it tells
        # the versions of the referenced objects, so such a resource reads only its target Secret (bounded: a
        # slow listing costs reads, not correctness). A new resource reads its inputs anyway: it starts at once
        # (in a cluster full of large foreign Secrets the first listing takes seconds).
        if (body.get("status") or {}).get("expiresAt"):
            await app.workers.wait_synced(within=WATCH_SYNC_TIMEOUT)
        try:
            while not stopped:
                due = await app.refresher.run(_plain(body), worker)
                await app.workers.sleep_until(uid, due)
        finally:
            app.workers.close(uid)
            app.metrics.forget_resource(namespace=namespace, name=name)

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL, registry=registry)
    async def resource_event(body: kopf.Body, meta: kopf.Meta, uid: str, memo: kopf.Memo, **_: Any) -> None:
        app: App = memo["app"]
        refresh = (meta.get("annotations") or {}).get(api.REFRESH_ANNOTATION, "")
        app.workers.resource_changed(uid, int(meta.get("generation") or 0), refresh)

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        app: App = memo["app"]
        await app.close()


def _dump_tasks() -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks()
    out.write(f"--- {len(tasks)} asyncio tasks ---\n")
    for task in tasks:
        task.print_stack(limit=12, file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A snapshot of Kopf's live body (it changes under our feet while we await)."""
    keys = ("apiVersion", "kind", "metadata", "spec", "status")
    return {key: body[key] for key in keys if body.get(key) is not None}
