"""Which watch events wake a worker: real changes do, echoes of our own writes and repeats do not."""

from __future__ import annotations

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.kube.resource_watch import LEGACY_FINALIZER, ResourceEvent
from oauth_token_operator.workers import WorkerRegistry


class Recording(WorkerRegistry):
    """The registry with the scheduler's side recorded."""

    def __init__(self) -> None:
        self.woken: set[str] = set()
        self.ranks: dict[str, float] = {}
        self.forgotten: list[str] = []
        self.gone_resources: list[tuple[str, str]] = []
        self.released: list[ResourceEvent] = []
        super().__init__(wake=self._wake, forget=self.forgotten.append,
                         gone=lambda ns, name: self.gone_resources.append((ns, name)),
                         release_finalizer=self.released.append)


    def _wake(self, uid: str, rank: float) -> None:
        self.woken.add(uid)
        self.ranks[uid] = rank


def registry_with_worker() -> tuple[Recording, str]:
    registry = Recording()
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


def woken(registry: Recording, uid: str) -> bool:
    return uid in registry.woken


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
    registry.woken.clear()
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
    registry.woken.clear()
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


def test_an_echo_of_our_write_arriving_before_its_response_is_parked_for_the_writer() -> None:
    registry, uid = registry_with_worker()
    worker = registry.open(uid)
    worker.writing_target = True
    registry.object_changed("ns", "Secret", "tok", "13")
    assert not woken(registry, uid) and not worker.target_stale
    assert worker.target_event_during_write == "13"


def test_the_first_listing_seeds_the_versions_of_referenced_objects_for_a_while_only() -> None:
    registry = Recording()
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


def event(kind: str = "ADDED", uid: str = "uid-9", **fields: object) -> ResourceEvent:
    fields.setdefault("body", b"{}")
    return ResourceEvent(kind, uid, "ns", "r9", **fields)  # type: ignore[arg-type]


def test_a_new_resource_starts_at_once_and_its_body_is_kept() -> None:
    registry = Recording()
    registry.resources_changed([event(generation=1, body=b'{"v":1}')])
    assert registry.woken == {"uid-9"} and registry.body("uid-9") == b'{"v":1}'
    registry.woken.clear()
    registry.resources_changed([event("MODIFIED", generation=1, body=b'{"v":2}')])  # our own status write
    assert registry.woken == set() and registry.body("uid-9") == b'{"v":2}', "the newest copy, nobody woken"
    registry.resources_changed([event("MODIFIED", generation=2, body=b'{"v":3}')])
    assert registry.woken == {"uid-9"}


def test_after_a_start_every_resource_waits_for_the_first_listing_of_its_inputs() -> None:
    # A new resource too: if it read its credentials Secret before the Secret listing, and the Secret was
    # deleted in between, neither the read nor the listing would show the deletion.
    registry = Recording()
    registry.expect_watches(2)
    registry.resources_changed([event(holds_token=True), event(uid="fresh")])
    registry.watch_synced()
    assert registry.woken == set(), "one of the two watches has not listed yet"
    registry.release_waiting()  # the listing took too long: start anyway
    assert registry.woken == {"fresh", "uid-9"}


async def test_the_resources_found_before_the_listing_start_when_it_is_done() -> None:
    registry = Recording()
    registry.expect_watches(1)
    registry.resources_changed([event(uid="fresh")])
    assert registry.woken == set()
    registry.watch_synced()
    assert registry.woken == {"fresh"}
    registry.resources_changed([event(uid="later")])
    assert registry.woken == {"fresh", "later"}, "after the listing a new resource starts at once"


def test_a_deleted_or_deleting_resource_stops_and_an_old_finalizer_is_released() -> None:
    registry = Recording()
    registry.resources_changed([event(), event(uid="other")])
    registry.resources_changed([event("MODIFIED", deleting=True, finalizers=(LEGACY_FINALIZER, "theirs"))])
    assert registry.forgotten == ["uid-9"] and registry.gone_resources == [("ns", "r9")]
    assert registry.get("uid-9") is None and registry.body("uid-9") is None
    assert [e.finalizers for e in registry.released] == [(LEGACY_FINALIZER, "theirs")]
    registry.resources_changed([event("DELETED", uid="other")])
    assert registry.forgotten == ["uid-9", "other"] and len(registry) == 0


def test_a_pause_forgets_what_the_workers_knew() -> None:
    registry, uid = registry_with_worker()
    registry.reset()
    worker = registry.get(uid)
    assert worker is not None and not worker.loaded and worker.known_versions == {}
    registry.object_changed("ns", "Secret", "creds", "60")
    assert not woken(registry, uid), "its references are tracked again when it next runs"


def test_after_a_start_the_soonest_due_run_first_and_resources_without_a_token_before_them() -> None:
    registry = Recording()
    registry.resources_changed([
        event(uid="later", holds_token=True, next_refresh=2000.0),
        event(uid="sooner", holds_token=True, next_refresh=1000.0),
        event(uid="new"),
    ])
    assert registry.ranks == {"later": 2000.0, "sooner": 1000.0, "new": 0.0}
    registry.resources_changed([event("MODIFIED", uid="later", generation=5, holds_token=True, next_refresh=2000.0)])
    assert registry.ranks["later"] == 0.0, "a change is handled before the start-up backlog"
