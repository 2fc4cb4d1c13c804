"""Cluster-wide in a cluster full of other people's Secrets and ConfigMaps (the session's ``kube`` fixture adds
Helm-release-shaped Secrets of 64 KiB in other namespaces): the operator watches their metadata only, acts on
none of them, and every behaviour that depends on watching what it references still works."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.e2e.conftest import FOREIGN_CONFIGMAPS, FOREIGN_SECRETS
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess


def test_cluster_wide_pays_for_metadata_only_and_still_sees_its_own_objects(
        kube: Kube, kube_env: EnvTest, auth_server: AuthServer, namespace: str, client_id: str,
        tmp_path: Path) -> None:
    auth_server.add_client(client_id, secret="one")
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "one"})
    kube.create_occ(namespace, "r", {"tokenURL": auth_server.token_url,
                                     "clientCredentialsSecretRef": {"name": "creds"},
                                     "target": {"secretName": "tok"}})
    operator = OperatorProcess(kube_env.kubeconfig, tmp_path).start()  # cluster-wide: every namespace
    try:
        wait_for(lambda: kube.ready(namespace, "r").get("status") == "True", message="Ready")

        def watched(kind: str, referenced: str) -> float:
            return operator.metric("oauth_token_operator_watched_objects_total", kind=kind, referenced=referenced)

        # The listing saw every foreign object's metadata and kept none of it.
        assert watched("Secret", "false") >= FOREIGN_SECRETS
        assert watched("ConfigMap", "false") >= FOREIGN_CONFIGMAPS

        # Rotating the credentials Secret is still seen at once; deleting the target still recreates it.
        old = (kube.secret_data(namespace, "tok") or {})["access_token"]
        auth_server.set_secret(client_id, "two")
        kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "two"})
        wait_for(lambda: (kube.secret_data(namespace, "tok") or {}).get("access_token") != old, timeout=15,
                 message="a new token after the rotation")
        kube.delete_secret(namespace, "tok")
        data = wait_for(lambda: kube.secret_data(namespace, "tok"), timeout=15, message="target recreated")
        assert auth_server.accepts(data["access_token"])
        # A foreign Secret changing costs one metadata line and wakes nobody.
        # (Counted as unreferenced even in the first two minutes, while every change is forwarded to keep the
        # start-up seed current: the test runs inside that window.)
        requests = auth_server.token_request_count(client_id)
        before = watched("Secret", "false")
        kube.apply_secret("tenant-apps", "unrelated", {"x": "y", "changed": uuid.uuid4().hex})
        wait_for(lambda: watched("Secret", "false") >= before + 1, message="the change was seen, unreferenced")
        assert auth_server.token_request_count(client_id) == requests
    finally:
        operator.stop()
