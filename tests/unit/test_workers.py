"""Which watch events wake a worker: real changes do, echoes of our own writes and repeats do not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.workers import WorkerRegistry


def registry_with_worker() -> tuple[WorkerRegistry, str]:
    registry = WorkerRegistry()
    worker = registry.open("uid-1")
    worker.references = frozenset({("Secret", "creds"), ("ConfigMap", "ca")})
    worker.target_name = "tok"
    worker.known_versions = {("Secret", "creds"): "10", ("ConfigMap", "ca"): "11", ("Secret", "tok"): "12"}
    worker.target_stale = False
    registry.track(worker, OAuthClientCredential.model_validate({
        "metadata": {"name": "r", "namespace": "ns", "uid": "uid-1"},
        "spec": {"tokenURL": "https://idp/token", "clientCredentialsSecretRef": {"name": "creds"},
                 "target": {"secretName": "tok"}}}))
    return registry, "uid-1"


def woken(registry: WorkerRegistry, uid: str) -> bool:
    return registry._wake[uid].is_set()


def test_echo_of_a_version_already_seen_wakes_nobody() -> None:
    registry, uid = registry_with_worker()
    registry.object_changed("ns", "Secret", "tok", "12")  # our own write coming back through the watch
    registry.object_changed("ns", "Secret", "creds", "10")  # initial listing after a restart
    assert not woken(registry, uid)


def test_a_changed_credentials_secret_wakes_and_records_the_new_version() -> None:
    registry, uid = registry_with_worker()
    registry.object_changed("ns", "Secret", "creds", "20")
    assert woken(registry, uid)
    worker = registry.open(uid)
    assert worker.known_versions[("Secret", "creds")] == "20" and not worker.target_stale


def test_a_changed_or_deleted_target_secret_is_looked_at_again() -> None:
    registry, uid = registry_with_worker()
    registry.object_changed("ns", "Secret", "tok", None)
    assert woken(registry, uid)
    worker = registry.open(uid)
    assert worker.target_stale
    assert worker.known_versions[("Secret", "tok")] is None


def test_a_deleted_then_recreated_reference_still_wakes() -> None:
    registry, uid = registry_with_worker()
    registry.object_changed("ns", "Secret", "creds", None)
    registry._wake[uid].clear()
    registry.object_changed("ns", "Secret", "creds", "30")
    assert woken(registry, uid)


def test_unrelated_objects_and_other_namespaces_wake_nobody() -> None:
    registry, uid = registry_with_worker()
    registry.object_changed("ns", "Secret", "unrelated", "99")
    registry.object_changed("other", "Secret", "creds", "99")
    registry.object_changed("ns", "Secret", "ca", "99")  # a Secret named like the referenced ConfigMap
    assert not woken(registry, uid)


def test_only_spec_or_refresh_annotation_changes_of_the_resource_wake() -> None:
    registry, uid = registry_with_worker()
    registry.resource_changed(uid, 1, "")
    registry.resource_changed(uid, 1, "")  # a status write of our own: same generation and annotation
    assert not woken(registry, uid)
    registry.resource_changed(uid, 1, "1732467600")
    assert woken(registry, uid)
    registry._wake[uid].clear()
    registry.resource_changed(uid, 2, "1732467600")
    assert woken(registry, uid)


def test_endpoint_recovery_releases_only_the_workers_waiting_for_it() -> None:
    registry, uid = registry_with_worker()
    other = registry.open("uid-2")
    registry.open(uid).blocked_on = "https://idp/token"
    other.blocked_on = "https://elsewhere/token"
    registry.endpoint_recovered("https://idp/token")
    assert woken(registry, uid) and not woken(registry, "uid-2")
    assert registry.open(uid).blocked_on is None and registry.open(uid).next_attempt is not None


def test_close_forgets_the_worker_and_its_references() -> None:
    registry, uid = registry_with_worker()
    registry.close(uid)
    assert len(registry) == 0
    registry.object_changed("ns", "Secret", "creds", "40")  # must not fail for a closed worker
    assert registry._refs == {}


async def test_sleep_returns_when_woken_before_the_due_time() -> None:
    registry, uid = registry_with_worker()
    due = datetime.now(UTC) + timedelta(hours=1)
    sleeper = asyncio.create_task(registry.sleep_until(uid, due))
    await asyncio.sleep(0)
    registry.object_changed("ns", "Secret", "creds", "50")
    await asyncio.wait_for(sleeper, timeout=2)
    assert not woken(registry, uid), "the wake flag is consumed by the sleeper"


def test_an_echo_of_our_write_arriving_before_its_response_is_parked_for_the_writer() -> None:
    registry, uid = registry_with_worker()
    worker = registry.open(uid)
    worker.writing_target = True
    registry.object_changed("ns", "Secret", "tok", "13")
    assert not woken(registry, uid) and not worker.target_stale
    assert worker.target_event_during_write == "13"


def test_the_first_listing_seeds_the_versions_of_referenced_objects_for_a_while_only() -> None:
    registry = WorkerRegistry()
    registry.seed("Secret", {("ns", "creds"): "7", ("ns", "helm-release"): "8"})
    registry.objects_changed("Secret", [("ns", "creds", "9")])  # a change during the seed window updates it
    assert registry.is_referenced("ns", "Secret", "anything"), "while seeding, every change must reach the seed"
    worker = registry.open("uid-1")
    worker.references = frozenset({("Secret", "creds")})
    registry.track(worker, OAuthClientCredential.model_validate({
        "metadata": {"name": "r", "namespace": "ns", "uid": "uid-1"},
        "spec": {"tokenURL": "https://idp/token", "clientCredentialsSecretRef": {"name": "creds"},
                 "target": {"secretName": "tok"}}}))
    assert worker.watched_versions() == {("Secret", "creds"): "9"}, "the inputs are known without a read"
    registry.drop_seed()
    assert not registry.is_referenced("ns", "Secret", "helm-release"), "nothing unreferenced is kept after it"
    assert registry.is_referenced("ns", "Secret", "creds")
