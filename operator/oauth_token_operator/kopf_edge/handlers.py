"""The Kopf registrations, deliberately thin (kopf is imported only in this package, ``kopf_edge``).

Kopf runs the operator process: it logs in, serves the liveness probe, keeps the peering between replicas and
runs the start-up and clean-up below. It no longer runs anything per resource: our resources are listed and
watched by ``kube/resource_watch.py`` and their cycles run by ``scheduler.py`` (the module docstrings say why:
Kopf's per-event machinery and a finalizer per resource were most of the operator's cost at scale), and
Secrets and ConfigMaps are watched, metadata only, by ``kube/watch.py``. All of them are started here. With
replicas, Kopf's peering decision pauses and resumes our scheduler (``peering.py``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
from typing import Any

import kopf

from ..app import App
from .peering import observe_peering

__all__ = ["register"]


def register(registry: kopf.OperatorRegistry, identity: Any = None) -> None:
    """Attach the handlers to ``registry`` (a fresh one per operator run, so tests can run several);
    ``identity`` is this replica's peering identity, as handed to Kopf."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the official client: in-cluster service account or KUBECONFIG.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # We post our own, precise Events from one place; Kopf's would duplicate them with tracebacks.
        settings.posting.enabled = False
        settings.posting.level = logging.CRITICAL
        loop = asyncio.get_running_loop()
        # `kill -USR1 <pid>` writes every asyncio task's stack to stderr: how to see where a hung operator
        # waits, which no thread dump (py-spy, faulthandler) shows for coroutines.
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        app: App = memo["app"]
        mandatory = bool(settings.peering.mandatory) and not settings.peering.standalone
        app.start(loop, paused=mandatory)
        if mandatory:
            memo["peering"] = loop.create_task(observe_peering(
                settings, identity, list(app.settings.namespaces), on_pause=app.pause, on_resume=app.resume))

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        app: App = memo["app"]
        peering: asyncio.Task[None] | None = memo.get("peering")
        if peering is not None:
            peering.cancel()
        await app.close()


def _dump_tasks() -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks()
    out.write(f"--- {len(tasks)} asyncio tasks ---\n")
    for task in tasks:
        task.print_stack(limit=12, file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()
