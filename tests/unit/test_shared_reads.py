"""shared_reads.SharedReads: one read per version of a referenced object, however many resources reference it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.errors import KubernetesUnavailable
from oauth_token_operator.shared_reads import SharedReads
from oauth_token_operator.workers import WorkerRegistry


class Source:
    """The API server's answers, with a gate to hold reads in flight."""

    def __init__(self) -> None:
        self.version = "1"
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise AssertionError("only ConfigMaps here")

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {"metadata": {"name": name, "resourceVersion": self.version}, "data": {"ca.crt": "pem"}}


def referencing(registry: WorkerRegistry, *uids: str) -> None:
    for uid in uids:
        worker = registry.open(uid)
        worker.references = frozenset({("ConfigMap", "ca")})
        registry.track(worker, OAuthClientCredential.model_validate({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {"tokenURL": "https://idp/token", "clientCredentialsSecretRef": {"name": "creds"},
                     "target": {"secretName": f"{uid}-tok"}}}))


@pytest.fixture
def setup() -> tuple[Source, WorkerRegistry, SharedReads]:
    source, registry = Source(), WorkerRegistry()
    reads = SharedReads(source, registry)
    registry.unreferenced = reads.drop
    referencing(registry, "a", "b", "c")
    return source, registry, reads


async def test_a_thousand_resources_reading_one_bundle_at_once_make_one_request(
        setup: tuple[Source, WorkerRegistry, SharedReads]) -> None:
    source, _, reads = setup
    source.gate.clear()
    waiting = [asyncio.create_task(reads.get_configmap("ns", "ca")) for _ in range(1000)]
    await asyncio.sleep(0)
    source.gate.set()
    answers = await asyncio.gather(*waiting)
    assert source.reads == 1 and all(a == answers[0] for a in answers)


async def test_the_same_version_is_answered_from_memory_and_a_new_one_is_read(
        setup: tuple[Source, WorkerRegistry, SharedReads]) -> None:
    source, registry, reads = setup
    await reads.get_configmap("ns", "ca")
    await reads.get_configmap("ns", "ca")
    assert source.reads == 1, "the watch reported no newer version"
    source.version = "2"
    registry.object_changed("ns", "ConfigMap", "ca", "2")  # rotated
    answer = await reads.get_configmap("ns", "ca")
    assert source.reads == 2 and answer is not None and answer["metadata"]["resourceVersion"] == "2"


async def test_objects_nobody_references_are_neither_kept_nor_served_from_memory(
        setup: tuple[Source, WorkerRegistry, SharedReads]) -> None:
    source, registry, reads = setup
    await reads.get_configmap("ns", "ca")
    assert len(reads) == 1
    for uid in ("a", "b", "c"):
        registry.close(uid)
    assert len(reads) == 0, "dropped with its last reference"
    await reads.get_configmap("ns", "ca")
    await reads.get_configmap("ns", "ca")
    assert source.reads == 3 and len(reads) == 0


async def test_a_failed_read_fails_every_waiter_and_is_not_remembered(
        setup: tuple[Source, WorkerRegistry, SharedReads]) -> None:
    source, _, reads = setup
    source.gate.clear()
    source.fail = KubernetesUnavailable("the Kubernetes API server did not answer get configmaps (503)")
    waiting = [asyncio.create_task(reads.get_configmap("ns", "ca")) for _ in range(3)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, KubernetesUnavailable) for r in results) and source.reads == 1
    source.fail = None
    assert await reads.get_configmap("ns", "ca") is not None and source.reads == 2


async def test_when_the_reader_is_cancelled_the_others_read_themselves(
        setup: tuple[Source, WorkerRegistry, SharedReads]) -> None:
    source, _, reads = setup
    source.gate.clear()
    first = asyncio.create_task(reads.get_configmap("ns", "ca"))
    await asyncio.sleep(0)
    second = asyncio.create_task(reads.get_configmap("ns", "ca"))
    await asyncio.sleep(0)
    first.cancel()  # its resource was deleted mid-read
    await asyncio.sleep(0)
    source.gate.set()
    answer = await second
    assert answer is not None and first.cancelled() and source.reads == 2


async def test_an_object_only_one_resource_reads_is_not_kept() -> None:
    source, registry = Source(), WorkerRegistry()
    reads = SharedReads(source, registry)
    referencing(registry, "only")
    await reads.get_configmap("ns", "ca")
    await reads.get_configmap("ns", "ca")
    assert source.reads == 2 and len(reads) == 0, "its resolved configuration holds what it needs"
