"""``authMethod: kubernetes_service_account`` through the operator process: no static secret anywhere.

The real kube-apiserver mints the ServiceAccount tokens (TokenRequest), the test authorization server verifies
them against the cluster's JWKS as a federating server does. The minted tokens never reach a log (DEBUG), an
Event, status, a metric or the target Secret; and a resource naming a ServiceAccount that did not opt in, or an
audience it did not list, gets nothing minted at all (a tenant who may create resources but not pods cannot
obtain another workload's identity through the operator).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.authserver import AuthServer, FederatedTrust
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

ANNOTATION = "oauth-token-operator.dev/token-audiences"


def cluster_jwks(kube_env: EnvTest) -> dict[str, Any]:
    with kube_env.api_client() as api:
        keys = client.OpenidApi(api).get_service_account_issuer_open_id_keyset(_preload_content=False).data
    jwks: dict[str, Any] = json.loads(keys)
    return jwks


def occ(token_url: str, account: str, target: str, **assertion: Any) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientID": "torch-app", "authMethod": "kubernetes_service_account",
            "serviceAccountAssertion": {"serviceAccountName": account, **assertion},
            "target": {"secretName": target}}


def test_service_account_assertions_work_leak_nothing_and_need_the_opt_in(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, tmp_path: Path) -> None:
    client_id = f"torch-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client_id, auth_method="federated_jwt", federated=FederatedTrust(
        issuer=kube_env.service_account_issuer, jwks=cluster_jwks(kube_env),
        subject=f"system:serviceaccount:{namespace}:torch", audience=auth_server.token_url, max_lifetime=600))
    kube.core.create_namespaced_service_account(namespace, {"metadata": {
        "name": "torch", "annotations": {ANNOTATION: auth_server.token_url}}})
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "someone-else"}})
    operator = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace, "--log-level", "DEBUG"])
    operator.start()
    try:
        good = occ(auth_server.token_url, "torch", "tok")
        good["clientID"] = client_id
        kube.create_occ(namespace, "good", good)
        not_opted_in = occ(auth_server.token_url, "someone-else", "tok2")
        kube.create_occ(namespace, "not-opted-in", not_opted_in)
        other_audience = occ(auth_server.token_url, "torch", "tok3", audience="https://payments.example.com")
        kube.create_occ(namespace, "other-audience", other_audience)

        wait_for(lambda: kube.ready(namespace, "good").get("status") == "True", timeout=30, message="Ready")
        token = (kube.secret_data(namespace, "tok") or {})["access_token"]
        assert auth_server.accepts(token)
        claims = auth_server.accepted_federated_claims[-1]
        assert claims["sub"] == f"system:serviceaccount:{namespace}:torch" and claims["aud"] == [auth_server.token_url]

        for name, says in (("not-opted-in", f"annotate it with {ANNOTATION}"),
                           ("other-audience", "does not allow tokens for audience https://payments.example.com")):
            ready = wait_for(lambda n=name: kube.ready(namespace, n).get("reason") == "AssertionNotPermitted"  # type: ignore[misc]
                             and kube.ready(namespace, n), message=f"{name}: AssertionNotPermitted")
            assert ready["status"] == "False" and says in ready["message"]
            wait_for(lambda n=name: any(e.reason == "AssertionNotPermitted" and ANNOTATION in e.message  # type: ignore[misc]
                                        for e in kube.events(namespace, n)), message=f"{name}: Event names it")
        # Exactly the good resource's TokenRequest was made: nothing was minted for the refused ones.
        minted = operator.metric("oauth_token_operator_kube_requests_total", verb="create",
                                 resource="serviceaccounts/token")
        assert minted == auth_server.token_request_count(client_id) >= 1

        # The minted tokens are JWTs of the cluster's issuer; none of their signatures appears anywhere a
        # user or an attacker with read access to these could look.
        signatures = auth_server.received_assertion_signatures(client_id)
        assert signatures, "the server saw the assertions"
        places = {
            "log": operator.logs(),
            "metrics": operator.metrics(),
            "events": " ".join(e.message or "" for n in ("good", "not-opted-in", "other-audience")
                               for e in kube.events(namespace, n)),
            "status": json.dumps([kube.get_occ(namespace, n) for n in ("good", "not-opted-in", "other-audience")]),
            "target Secret": json.dumps(kube.secret_data(namespace, "tok")),
        }
        for where, text in places.items():
            assert not any(sig in text for sig in signatures), f"a minted token leaked into the {where}"
    finally:
        operator.stop()
