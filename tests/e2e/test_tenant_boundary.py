"""The tenant boundary, proven by refusal against a real API server: what a resource may not make the operator do.

* With its default settings the operator refuses a loopback endpoint (the stand-in for the metadata service
  and the API server, which the default denied networks also cover) without sending anything.
* An internal service's page, reached through a resource's tokenURL, never comes back through the resource's
  status, its Events or the operator's log.
* One tenant's broken TLS settings for an endpoint do not stop another tenant's resources that reach the same
  endpoint with their own, working, settings.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.gateways import ScriptedResponse, ScriptedServer
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.pki import TestCA

INTERNAL = "internal-status-page-canary-3b7e"


def spec(token_url: str) -> dict[str, object]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": "creds"}, "target": {"secretName": "tok"}}


def test_default_settings_refuse_a_loopback_endpoint_without_a_request(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, client_id: str,
        tmp_path: Path) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    operator = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace],
                               allow_loopback_endpoints=False).start()
    try:
        kube.create_occ(namespace, "r", spec(auth_server.token_url))
        ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "InvalidSpec"
                         and kube.ready(namespace, "r"), message="InvalidSpec for a loopback endpoint")
        assert "127.0.0.1 is 127.0.0.1, a loopback address" in ready["message"]
        # The test API server listens on 127.0.0.1 too: the operator added its address to the default list.
        assert "(the API server's)" in ready["message"]
        assert "OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS" in ready["message"]
        warnings = wait_for(lambda: [e for e in kube.events(namespace, "r") if e.reason == "InvalidSpec"],
                            message="a Warning Event")
        assert "loopback" in warnings[0].message
        assert auth_server.token_request_count(client_id) == 0, "nothing may be sent to a denied address"
        assert kube.secret(namespace, "tok") is None
    finally:
        operator.stop()


def test_an_internal_page_never_reaches_status_events_or_logs(
        kube: Kube, kube_env: EnvTest, namespace: str, tmp_path: Path) -> None:
    page = f"<html><body>db_password={INTERNAL}</body></html>"
    text = f"build {INTERNAL} ok\n"
    with ScriptedServer(default=ScriptedResponse.text(text, 401)) as internal:
        internal.push(ScriptedResponse.text(page, 500, content_type="text/html; charset=utf-8"))
        kube.apply_secret(namespace, "creds", {"client_id": "c", "client_secret": "s"})
        operator = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace]).start()
        try:
            kube.create_occ(namespace, "r", spec(internal.token_url))
            ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "InvalidClient"
                             and kube.ready(namespace, "r"), timeout=60,
                             message="the 401 text page (after the 500 HTML page) is reported")
            assert "401 Unauthorized with a" in ready["message"] and "text/plain body" in ready["message"]
            events = kube.events(namespace, "r")
            assert {e.reason for e in events} >= {"EndpointUnavailable", "InvalidClient"}
            shown = [ready["message"], *(e.message for e in events), operator.logs()]
        finally:
            operator.stop()
        shown.append(operator.logs())
    for where in shown:
        assert INTERNAL not in where and "db_password" not in where, where


def test_with_the_secret_label_required_an_unlabelled_secret_is_never_sent_anywhere(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, client_id: str,
        tmp_path: Path) -> None:
    # A tenant who may create resources but not read Secrets points one at a Secret nobody opted in.
    auth_server.add_client(client_id, secret="CANARY-not-opted-in")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "CANARY-not-opted-in"})
    operator = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace],
                               env={"OAUTH_TOKEN_OPERATOR_REQUIRE_SECRET_LABEL": "true"}).start()
    try:
        kube.create_occ(namespace, "r", spec(auth_server.token_url))
        ready = wait_for(lambda: kube.ready(namespace, "r").get("reason") == "SecretNotPermitted"
                         and kube.ready(namespace, "r"), message="SecretNotPermitted")
        assert ready["status"] == "False"
        assert "oauth-token-operator.dev/allow-read=true" in ready["message"]
        wait_for(lambda: any(e.reason == "SecretNotPermitted" and e.type == "Warning"
                             for e in kube.events(namespace, "r")), message="a Warning Event")
        assert auth_server.token_request_count(client_id) == 0, "nothing was sent"
        assert kube.secret_data(namespace, "tok") is None
        # Whoever may write the Secret opts it in: the operator (watching labelled Secrets only) sees it at once.
        kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "CANARY-not-opted-in"},
                          labels={"oauth-token-operator.dev/allow-read": "true"})
        wait_for(lambda: kube.ready(namespace, "r").get("status") == "True", timeout=20, message="Ready once labelled")
        assert auth_server.accepts((kube.secret_data(namespace, "tok") or {}).get("access_token", ""))
        assert "CANARY" not in operator.logs()
    finally:
        operator.stop()


def test_one_tenants_wrong_ca_bundle_does_not_stop_another_tenant_on_the_same_endpoint(
        kube: Kube, kube_env: EnvTest, tmp_path: Path) -> None:
    # Both tenants use one HTTPS token endpoint. Tenant A trusts the wrong CA: its requests fail certificate
    # verification, which says nothing about the endpoint's health for anybody whose CA bundle is right.
    right, wrong = TestCA(tmp_path / "right"), TestCA(tmp_path / "wrong", common_name="somebody else's CA")
    tenant_a, tenant_b = f"tenant-a-{uuid.uuid4().hex[:6]}", f"tenant-b-{uuid.uuid4().hex[:6]}"
    for name in (tenant_a, tenant_b):
        kube.create_namespace(name)
    operator = None
    try:
        with AuthServer(tls=right) as server:
            for tenant, ca in ((tenant_a, wrong), (tenant_b, right)):
                server.add_client(tenant, secret="s")
                kube.apply_secret(tenant, "creds", {"client_id": tenant, "client_secret": "s"})
                kube.apply_configmap(tenant, "idp-ca", {"ca.crt": ca.cert_pem})
            operator = OperatorProcess(kube_env.kubeconfig, tmp_path,
                                       args=["--namespace", tenant_a, "--namespace", tenant_b]).start()

            def with_ca(token_url: str) -> dict[str, object]:
                return {**spec(token_url), "tls": {"caBundleRef": {"kind": "ConfigMap", "name": "idp-ca"}}}

            kube.create_occ(tenant_a, "r", with_ca(server.token_url))
            # Let A fail a few times, so that a circuit for the endpoint would stay open for 20 s or more.
            wait_for(lambda: ((kube.get_occ(tenant_a, "r") or {}).get("status") or {}).get(
                "consecutiveFailures", 0) >= 3, timeout=60, message="tenant A failing repeatedly")
            failed = kube.ready(tenant_a, "r")
            assert failed["reason"] == "EndpointUnavailable"
            assert "certificate verification failed" in failed["message"]

            kube.create_occ(tenant_b, "r", with_ca(server.token_url))
            ready = wait_for(lambda: kube.ready(tenant_b, "r").get("status") == "True" and kube.ready(tenant_b, "r"),
                             timeout=10, message="tenant B Ready while tenant A keeps failing")
            assert ready["reason"] == "TokenIssued"
            assert server.accepts((kube.secret_data(tenant_b, "tok") or {}).get("access_token", ""))
            assert not [e for e in kube.events(tenant_b, "r") if "certificate" in e.message], (
                "tenant A's failure must not be reported on tenant B's resource")
    finally:
        if operator is not None:
            operator.stop()
        for name in (tenant_a, tenant_b):
            kube.delete_namespace(name)
