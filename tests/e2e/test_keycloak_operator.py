"""The operator as its own process keeps a Keycloak token in a Secret: with a client secret, and with no secret at
all (a ServiceAccount token minted by the real API server, verified by Keycloak's Kubernetes identity provider).

The stored token is checked by Keycloak's introspection endpoint, as the workload's resource server would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.support.envtest import EnvTest
from tests.support.keycloak import Keycloak, Realm
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

from oauth_token_operator.service_account_assertion import TOKEN_AUDIENCES_ANNOTATION

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def realm(keycloak: Keycloak, kube_env: EnvTest) -> Iterator[Realm]:
    """A realm that also trusts the test API server's ServiceAccount issuer (identity provider ``cluster``)."""
    created = Realm.create(keycloak, "oto-e2e")
    keycloak.admin.create_identity_provider(created.name, "cluster", "kubernetes",
                                            {"issuer": kube_env.service_account_issuer})
    binding = f"oto-e2e-issuer-discovery-{uuid.uuid4().hex[:6]}"
    with kube_env.api_client() as api:  # Keycloak fetches the issuer's discovery and JWKS anonymously
        k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding({
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:service-account-issuer-discovery"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                          "name": "system:unauthenticated"}]})
    yield created
    with kube_env.api_client() as api:
        k8s.RbacAuthorizationV1Api(api).delete_cluster_role_binding(binding)


SETTLED = {"CredentialsNotFound", "InvalidClient", "InvalidSpec", "AssertionNotPermitted"}
"""Ready=False reasons that no retry changes: the test can stop waiting and show the message."""


def stored_token(kube: Kube, namespace: str) -> str:
    def settled() -> dict[str, Any] | None:
        ready = kube.ready(namespace, "keycloak")
        return ready if ready.get("status") == "True" or ready.get("reason") in SETTLED else None

    ready = wait_for(settled, timeout=60, message="Ready=True (or a refusal)")
    assert (ready["status"], ready["reason"]) == ("True", "TokenIssued"), ready.get("message")
    data = kube.secret_data(namespace, "keycloak-token")
    assert data is not None
    return data["access_token"]


def test_client_secret_token_from_keycloak_in_the_secret(
        kube: Kube, realm: Realm, operator: OperatorProcess, namespace: str) -> None:
    client_id = realm.client("e2e-secret", secret="e2e-s3cret")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "e2e-s3cret"})
    kube.create_occ(namespace, "keycloak", {"issuerURL": realm.issuer, "clientCredentialsSecretRef": {"name": "creds"},
                                            "target": {"secretName": "keycloak-token"}})

    realm.assert_issued_to(stored_token(kube, namespace), client_id)


def test_service_account_token_from_keycloak_in_the_secret(
        kube: Kube, realm: Realm, operator: OperatorProcess, namespace: str) -> None:
    kube.core.create_namespaced_service_account(namespace, {"metadata": {
        "name": "workload", "annotations": {TOKEN_AUDIENCES_ANNOTATION: realm.issuer}}})
    client_id = realm.client("e2e-federated", "federated-jwt", attributes={
        "jwt.credential.issuer": "cluster", "jwt.credential.sub": f"system:serviceaccount:{namespace}:workload"})
    kube.create_occ(namespace, "keycloak", {
        "issuerURL": realm.issuer, "clientID": client_id, "authMethod": "kubernetes_service_account",
        "serviceAccountAssertion": {"serviceAccountName": "workload", "audience": realm.issuer},
        "target": {"secretName": "keycloak-token"}})

    realm.assert_issued_to(stored_token(kube, namespace), client_id)
