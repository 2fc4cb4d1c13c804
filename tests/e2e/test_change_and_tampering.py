"""Change under a running operator: a spec edit, a hand-edited Secret, a write the API server refuses.

Each of these was a defect found by fault testing (the core rebuild): the spec edit was ignored for an hour,
the tampered Secret stayed tampered with while Ready=True, and the refused write crashed the daemon into a
loop of new tokens with no condition and no Event.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.authserver import AuthServer
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess


def spec(token_url: str, **extra: Any) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": "creds"},
            "target": {"secretName": "tok"}, **extra}


def token_in_secret(kube: Kube, namespace: str) -> str | None:
    return (kube.secret_data(namespace, "tok") or {}).get("access_token")


@pytest.fixture
def second_server() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


def test_a_spec_edit_takes_effect_at_once(kube: Kube, auth_server: AuthServer, second_server: AuthServer,
                                          operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    second_server.add_client(client_id, secret="s", scopes=("api:read", "reports"))
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    wait_for(lambda: kube.ready(namespace, "r").get("status") == "True", message="Ready")
    first = token_in_secret(kube, namespace)

    # The user fixes the URL and the scope of a working resource: the very next token comes from the new
    # server with the new scope, and status says so, within seconds rather than at the next refresh.
    kube.patch_occ(namespace, "r", {"spec": {"tokenURL": second_server.token_url, "scopes": ["reports"]}})
    wait_for(lambda: token_in_secret(kube, namespace) not in (None, first), timeout=20,
             message="a new token after the spec edit")
    assert second_server.token_request_count(client_id, granted=True) == 1
    assert second_server.accepts(token_in_secret(kube, namespace) or "")
    request = second_server.requests[-1]
    assert request.form_value("scope") == "reports"
    status = wait_for(lambda: (kube.get_occ(namespace, "r") or {}).get("status", {}).get("tokenEndpoint")
                      == second_server.token_url and kube.get_occ(namespace, "r"), message="status names it")
    assert status["status"]["observedGeneration"] == status["metadata"]["generation"]
    assert auth_server.token_request_count(client_id) == 1, "the old URL is never asked again"


def test_a_tampered_target_secret_is_repaired(kube: Kube, auth_server: AuthServer, operator: OperatorProcess,
                                              namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "r", spec(auth_server.token_url))
    wait_for(lambda: kube.ready(namespace, "r").get("status") == "True", message="Ready")
    good = token_in_secret(kube, namespace)
    requests = auth_server.token_request_count(client_id)

    # Somebody overwrites the token by hand (a strategic-merge patch keeps our labels and owner).
    garbage = base64.b64encode(b"garbage").decode()
    kube.core.patch_namespaced_secret("tok", namespace, {"data": {"access_token": garbage}})
    wait_for(lambda: token_in_secret(kube, namespace) == good, timeout=15, message="the token written back")
    assert auth_server.token_request_count(client_id) == requests, "repaired from memory, no new request"
    wait_for(lambda: any(e.reason == "TargetSecretRepaired" and e.type == "Warning"
                         for e in kube.events(namespace, "r")), message="a Warning Event says so")

    # ...or deletes the key: same.
    kube.core.patch_namespaced_secret("tok", namespace, [{"op": "remove", "path": "/data/access_token"}])
    wait_for(lambda: token_in_secret(kube, namespace) == good, timeout=15, message="the key restored")
    assert auth_server.accepts(good or "")
    assert kube.ready(namespace, "r").get("status") == "True"


def test_a_write_the_api_server_refuses_is_reported_and_does_not_loop(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    # The CRD accepts any label value; the API server refuses this one on the Secret.
    bad_target = {"secretName": "tok", "template": {"labels": {"team": "not a valid label!"}}}
    kube.create_occ(namespace, "r", spec(auth_server.token_url, target=bad_target))
    ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "InvalidSpec" and kube.ready(namespace, "r"),
                     message="InvalidSpec")
    assert ready["status"] == "False"
    assert f"refused Secret {namespace}/tok" in ready["message"] and "label" in ready["message"]
    wait_for(lambda: [e for e in kube.events(namespace, "r") if e.reason == "InvalidSpec"], message="Warning Event")
    requests = auth_server.token_request_count(client_id)
    time.sleep(8)  # long enough for a crash-and-restart loop to show; the assertion is on counts, not timing
    assert auth_server.token_request_count(client_id) == requests == 1, "no new token per retry"
    assert len([e for e in kube.events(namespace, "r") if e.reason == "InvalidSpec"]) == 1
    assert "Traceback" not in operator.logs()

    # Fixing the spec gets a token at once.
    kube.patch_occ(namespace, "r", {"spec": {"target": {"secretName": "tok", "template": {"labels": {"team": "a"}}}}})
    wait_for(lambda: kube.ready(namespace, "r").get("status") == "True", timeout=20, message="Ready after the fix")
    assert auth_server.accepts(token_in_secret(kube, namespace) or "")
