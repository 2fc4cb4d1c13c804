"""The Kubernetes API server goes away for ~20 s while tokens come due, then comes back at the same address.

Before the core rebuild, only 404 and 409 were handled: any other API error escaped the daemon and Kopf's 60 s
daemon backoff decided, so resources held expired tokens for ~30 s after the server returned. Now API errors
are the loop's own transient failures (a short backoff, an immediate retry when the client's gate sees the
server answer again), and a token obtained during the outage is the one written after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import REPO_ROOT
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest, assets_dir
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

RESOURCES = 4
LIFETIME = 40  # refreshed every ~10 s: every resource comes due during the outage
OUTAGE = 20.0


@pytest.fixture
def own_env(tmp_path: Path) -> Iterator[EnvTest]:
    """A control plane of this test's own: stopping its API server disturbs no other test."""
    with EnvTest(tmp_path / "envtest", assets_dir(), crd_dir=REPO_ROOT / "crds", controller_manager=False) as env:
        yield env


def test_tokens_due_during_an_api_outage_are_stored_within_seconds_of_its_end(
        own_env: EnvTest, auth_server: AuthServer, client_id: str, tmp_path: Path) -> None:
    auth_server.add_client(client_id, secret="s", token_lifetime=LIFETIME)
    kube = Kube(own_env.kubeconfig)
    operator = OperatorProcess(own_env.kubeconfig, tmp_path, args=["--namespace", "outage"])
    try:
        kube.create_namespace("outage")
        kube.apply_secret("outage", "creds", {"client_id": client_id, "client_secret": "s"})
        for i in range(RESOURCES):
            kube.create_occ("outage", f"r{i}", {"tokenURL": auth_server.token_url,
                                                 "clientCredentialsSecretRef": {"name": "creds"},
                                                 "target": {"secretName": f"tok{i}"}})
        operator.start()
        wait_for(lambda: all(kube.ready("outage", f"r{i}").get("status") == "True" for i in range(RESOURCES)),
                 message="all Ready")

        before = set(auth_server.issued_tokens(client_id))
        own_env.stop_apiserver()
        down_at = time.monotonic()
        time.sleep(OUTAGE)
        requests_during = auth_server.token_request_count(client_id)
        own_env.start_apiserver()
        back_at = time.monotonic()
        issued_during = set(auth_server.issued_tokens(client_id)) - before

        def current() -> list[str]:
            return [(kube.secret_data("outage", f"tok{i}") or {}).get("access_token", "") for i in range(RESOURCES)]

        # Every Secret holds a token that came due during the outage or after it, and is valid.
        wait_for(lambda: all(t and t not in before and auth_server.accepts(t) for t in current()), timeout=30,
                 interval=0.5, message="every resource holds a new, valid token after the API server returned")
        recovered = time.monotonic() - back_at
        print(f"outage {back_at - down_at:.1f}s; all Secrets valid {recovered:.1f}s after the API server returned")
        assert recovered < 30
        assert issued_during, "tokens came due during the outage"
        # The tokens obtained during the outage were stored once the server was back, not thrown away (they
        # may be renewed right after, as they came due meanwhile).
        assert "token written back" in operator.logs()
        # No storm: while the API server was away, each resource asked the token server once, when its token
        # came due, and then kept retrying the write of that token, not the request.
        assert requests_during - RESOURCES <= RESOURCES
        wait_for(lambda: all(kube.ready("outage", f"r{i}").get("status") == "True" for i in range(RESOURCES)),
                 timeout=30, message="all Ready again")
        assert "Traceback" not in operator.logs()
    finally:
        operator.stop()
        kube.close()
