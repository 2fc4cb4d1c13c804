"""Whether this replica may work: Kopf's peering decision, observed for our own scheduler.

Kopf keeps the peering itself (each replica's keep-alive in the KopfPeering, priorities, dead peers), and it
pauses what *it* runs when a live peer of higher or equal priority exists. Our resources are no longer run by
Kopf (``kube/resource_watch.py`` says why), so the scheduler must pause with it. Kopf offers no public hook for
its pause; rather than re-implement its rule (and risk two replicas that disagree on who leads), this module
runs Kopf's own peering observer (``process_peering_event``, watched through Kopf's ``queueing.watcher``) a second
time, exactly as Kopf's orchestrator runs it, with a toggle of our own instead of Kopf's, and with dead-peer
cleaning left to Kopf's own observer. These are Kopf's lower layers (not its public API): pinned by the lock
files, and imported when the operator starts, so a Kopf upgrade that moves them fails at once, not silently.

Like Kopf, with mandatory peering the replica starts paused and works only after the first look at the peers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

import kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.engines import peering as kopf_peering
from kopf._core.reactor import queueing

__all__ = ["observe_peering"]

log = logging.getLogger(__name__)

CLUSTER_PEERINGS = references.Resource("kopf.dev", "v1", "clusterkopfpeerings", kind="ClusterKopfPeering",
                                       namespaced=False)
NAMESPACED_PEERINGS = references.Resource("kopf.dev", "v1", "kopfpeerings", kind="KopfPeering", namespaced=True)


async def observe_peering(settings: kopf.OperatorSettings, identity: kopf_peering.Identity,
                          namespaces: list[str], *, on_pause: Callable[[], None],
                          on_resume: Callable[[], None]) -> None:
    """Call ``on_pause``/``on_resume`` whenever Kopf's peering decision changes; runs until cancelled.

    Only for mandatory peering (``settings.peering.mandatory``): a standalone operator is never paused."""
    paused = aiotoggles.ToggleSet(any)
    scopes: list[tuple[references.Resource, references.NamespaceName | None]] = (
        [(NAMESPACED_PEERINGS, references.NamespaceName(ns)) for ns in namespaces] if namespaces
        else [(CLUSTER_PEERINGS, None)])
    watchers = []
    for resource, namespace in scopes:
        conflicts_found = await paused.make_toggle(True, name=f"{settings.peering.name}@{namespace}")
        watchers.append(asyncio.create_task(queueing.watcher(
            settings=settings, resource=resource, namespace=namespace,
            processor=functools.partial(kopf_peering.process_peering_event, conflicts_found=conflicts_found,
                                        namespace=namespace, resource=resource, settings=settings,
                                        identity=identity, autoclean=False)),
            name=f"our peering observer for {settings.peering.name}@{namespace}"))
    try:
        while True:
            await paused.wait_for(False)
            log.info("this replica leads: refreshing tokens")
            on_resume()
            await paused.wait_for(True)
            log.info("another replica leads: pausing")
            on_pause()
    finally:
        for task in watchers:
            task.cancel()


def own_identity() -> kopf_peering.Identity:
    """The identity Kopf would choose itself (``POD_ID`` or user@host/time/random), chosen once and handed to
    both Kopf and :func:`observe_peering`, so that both see the same record as their own."""
    return kopf_peering.detect_own_id(manual=False)
