"""Fixtures of the real-pod tier: a kubelet node (containerd + kubelet, tests.support.kubelet) beside the test
API server, a real OAuth server, and the operator as its own process.

Skips when the node cannot run here (not root, no apt-get or Go), except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.kubelet import KubeletNode, KubeletUnavailable, kubelet_dir


@pytest.fixture(scope="session")
def kubelet_binary() -> Path:
    try:
        return kubelet_dir() / "kubelet"
    except KubeletUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the kubelet tier cannot run in CI: {exc.message}", pytrace=False)
        pytest.skip(exc.message)


@pytest.fixture(scope="package")
def node(kube_env: EnvTest, kubelet_binary: Path) -> Iterator[KubeletNode]:
    """One node for the tier (stopped when tests/pods/ is done), with the kubelet's DEFAULT syncFrequency (1m):
    what users run."""
    with KubeletNode(kube_env, kubelet_binary, sync_frequency="1m") as running:
        yield running


@pytest.fixture(scope="session")
def kube(kube_env: EnvTest) -> Iterator[Kube]:
    client = Kube(kube_env.kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="session")
def auth_server() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


def new_namespace(kube: Kube, prefix: str = "pods") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    return name


def pod_phase(kube: Kube, namespace: str, name: str) -> str:
    pod: Any = kube.core.read_namespaced_pod(name, namespace)
    return str(pod.status.phase)


def wait_pod_phase(kube: Kube, node: KubeletNode, namespace: str, name: str, phases: set[str],
                   timeout: float = 90.0) -> str:
    def reached() -> str | None:
        phase = pod_phase(kube, namespace, name)
        return phase if phase in phases else None

    try:
        phase = wait_for(reached, timeout=timeout, interval=0.5, message=f"pod {name} in {sorted(phases)}")
    except AssertionError as exc:
        pod: Any = kube.core.read_namespaced_pod(name, namespace)
        raise AssertionError(f"{exc}\npod status: {pod.status}\n--- kubelet ---\n{node.logs()}") from None
    assert phase is not None
    return phase
