"""The long-lived parts of one operator process, built once from the settings and shared by the handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .api import SECRET_OPT_IN_LABEL
from .endpoint_health import EndpointHealth
from .errors import KubernetesUnavailable
from .kube.client import ApiGate, KubeClient, load_kube_config
from .kube.resource_watch import ResourceEvent, ResourceWatch
from .kube.target import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from .kube.watch import MetadataWatch, WatchTarget
from .metrics import Metrics
from .reconcile import Refresher
from .scheduler import Scheduler, where
from .settings import OperatorSettings
from .shared_reads import SharedReads
from .tokens.client import TokenClient
from .tokens.egress import DeniedNetworks, api_server_addresses
from .workers import WATCH_SYNC_TIMEOUT, WorkerRegistry

__all__ = ["App"]

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: OperatorSettings
    kube: KubeClient
    tokens: TokenClient
    metrics: Metrics
    refresher: Refresher
    workers: WorkerRegistry
    scheduler: Scheduler = field(init=False)
    watches: list[MetadataWatch | ResourceWatch] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.run_cycle)
        self.workers.wake = self.scheduler.wake
        self.workers.forget = self.scheduler.forget
        self.workers.gone = lambda namespace, name: self.metrics.forget_resource(namespace=namespace, name=name)
        self.workers.release_finalizer = self._release_finalizer

    async def run_cycle(self, uid: str) -> datetime | None:
        """One resource's cycle, on the latest copy of its object; None when it is gone."""
        body, state = self.workers.body(uid), self.workers.get(uid)
        if body is None or state is None:
            return None
        return await self.refresher.run(json.loads(body), state)

    def watch_targets(self) -> list[WatchTarget]:
        """What the operator watches besides its own resources: the metadata of Secrets and ConfigMaps, in
        each watched namespace (or cluster-wide); with ``require_secret_label``, only the Secrets that opted in
        and our own target Secrets (then the rest of the cluster's Secrets cost nothing at all)."""
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        secrets = ([f"{SECRET_OPT_IN_LABEL}=true", f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"]
                   if self.settings.require_secret_label else [None])
        return [*(WatchTarget("Secret", ns, selector) for ns in namespaces for selector in secrets),
                *(WatchTarget("ConfigMap", ns) for ns in namespaces)]

    def start(self, loop: asyncio.AbstractEventLoop, *, paused: bool = False) -> None:
        """Start watching and refreshing; ``paused``: refresh nothing until :meth:`resume` (peering)."""
        if paused:
            self.scheduler.pause()
        self.start_watches(loop)
        scopes: list[str | None] = list(self.settings.namespaces) or [None]
        for namespace in scopes:
            watch = self.kube.resource_watch(namespace, loop=loop, on_events=self.workers.resources_changed)
            watch.start()
            self.watches.append(watch)
        loop.call_later(WATCH_SYNC_TIMEOUT, self.workers.release_waiting)
        serving = loop.create_task(self.scheduler.serve(), name="scheduler")
        serving.add_done_callback(_stop_if_crashed)
        self._tasks.add(serving)

    def pause(self) -> None:
        """Another replica leads: start no cycle, and forget what the workers knew (the leader writes now)."""
        self.scheduler.pause()
        self.workers.reset()

    def resume(self) -> None:
        self.workers.wake_all()
        self.scheduler.resume()

    def _release_finalizer(self, event: ResourceEvent) -> None:
        self._spawn(self._release(event))

    async def _release(self, event: ResourceEvent) -> None:
        # A conflict or a 404 means the resource changed or went: its next watch event (if any) tries again.
        # While the API server is unavailable, retry here: no event may come, and the deletion would hang.
        for delay in (1.0, 2.0, 4.0, 8.0, 16.0, None):
            try:
                await self.kube.release_legacy_finalizer(event)
                return
            except KubernetesUnavailable as exc:
                if delay is None:
                    log.warning("could not remove the old finalizer of %s/%s: %s", event.namespace, event.name,
                                exc.message)
                    return
                await asyncio.sleep(delay)
            except Exception as exc:
                log.info("old finalizer of %s/%s not removed now (%s); its next change tries again",
                         event.namespace, event.name, type(exc).__name__)
                return

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_watches(self, loop: asyncio.AbstractEventLoop) -> None:
        targets = self.watch_targets()
        self.workers.expect_watches(len(targets))
        for target in targets:
            watch = self.kube.metadata_watch(target, loop=loop, is_referenced=self.workers.is_referenced,
                                             on_events=self.workers.objects_changed, on_seed=self.workers.seed,
                                             on_synced=self.workers.watch_synced,
                                             count=self.metrics.count_watched,
                                             is_used=self.workers.references)
            watch.start()
            self.watches.append(watch)

    @classmethod
    def build(cls, settings: OperatorSettings) -> App:
        metrics = Metrics()
        def count(verb: str, resource: str) -> None:
            metrics.kube_requests.labels(verb=verb, resource=resource).inc()

        workers = WorkerRegistry()
        api_client = load_kube_config()
        kube = KubeClient(api_client, connections=settings.kube_client_threads, on_request=count,
                          timeout=settings.kube_request_timeout_seconds,
                          gate=ApiGate(on_recovered=workers.kube_recovered))
        tokens = token_client(settings, api_server_url=api_client.configuration.host)
        reads = SharedReads(kube, workers)
        workers.unreferenced = reads.drop
        refresher = Refresher(kube=kube, tokens=tokens, health=EndpointHealth(), metrics=metrics,
                              settings=settings, on_endpoint_recovered=workers.endpoint_recovered,
                              on_references=workers.track, reads=reads)
        return cls(settings=settings, kube=kube, tokens=tokens, metrics=metrics, refresher=refresher,
                   workers=workers)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for watch in self.watches:
            watch.stop()
        await self.tokens.aclose()
        await self.kube.close()


def _stop_if_crashed(task: asyncio.Task[None]) -> None:
    """The scheduler never returns: if it died of a bug, refreshing has stopped while the probes still answer.
    Stop the process instead (Kopf then exits, and Kubernetes restarts the pod: a restart costs no token)."""
    if task.cancelled() or task.exception() is None:
        return
    exc = task.exception()
    assert exc is not None
    log.critical("the scheduler failed (%s at %s), stopping the operator", type(exc).__name__, where(exc))
    os.kill(os.getpid(), signal.SIGTERM)


def token_client(settings: OperatorSettings, *, api_server_url: str | None = None) -> TokenClient:
    """The token client as both ``run`` and ``token`` configure it: one code path for both.

    ``api_server_url`` is the Kubernetes API server the operator talks to (``run``); its addresses, and the
    ``kubernetes.default`` service IP inside a pod, join the default denied networks.
    """
    return TokenClient(
        timeout=settings.request_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        allow_insecure_http=settings.allow_insecure_http,
        allow_insecure_skip_verify=settings.allow_insecure_skip_verify,
        denied_networks=denied_networks(settings, api_server_url=api_server_url),
        default_lifetime=float(settings.default_token_lifetime_seconds),
    )


def denied_networks(settings: OperatorSettings, *, api_server_url: str | None = None) -> DeniedNetworks:
    """The setting's networks; unset, the default list plus the API server's addresses."""
    if settings.denied_endpoint_networks is not None:
        return DeniedNetworks.build(settings.denied_endpoint_networks)
    servers = api_server_addresses(api_server_url, service_host=os.environ.get("KUBERNETES_SERVICE_HOST"))
    return DeniedNetworks.default(api_server=servers)
