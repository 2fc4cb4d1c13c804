"""A user's first day: apply a Secret and a resource, get a token; break the secret, see why; fix it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from tests.support.authserver import AuthServer
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess


def spec(token_url: str, **extra: Any) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": "creds"},
            "target": {"secretName": "torch-token"}, **extra}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def reasons(kube: Kube, namespace: str, name: str, kind: str) -> list[str]:
    return [e.reason for e in kube.events(namespace, name) if e.type == kind]


def test_token_issued_broken_secret_reported_then_recovered(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="first-secret", scopes=["api:read"])
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "first-secret"})
    kube.create_occ(namespace, "torch", spec(auth_server.token_url, scopes=["api:read"]))

    ready = wait_for(lambda: kube.ready(namespace, "torch").get("status") == "True" and kube.ready(namespace, "torch"),
                     message="Ready=True")
    assert ready["reason"] == "TokenIssued"
    data = kube.secret_data(namespace, "torch-token")
    assert data is not None and set(data) == {"access_token", "token_type", "expires_at"}
    assert auth_server.accepts(data["access_token"]), "the authorization server must accept the stored token"
    assert data["token_type"] == "Bearer"
    status = (kube.get_occ(namespace, "torch") or {})["status"]
    assert parse_time(status["expiresAt"]) > datetime.now(UTC)
    assert status["expiresAt"] == data["expires_at"]
    assert parse_time(status["nextRefreshTime"]) < parse_time(status["expiresAt"])
    assert status["consecutiveFailures"] == 0
    target = kube.secret(namespace, "torch-token")
    assert target.type == "Opaque"
    assert target.metadata.labels["app.kubernetes.io/managed-by"] == "oauth-token-operator"
    assert [o.kind for o in target.metadata.owner_references] == ["OAuthClientCredential"]
    # Who wrote what, as `kubectl get -o yaml --show-managed-fields` shows it: the operator by name, not the
    # Python client's generator name that every Python tool in the cluster shares.
    assert {f.manager for f in target.metadata.managed_fields} == {"oauth-token-operator"}
    occ_fields = (kube.get_occ(namespace, "torch") or {})["metadata"]["managedFields"]
    assert {f["manager"] for f in occ_fields if f.get("subresource") == "status"} == {"oauth-token-operator"}
    wait_for(lambda: "TokenIssued" in reasons(kube, namespace, "torch", "Normal"), message="Normal Event")
    good_token = data["access_token"]

    # The key is revoked and replaced by a wrong one; the user forces a refresh.
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "wrong-secret"})
    kube.request_refresh(namespace, "torch")
    failed = wait_for(lambda: kube.ready(namespace, "torch").get("reason") == "InvalidClient"
                      and kube.ready(namespace, "torch"), message="Ready=False InvalidClient")
    assert failed["status"] == "False"
    assert "current token valid for" in failed["message"]
    assert "wrong-secret" not in failed["message"]
    wait_for(lambda: "InvalidClient" in reasons(kube, namespace, "torch", "Warning"), message="Warning Event")
    kept = kube.secret_data(namespace, "torch-token")
    assert kept is not None and kept["access_token"] == good_token, "a failure must keep the valid token"
    assert auth_server.accepts(good_token)

    # The user fixes the secret: a new token, Ready again, and a Normal Event says so.
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "first-secret"})
    wait_for(lambda: kube.ready(namespace, "torch").get("status") == "True", message="Ready=True again")
    fresh = kube.secret_data(namespace, "torch-token")
    assert fresh is not None and fresh["access_token"] != good_token
    assert auth_server.accepts(fresh["access_token"])
    wait_for(lambda: reasons(kube, namespace, "torch", "Normal").count("TokenIssued") >= 2,
             message="a second Normal TokenIssued Event (recovery)")


def test_short_lived_tokens_are_replaced_before_they_expire(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="s", token_lifetime=20)
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "s"})
    kube.create_occ(namespace, "short", spec(auth_server.token_url))

    seen: list[tuple[str, datetime, datetime]] = []  # token, first seen, expires_at

    def three_tokens() -> bool:
        data = kube.secret_data(namespace, "torch-token")
        if data and (not seen or seen[-1][0] != data["access_token"]):
            now = datetime.now(UTC)
            assert auth_server.accepts(data["access_token"])
            seen.append((data["access_token"], now, parse_time(data["expires_at"])))
        return len(seen) >= 3

    wait_for(three_tokens, timeout=60, interval=0.25, message="three successive tokens")
    for (_, _, expires), (_, replaced_at, _) in itertools.pairwise(seen):
        assert replaced_at < expires, "each token must be replaced before it expires"
    assert kube.ready(namespace, "short")["status"] == "True"
