"""The envtest control plane is real: pinned version, garbage collection,
namespace deletion, RBAC and ServiceAccount tokens."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.support.envtest import EnvTest, pinned_k8s_version


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def gone(read: Callable[[], Any]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    return check


def test_version_is_pinned(kube_env: EnvTest, admin: client.ApiClient) -> None:
    info = client.VersionApi(admin).get_code()
    binary = subprocess.run(
        [str(kube_env.assets / "kube-apiserver"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert binary == f"Kubernetes {info.git_version}"
    if not os.environ.get("KUBEBUILDER_ASSETS"):
        assert info.git_version == pinned_k8s_version()


def test_owner_deletion_garbage_collects_dependents(admin: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "b"})
    )
    assert owner.metadata is not None and owner.metadata.uid
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="dependent",
                owner_references=[
                    client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
                ],
            ),
            data={"c": "d"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace, body=client.V1DeleteOptions(propagation_policy="Background"))
    wait_for(
        gone(lambda: core.read_namespaced_config_map("dependent", namespace)),
        "the garbage collector to delete the dependent ConfigMap",
    )


def test_namespace_deletion_completes(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    # The serviceaccount controller is real too: it creates the 'default' SA.
    wait_for(
        lambda: any(
            sa.metadata is not None and sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(name).items
        ),
        "the 'default' ServiceAccount",
    )
    core.delete_namespace(name)
    wait_for(gone(lambda: core.read_namespace(name)), "the namespace controller to finish deleting the namespace")


def test_rbac_denies_service_account_until_granted(
    kube_env: EnvTest, admin: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(admin)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="probe"))
    )
    token_request = core.create_namespaced_service_account_token(
        "probe",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[kube_env.service_account_issuer], expiration_seconds=600)
        ),
    )
    assert token_request.status is not None and token_request.status.token
    token = token_request.status.token

    with kube_env.api_client(kube_env.kubeconfig_for_token(token, tmp_path / "probe.kubeconfig")) as sa_api:
        # The token authenticates (this is not a 401) ...
        review = client.AuthenticationV1Api(sa_api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status is not None and review.status.user_info is not None
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:probe"

        # ... but RBAC grants it nothing.
        sa_core = client.CoreV1Api(sa_api)
        with pytest.raises(ApiException) as denied:
            sa_core.list_namespaced_secret(namespace)
        assert denied.value.status == 403

        # Granting a Role makes the same call succeed: RBAC really is the authorizer.
        rbac = client.RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-secrets"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="read-secrets"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-secrets"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="probe", namespace=namespace)],
            ),
        )

        def allowed() -> bool:
            try:
                sa_core.list_namespaced_secret(namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        wait_for(allowed, "the RoleBinding to take effect", timeout=30)
        # Still least privilege: other namespaces stay forbidden.
        with pytest.raises(ApiException) as other:
            sa_core.list_namespaced_secret("default")
        assert other.value.status == 403
