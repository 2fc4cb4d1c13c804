"""The long-lived parts of one operator process, built once from the settings and shared by the handlers."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from . import __version__
from .api import SECRET_OPT_IN_LABEL
from .endpoint_health import EndpointHealth
from .kube.client import ApiGate, KubeClient, load_kube_config
from .kube.target import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from .kube.watch import MetadataWatch, WatchTarget
from .metrics import Metrics
from .reconcile import Refresher
from .settings import OperatorSettings
from .tokens.client import TokenClient
from .tokens.egress import DeniedNetworks, api_server_addresses
from .workers import WorkerRegistry

__all__ = ["App"]


@dataclass
class App:
    settings: OperatorSettings
    kube: KubeClient
    tokens: TokenClient
    metrics: Metrics
    refresher: Refresher
    workers: WorkerRegistry
    watches: list[MetadataWatch] = field(default_factory=list)

    def watch_targets(self) -> list[WatchTarget]:
        """What the operator watches besides its own resources: the metadata of Secrets and ConfigMaps, in
        each watched namespace (or cluster-wide); with ``require_secret_label``, only the Secrets that opted in
        and our own target Secrets (then the rest of the cluster's Secrets cost nothing at all)."""
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        secrets = ([f"{SECRET_OPT_IN_LABEL}=true", f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"]
                   if self.settings.require_secret_label else [None])
        return [*(WatchTarget("Secret", ns, selector) for ns in namespaces for selector in secrets),
                *(WatchTarget("ConfigMap", ns) for ns in namespaces)]

    def start_watches(self, loop: asyncio.AbstractEventLoop) -> None:
        targets = self.watch_targets()
        self.workers.expect_watches(len(targets))
        for target in targets:
            watch = self.kube.metadata_watch(target, loop=loop, is_referenced=self.workers.is_referenced,
                                             on_events=self.workers.objects_changed, on_seed=self.workers.seed,
                                             on_synced=self.workers.watch_synced,
                                             count=self.metrics.count_watched)
            watch.start()
            self.watches.append(watch)

    @classmethod
    def build(cls, settings: OperatorSettings) -> App:
        metrics = Metrics()
        def count(verb: str, resource: str) -> None:
            metrics.kube_requests.labels(verb=verb, resource=resource).inc()

        workers = WorkerRegistry()
        api_client = load_kube_config()
        kube = KubeClient(api_client, threads=settings.kube_client_threads, on_request=count,
                          timeout=settings.kube_request_timeout_seconds,
                          gate=ApiGate(on_recovered=workers.kube_recovered))
        tokens = token_client(settings, api_server_url=api_client.configuration.host)
        refresher = Refresher(kube=kube, tokens=tokens, health=EndpointHealth(), metrics=metrics,
                              settings=settings, on_endpoint_recovered=workers.endpoint_recovered,
                              on_references=workers.track)
        return cls(settings=settings, kube=kube, tokens=tokens, metrics=metrics, refresher=refresher,
                   workers=workers)

    async def close(self) -> None:
        for watch in self.watches:
            watch.stop()
        await self.tokens.aclose()
        await self.kube.close()


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
        user_agent=f"oauth-token-operator/{__version__}",
    )


def denied_networks(settings: OperatorSettings, *, api_server_url: str | None = None) -> DeniedNetworks:
    """The setting's networks; unset, the default list plus the API server's addresses."""
    if settings.denied_endpoint_networks is not None:
        return DeniedNetworks.build(settings.denied_endpoint_networks)
    servers = api_server_addresses(api_server_url, service_host=os.environ.get("KUBERNETES_SERVICE_HOST"))
    return DeniedNetworks.default(api_server=servers)
