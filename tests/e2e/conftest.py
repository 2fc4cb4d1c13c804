"""Fixtures for end-to-end tests: the operator as its own process, a real API server, a real OAuth server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube
from tests.support.operator_process import OperatorProcess


@pytest.fixture(scope="session")
def kube(kube_env: EnvTest) -> Iterator[Kube]:
    client = Kube(kube_env.kubeconfig)
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
