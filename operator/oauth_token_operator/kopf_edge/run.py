"""``oauth-token-operator run``: build the process's parts and hand them to Kopf."""

from __future__ import annotations

import asyncio
import secrets

import kopf

from ..app import App
from ..settings import OperatorSettings
from .handlers import register
from .logs import configure_logging
from .peering import own_identity

__all__ = ["run_operator"]


def run_operator(settings: OperatorSettings) -> None:
    configure_logging(settings)
    app = App.build(settings)
    if settings.metrics_port:
        app.metrics.serve(settings.metrics_port)
    registry = kopf.OperatorRegistry()
    identity = own_identity()
    register(registry, identity)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.peering.lifetime = settings.peering_lifetime_seconds
    # Kopf pauses every peer that sees a live peer of equal priority: replicas of one Deployment share their
    # flags, so unless told otherwise each start draws its own priority (a tie is a 1 in 2**31 event).
    priority = settings.peering_priority
    if priority is None:
        priority = secrets.randbelow(2**31)
    asyncio.run(kopf.operator(
        registry=registry,
        settings=kopf_settings,
        memo=kopf.Memo(app=app),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=priority,
        identity=identity,
        liveness_endpoint=liveness,
    ))
