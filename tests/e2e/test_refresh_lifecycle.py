"""Restarts, deletions, rotations and conflicts: the operator's promises when things around it change."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess


def spec(token_url: str, secret_name: str = "creds", target: str = "tok", **extra: Any) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": secret_name},
            "target": {"secretName": target}, **extra}


def is_ready(kube: Kube, namespace: str, name: str) -> bool:
    return kube.ready(namespace, name).get("status") == "True"


def test_restart_requests_no_token_while_tokens_are_valid(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, client_id: str,
        tmp_path: Path) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    first = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace], name="first").start()
    try:
        for i in range(5):
            kube.create_occ(namespace, f"r{i}", spec(auth_server.token_url, target=f"tok{i}"))
        wait_for(lambda: all(is_ready(kube, namespace, f"r{i}") for i in range(5)), message="5 resources Ready")
        before = {i: (kube.get_occ(namespace, f"r{i}") or {})["status"] for i in range(5)}
    finally:
        first.stop()
    count = auth_server.token_request_count(client_id)
    assert count == 5

    second = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace], name="second").start()
    try:
        # A marker resource created after the restart: once it is Ready, the restarted operator has listed
        # (and started a worker for) every resource.
        kube.create_occ(namespace, "marker", spec(auth_server.token_url, target="marker-tok"))
        wait_for(lambda: is_ready(kube, namespace, "marker"), message="marker Ready")
        assert auth_server.token_request_count(client_id) == count + 1, "only the new resource may get a token"
        time.sleep(3)  # every worker's first cycle is over (they start as soon as the watches have listed)
        reads = second.metric("oauth_token_operator_kube_requests_total", verb="get", resource="secrets")
        # The marker reads the credentials Secret (for its token request) and looks for its target; the five
        # targets are as the first operator's last writes left them (status.targetResourceVersion), unread.
        assert reads == 2, f"{reads:.0f} Secret reads after the restart; 2 expected"
        for i in range(5):
            status = (kube.get_occ(namespace, f"r{i}") or {})["status"]
            assert status["lastRefreshTime"] == before[i]["lastRefreshTime"]
            assert status["nextRefreshTime"] == before[i]["nextRefreshTime"]
    finally:
        second.stop()
        print(second.logs()[-5000:])


def test_delete_with_endpoint_down_leaves_no_finalizer_and_collects_the_secret(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "gone", spec(auth_server.token_url))
    wait_for(lambda: is_ready(kube, namespace, "gone"), message="Ready")
    auth_server.set_down(True)
    try:
        kube.request_refresh(namespace, "gone")
        wait_for(lambda: kube.ready(namespace, "gone").get("reason") == "EndpointUnavailable",
                 message="EndpointUnavailable")
        kube.delete_occ(namespace, "gone")
        wait_for(lambda: kube.get_occ(namespace, "gone") is None, timeout=20, message="resource deleted")
        wait_for(lambda: kube.secret(namespace, "tok") is None, timeout=30,
                 message="target Secret garbage-collected")
    finally:
        auth_server.set_down(False)


def test_resources_carry_no_finalizer_and_one_left_by_an_older_version_does_not_block_deletion(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    # Up to this version Kopf put its finalizer on every resource (it ran one daemon per resource). An upgraded
    # install still has it on its resources: their deletion must not hang now that nobody runs those daemons.
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "new", spec(auth_server.token_url, target="new-tok"))
    kube.create_occ(namespace, "upgraded", spec(auth_server.token_url, target="old-tok"))
    kube.patch_occ(namespace, "upgraded", {"metadata": {"finalizers": ["oauth-token-operator.dev/finalizer"]}})
    wait_for(lambda: is_ready(kube, namespace, "new") and is_ready(kube, namespace, "upgraded"), message="Ready")
    assert not (kube.get_occ(namespace, "new") or {})["metadata"].get("finalizers"), "nothing to finalize"
    for name in ("new", "upgraded"):
        kube.delete_occ(namespace, name)
    wait_for(lambda: kube.get_occ(namespace, "upgraded") is None and kube.get_occ(namespace, "new") is None,
             timeout=20, message=f"both deleted ({operator.log_path})")
    wait_for(lambda: kube.secret(namespace, "old-tok") is None and kube.secret(namespace, "new-tok") is None,
             timeout=30, message="their target Secrets garbage-collected")


def test_deleted_credentials_report_but_keep_the_token_and_recreating_recovers(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    wait_for(lambda: is_ready(kube, namespace, "r"), message="Ready")
    token = (kube.secret_data(namespace, "tok") or {})["access_token"]

    kube.delete_secret(namespace, "creds")
    ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "CredentialsNotFound"
                     and kube.ready(namespace, "r"), message="CredentialsNotFound")
    assert ready["status"] == "False"
    assert f"Secret {namespace}/creds not found" in ready["message"]
    assert "current token valid for" in ready["message"]
    assert (kube.secret_data(namespace, "tok") or {})["access_token"] == token

    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    wait_for(lambda: is_ready(kube, namespace, "r"), message="Ready after the Secret is back")


def test_rotated_client_secret_is_used_at_once_without_any_annotation(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    # The seeds' portals rotate keys by adding a pair and revoking the old one.
    auth_server.add_client(client_id, secret="pair-1")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "pair-1"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    wait_for(lambda: is_ready(kube, namespace, "r"), message="Ready")
    old = (kube.secret_data(namespace, "tok") or {})["access_token"]
    count = auth_server.token_request_count(client_id)

    auth_server.set_secret(client_id, "pair-2")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "pair-2"})
    wait_for(lambda: (kube.secret_data(namespace, "tok") or {}).get("access_token") != old, timeout=15,
             message="a new token right after the rotation")
    assert auth_server.token_request_count(client_id) == count + 1
    assert is_ready(kube, namespace, "r")


def test_a_secret_we_did_not_create_is_never_taken_over(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.apply_secret(namespace, "tok", {"keep": "me"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "TargetSecretConflict"
                     and kube.ready(namespace, "r"), message="TargetSecretConflict")
    assert ready["status"] == "False" and "was not created by this resource" in ready["message"]
    assert kube.secret_data(namespace, "tok") == {"keep": "me"}
    assert auth_server.token_request_count(client_id) == 0
    wait_for(lambda: any(e.reason == "TargetSecretConflict" and e.type == "Warning"
                         for e in kube.events(namespace, "r")), message="Warning Event")

    # The user removes the clash: the operator creates its own Secret.
    kube.delete_secret(namespace, "tok")
    wait_for(lambda: is_ready(kube, namespace, "r"), message="Ready once the clash is gone")


def test_a_deleted_target_secret_is_recreated(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    wait_for(lambda: kube.secret_data(namespace, "tok"), message="token Secret")
    kube.delete_secret(namespace, "tok")
    data = wait_for(lambda: kube.secret_data(namespace, "tok"), timeout=15, message="token Secret recreated")
    assert auth_server.accepts(data["access_token"])


def test_steady_refresh_costs_one_token_request_and_two_writes(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s", token_lifetime=20)  # refreshed every ~10 s
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    wait_for(lambda: is_ready(kube, namespace, "r"), message="Ready")
    seen = {(kube.secret_data(namespace, "tok") or {})["access_token"]}
    wait_for(lambda: seen.add((kube.secret_data(namespace, "tok") or {})["access_token"]) or len(seen) >= 2,
             timeout=30, message="first refresh")
    tokens_before = auth_server.token_request_count(client_id)
    kinds = [("get", "secrets"), ("get", "configmaps"), ("create", "secrets"), ("update", "secrets"),
             ("patch", "oauthclientcredentials/status"), ("create", "events")]

    def counts() -> dict[tuple[str, str], float]:
        return {(v, r): operator.metric("oauth_token_operator_kube_requests_total", verb=v, resource=r)
                for v, r in kinds}

    before = counts()
    refreshes = 3
    wait_for(lambda: seen.add((kube.secret_data(namespace, "tok") or {})["access_token"]) or
             len(seen) >= 2 + refreshes, timeout=60, interval=0.25, message=f"{refreshes} more refreshes")
    wait_for(lambda: counts()[("patch", "oauthclientcredentials/status")] >=
             before[("patch", "oauthclientcredentials/status")] + refreshes, message="status written")
    delta = {k: v - before[k] for k, v in counts().items()}
    tokens = auth_server.token_request_count(client_id) - tokens_before
    print(f"per refresh over {refreshes}: token requests {tokens / refreshes:.2f}, kube requests {delta}")
    assert tokens == refreshes
    assert delta[("get", "secrets")] == delta[("get", "configmaps")] == 0, (
        "a steady refresh reads nothing: references are cached and invalidated by watch events")
    assert delta[("create", "secrets")] == 0
    assert delta[("update", "secrets")] == refreshes
    assert delta[("patch", "oauthclientcredentials/status")] == refreshes
    # This test talks plain http (allowed by a flag), which is flagged by a Warning Event on every use; with
    # https a steady refresh posts no Event at all.
    assert delta[("create", "events")] == refreshes


def test_resources_sharing_a_credentials_secret_read_it_once(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    # shared_reads.py: one read per version of a referenced object, however many resources reference it.
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})

    def reads() -> float:
        return operator.metric("oauth_token_operator_kube_requests_total", verb="get", resource="secrets")

    before = reads()
    names = [f"r{i}" for i in range(5)]
    for name in names:
        kube.create_occ(namespace, name, spec(auth_server.token_url, target=f"{name}-tok"))
    wait_for(lambda: all(is_ready(kube, namespace, n) for n in names), message="5 Ready")
    assert reads() - before == len(names) + 1, "each target Secret once, the shared credentials once"

    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s", "rotated": "yes"})
    wait_for(lambda: auth_server.token_request_count(client_id) >= 2 * len(names), timeout=20,
             message="every resource refreshed after the rotation")
    assert reads() - before == len(names) + 2, "the new version once"


def test_an_unusable_signing_key_is_invalid_spec_with_a_warning(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    # Valid for the API server and the models, unusable at run time: the key Secret does not hold a PEM key.
    kube.apply_secret(namespace, "creds", {"client_id": client_id})
    kube.apply_secret(namespace, "jwt-key", {"private_key": "CANARY-not-a-pem-key"})
    kube.create_occ(namespace, "bad", spec(auth_server.token_url, authMethod="private_key_jwt",
                                          privateKeySecretRef={"name": "jwt-key"}))
    ready = wait_for(lambda: kube.ready(namespace, "bad").get("reason") == "InvalidSpec"
                     and kube.ready(namespace, "bad"), message="InvalidSpec")
    assert ready["status"] == "False" and "key" in ready["message"].lower()
    assert "CANARY" not in ready["message"]
    wait_for(lambda: any(e.reason == "InvalidSpec" and e.type == "Warning" for e in kube.events(namespace, "bad")),
             message="Warning Event")
    assert auth_server.token_request_count(client_id) == 0
