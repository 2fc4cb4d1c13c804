"""Fixtures for end-to-end tests: the operator as its own process, a real API server, a real OAuth server."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube
from tests.support.operator_process import OperatorProcess

FOREIGN_NAMESPACES = ("tenant-helm", "tenant-certs", "tenant-apps")
FOREIGN_SECRETS = 60
FOREIGN_CONFIGMAPS = 20
FOREIGN_SIZE = 64 * 1024


@pytest.fixture(scope="session")
def kube(kube_env: EnvTest) -> Iterator[Kube]:
    """The cluster every e2e test runs in looks like production, not an empty control plane: other people's
    namespaces with Helm release Secrets (64 KiB each), TLS Secrets and ConfigMaps the operator must leave alone
    and must not pay for."""
    client = Kube(kube_env.kubeconfig)
    blob = base64.b64encode(os.urandom(FOREIGN_SIZE * 3 // 4)).decode()
    for name in FOREIGN_NAMESPACES:
        client.create_namespace(name)
    for i in range(FOREIGN_SECRETS):
        namespace = FOREIGN_NAMESPACES[i % len(FOREIGN_NAMESPACES)]
        _ = client.core.create_namespaced_secret(namespace, {
            "metadata": {"name": f"sh.helm.release.v1.app-{i}.v1", "labels": {"owner": "helm", "name": f"app-{i}"}},
            "type": "helm.sh/release.v1", "data": {"release": blob}}, _preload_content=False).data
    for i in range(FOREIGN_CONFIGMAPS):
        namespace = FOREIGN_NAMESPACES[i % len(FOREIGN_NAMESPACES)]
        _ = client.core.create_namespaced_config_map(namespace, {
            "metadata": {"name": f"settings-{i}"}, "data": {"blob": blob}}, _preload_content=False).data
    yield client
    client.close()


@pytest.fixture(scope="session")
def auth_server() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    yield name
    kube.delete_namespace(name)


@pytest.fixture
def operator(kube_env: EnvTest, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator watching only this test's namespace (so tests cannot disturb each other)."""
    process = OperatorProcess(kube_env.kubeconfig, tmp_path, args=["--namespace", namespace])
    process.start()
    yield process
    process.stop()
    print(f"--- operator log ({process.log_path}) ---\n{process.logs()[-20000:]}")


@pytest.fixture
def client_id(auth_server: AuthServer) -> str:
    return f"client-{uuid.uuid4().hex[:8]}"
