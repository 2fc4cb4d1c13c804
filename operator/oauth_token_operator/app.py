"""The long-lived parts of one operator process, built once from the settings and shared by the handlers."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import __version__
from .endpoint_health import EndpointHealth
from .kube.client import KubeClient, load_kube_config
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

    @classmethod
    def build(cls, settings: OperatorSettings) -> App:
        metrics = Metrics()
        def count(verb: str, resource: str) -> None:
            metrics.kube_requests.labels(verb=verb, resource=resource).inc()

        api_client = load_kube_config()
        kube = KubeClient(api_client, threads=settings.kube_client_threads, on_request=count)
        tokens = token_client(settings, api_server_url=api_client.configuration.host)
        workers = WorkerRegistry()
        refresher = Refresher(kube=kube, tokens=tokens, health=EndpointHealth(), metrics=metrics,
                              settings=settings, on_endpoint_recovered=workers.endpoint_recovered,
                              on_references=workers.track)
        return cls(settings=settings, kube=kube, tokens=tokens, metrics=metrics, refresher=refresher,
                   workers=workers)

    async def close(self) -> None:
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
