"""``target.template`` shapes the Secret for its consumers, and ``rolloutRestartTargets`` restarts workloads
that cannot pick a new token up by themselves (issue 7 item 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
LITERAL = "$(whoami) `id` {{ .access_token }} {{access_token}} $access_token $HOME"

TEMPLATE: dict[str, Any] = {
    "data": {
        "Authorization": "Bearer ${access_token}",
        "token.properties": "expires=${expires_at}\nscope=${scope}\ntype=${token_type}\n",
        "not-a-template": LITERAL,
    },
    "labels": {"team": "a", "app.kubernetes.io/part-of": "torch"},
    "annotations": {"owner": "team-a@example.com"},
}


def deployment(name: str) -> client.V1Deployment:
    """A Deployment whose pods never run here (no scheduler, no kubelet): only its pod template matters."""
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app",
                                                                     image="registry.invalid/torch-client:1")]))))


def restarted_at(kube: Kube, namespace: str, name: str) -> str:
    """The pod template's restartedAt annotation ("" when there is none)."""
    spec = kube.apps.read_namespaced_deployment(name, namespace).spec
    metadata = spec.template.metadata if spec is not None else None
    return str(((metadata.annotations if metadata is not None else None) or {}).get(RESTARTED_AT, ""))


def token_in(kube: Kube, namespace: str) -> str:
    data = kube.secret_data(namespace, "torch-token") or {}
    return data.get("Authorization", "").removeprefix("Bearer ")


def test_template_shapes_the_secret(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s", scopes=["api:read", "api:write"])
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "torch", {
        "tokenURL": auth_server.token_url, "clientCredentialsSecretRef": {"name": "creds"}, "scopes": ["api:read"],
        "target": {"secretName": "torch-token", "template": TEMPLATE}})
    wait_for(lambda: kube.ready(namespace, "torch").get("reason") == "TokenIssued", message="Ready")

    data = kube.secret_data(namespace, "torch-token")
    assert data is not None
    assert set(data) == set(TEMPLATE["data"]), "exactly the template's keys, not the default ones"
    token = data["Authorization"].removeprefix("Bearer ")
    assert data["Authorization"] == f"Bearer {token}" and auth_server.accepts(token)
    status = (kube.get_occ(namespace, "torch") or {})["status"]
    assert data["token.properties"] == f"expires={status['expiresAt']}\nscope=api:read\ntype=Bearer\n"
    assert data["not-a-template"] == LITERAL, "only ${name} placeholders are replaced; nothing is evaluated"

    secret = kube.secret(namespace, "torch-token")
    assert secret.metadata.labels == {**TEMPLATE["labels"], "app.kubernetes.io/managed-by": "oauth-token-operator"}
    assert secret.metadata.annotations["owner"] == "team-a@example.com"
    assert secret.type == "Opaque"


def test_rollout_restart_after_each_new_token(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, client_id: str,
        tmp_path: Path) -> None:
    # Rollout restarts are off unless the operator is started with them (the install then grants the RBAC).
    operator = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace],
                               env={"OAUTH_TOKEN_OPERATOR_ENABLE_ROLLOUT_RESTARTS": "true"}).start()
    try:
        _rollout_restart_after_each_new_token(kube, auth_server, namespace, client_id)
    finally:
        operator.stop()


def _rollout_restart_after_each_new_token(kube: Kube, auth_server: AuthServer, namespace: str,
                                          client_id: str) -> None:
    auth_server.add_client(client_id, secret="s")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.apps.create_namespaced_deployment(namespace, deployment("torch-client"))
    assert restarted_at(kube, namespace, "torch-client") == ""
    kube.create_occ(namespace, "torch", {
        "tokenURL": auth_server.token_url, "clientCredentialsSecretRef": {"name": "creds"},
        "target": {"secretName": "torch-token", "template": {"data": {"Authorization": "Bearer ${access_token}"}}},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "torch-client"}]})

    def changed_from(previous: str) -> str:  # "" (falsy) until it differs
        current = restarted_at(kube, namespace, "torch-client")
        return current if current != previous else ""

    def token_other_than(previous: str) -> str:
        current = token_in(kube, namespace)
        return current if current != previous else ""

    stamp = wait_for(lambda: changed_from(""), message="a restart for the first token")
    token = wait_for(lambda: token_other_than(""), message="the first token in the Secret")
    for _ in range(2):  # each forced refresh, at once: a new token, then a new restart
        kube.request_refresh(namespace, "torch")
        token = wait_for(lambda: token_other_than(token), message="a new token")  # noqa: B023 - called at once
        stamp = wait_for(lambda: changed_from(stamp),  # noqa: B023 - called at once
                         message="the pod template's restartedAt annotation changed")
    assert kube.ready(namespace, "torch")["reason"] == "TokenIssued"
    assert not [e for e in kube.events(namespace, "torch") if e.reason == "RolloutRestartFailed"]
