"""An endpoint outage: resources sharing it share its backoff, keep their tokens, and recover together."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

N = 12


def test_resources_on_a_dead_endpoint_share_its_backoff_and_recover(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str) -> None:
    clients = [f"outage-{uuid.uuid4().hex[:6]}" for _ in range(N)]
    for i, cid in enumerate(clients):
        auth_server.add_client(cid, secret="s", token_lifetime=20)  # every resource comes due within ~10 s
        kube.apply_secret(namespace, f"creds{i}", {"client_id": cid, "client_secret": "s"})
        kube.create_occ(namespace, f"r{i}", {"tokenURL": auth_server.token_url,
                                             "clientCredentialsSecretRef": {"name": f"creds{i}"},
                                             "target": {"secretName": f"tok{i}"}})
    wait_for(lambda: all(kube.ready(namespace, f"r{i}").get("status") == "True" for i in range(N)),
             message="all Ready")

    def requests() -> int:
        return sum(auth_server.token_request_count(cid) for cid in clients)

    auth_server.set_down(True)
    try:
        before = requests()
        window = 30.0
        start = time.monotonic()
        while time.monotonic() - start < window:  # observe the outage for a while: this is the measurement
            time.sleep(1)
        sent = requests() - before
        # The refreshes come due within a few seconds of each other (as fast as the resources were created):
        # those due before the first failure is known are sent (at most N requests). After that, alone, each
        # resource would retry at ~+5 and +15 s within the window (2 x N more); sharing the endpoint's circuit,
        # everybody waits for one probe per backoff step. (On a loaded machine the creations spread out, so
        # fewer than N may be sent before the circuit opens; the bound below holds either way.)
        print(f"{N} resources, {window:.0f}s of outage: {sent} token requests (unshared: ~{3 * N})")
        assert sent >= 1
        assert sent <= N + 4, f"{sent} requests: resources on one endpoint must share its backoff"
        conditions = [kube.ready(namespace, f"r{i}") for i in range(N)]
        assert all(c["reason"] == "EndpointUnavailable" and c["status"] == "False" for c in conditions)
        assert any("shared by every resource using this endpoint" in c["message"] for c in conditions)
        assert all("current token" in c["message"] for c in conditions)
        tokens = {i: (kube.secret_data(namespace, f"tok{i}") or {})["access_token"] for i in range(N)}
    finally:
        auth_server.set_down(False)
    # The endpoint is back. The circuit has backed off (its next probe may be a minute away), but a user who
    # knows it is back can ask for a refresh: that request goes through, and its success releases every other
    # resource waiting for the endpoint at once.
    kube.request_refresh(namespace, "r0")
    wait_for(lambda: all(kube.ready(namespace, f"r{i}").get("status") == "True" for i in range(N)), timeout=20,
             message="every resource recovers as soon as one request succeeds")
    assert all((kube.secret_data(namespace, f"tok{i}") or {})["access_token"] != tokens[i] for i in range(N))


def test_plain_http_is_refused_unless_allowed(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, client_id: str,
        tmp_path: Path) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    strict = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace],
                             allow_insecure_http=False).start()
    try:
        kube.create_occ(namespace, "r", {"tokenURL": auth_server.token_url,
                                         "clientCredentialsSecretRef": {"name": "creds"},
                                         "target": {"secretName": "tok"}})
        ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "InvalidSpec"
                         and kube.ready(namespace, "r"), message="InvalidSpec for plain http")
        assert "http://" in ready["message"] and "allow" in ready["message"].lower()
        assert auth_server.token_request_count(client_id) == 0
        assert kube.secret(namespace, "tok") is None
    finally:
        strict.stop()
