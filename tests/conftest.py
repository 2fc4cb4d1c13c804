"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so `tests.support` imports however pytest is launched
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.envtest import EnvTest, EnvTestUnavailable, assets_dir  # noqa: E402
from tests.support.keycloak import Keycloak, KeycloakUnavailable, keycloak_home  # noqa: E402


@pytest.fixture(scope="session")
def kube_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvTest]:
    """A real etcd + kube-apiserver + kube-controller-manager (RBAC on) with the
    CRDs from ``<repo>/crds/`` applied, shared by the whole session.

    Skips when the binaries cannot be had here (no KUBEBUILDER_ASSETS, no Go),
    except under CI (``$CI`` set), where that is a failure: CI never skips silently.
    """
    try:
        assets = assets_dir()
    except EnvTestUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"envtest unavailable in CI: {exc.message}", pytrace=False)
        pytest.skip(exc.message)
    with EnvTest(tmp_path_factory.mktemp("envtest"), assets, crd_dir=REPO_ROOT / "crds") as env:
        _wait_until_garbage_collector_knows_the_crd(env)
        yield env


def _wait_until_garbage_collector_knows_the_crd(env: EnvTest, timeout: float = 120.0) -> None:
    """The CRDs are installed before kube-controller-manager starts, so its garbage collector should know
    them at once (it rediscovers resource types only every 30 s). Prove it by collecting one dependent: a
    readiness check, not a sleep, so tests of ownerReference garbage collection are not flaky."""
    import time

    from kubernetes import client

    api = env.api_client()
    try:
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        owner = custom.create_namespaced_custom_object(
            "oauth-token-operator.dev", "v1alpha1", "default", "oauthclientcredentials",
            {"apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
             "metadata": {"name": "gc-probe"},
             "spec": {"tokenURL": "https://gc-probe.invalid/token", "clientCredentialsSecretRef": {"name": "x"},
                      "target": {"secretName": "gc-probe"}}})
        core.create_namespaced_config_map("default", {"metadata": {"name": "gc-probe", "ownerReferences": [{
            "apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
            "name": "gc-probe", "uid": owner["metadata"]["uid"]}]}})
        custom.delete_namespaced_custom_object("oauth-token-operator.dev", "v1alpha1", "default",
                                               "oauthclientcredentials", "gc-probe")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [c for c in core.list_namespaced_config_map("default").items if c.metadata.name == "gc-probe"]:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the garbage collector did not learn the CRD within {timeout}s")
    finally:
        api.close()


# ------------------------------------------------------------------------------------- Keycloak (test tier)


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Keycloak]:
    """A real Keycloak (``kc.sh start-dev`` on 127.0.0.1, built once by ``hack/keycloak.sh``), shared by the
    whole session; its log is ``<tmp>/keycloak0/keycloak.log``. It trusts the CA of ``kube_env``'s API server
    (when that is available) so its Kubernetes identity provider can fetch the ServiceAccount issuer's JWKS.

    Skips when Java or Maven cannot be had here, except under CI (``$CI`` set), where that is a failure.
    """
    try:
        home = keycloak_home()
    except KeycloakUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Keycloak unavailable in CI: {exc.message}", pytrace=False)
        pytest.skip(exc.message)
    truststore: list[Path] = []
    try:
        truststore.append(request.getfixturevalue("kube_env").ca_file)
    except pytest.skip.Exception:
        pass  # no API server here: the ServiceAccount tests skip with kube_env's reason, the others run
    with Keycloak(home, tmp_path_factory.mktemp("keycloak"), truststore_paths=truststore) as server:
        yield server
