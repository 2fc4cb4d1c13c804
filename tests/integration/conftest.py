"""Fixtures shared by the integration tests that talk to the real API server (``kube_env``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from tests.support.envtest import EnvTest


@pytest.fixture
def admin(kube_env: EnvTest) -> Iterator[client.ApiClient]:
    """An admin client of the test API server."""
    with kube_env.api_client() as api:
        yield api


@pytest.fixture
def namespace(admin: client.ApiClient) -> Iterator[str]:
    """A namespace of this test's own, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
