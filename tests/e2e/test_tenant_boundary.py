"""The tenant boundary, proven by refusal against a real API server: what a resource may not make the operator do.

* With its default settings the operator refuses a loopback endpoint (the stand-in for the metadata service
  and the API server, which the default denied networks also cover) without sending anything.
* An internal service's page, reached through a resource's tokenURL, never comes back through the resource's
  status, its Events or the operator's log.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.gateways import ScriptedResponse, ScriptedServer
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

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
