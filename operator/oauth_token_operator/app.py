"""The long-lived parts of one operator process, built once from the settings and shared by the handlers."""

from __future__ import annotations

from dataclasses import dataclass

from . import __version__
from .endpoint_health import EndpointHealth
from .kube.client import ApiGate, KubeClient, load_kube_config
from .metrics import Metrics
from .reconcile import Refresher
from .settings import OperatorSettings
from .tokens.client import TokenClient
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

        workers = WorkerRegistry()
        kube = KubeClient(load_kube_config(), threads=settings.kube_client_threads, on_request=count,
                          timeout=settings.kube_request_timeout_seconds,
                          gate=ApiGate(on_recovered=workers.kube_recovered))
        tokens = token_client(settings)
        refresher = Refresher(kube=kube, tokens=tokens, health=EndpointHealth(), metrics=metrics,
                              settings=settings, on_endpoint_recovered=workers.endpoint_recovered,
                              on_references=workers.track)
        return cls(settings=settings, kube=kube, tokens=tokens, metrics=metrics, refresher=refresher,
                   workers=workers)

    async def close(self) -> None:
        await self.tokens.aclose()
        await self.kube.close()


def token_client(settings: OperatorSettings) -> TokenClient:
    """The token client as both ``run`` and ``token`` configure it: one code path for both."""
    return TokenClient(
        timeout=settings.request_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        allow_insecure_http=settings.allow_insecure_http,
        default_lifetime=float(settings.default_token_lifetime_seconds),
        user_agent=f"oauth-token-operator/{__version__}",
    )
