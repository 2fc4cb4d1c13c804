"""Secrets never appear in logs, Events, status, metrics or the ``token`` command's output (issue 7 item 2).

Canary values: a client secret ``CANARY-SECRET-<random>`` (and a wrong one), one line of a private_key_jwt
PEM key, and every access token the authorization server issued. The operator runs the whole life of a few
resources (success, wrong secret, endpoint down, credentials Secret deleted, refresh annotation) in the text
log format at its default level and in the JSON format at DEBUG; afterwards no canary may be found anywhere a
user, a log shipper or a Prometheus server can read. A client ID is not a secret and may be shown.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from joserfc.jwk import RSAKey
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.pki import generate_private_key, private_key_pem


@pytest.fixture
def leak_server() -> Iterator[AuthServer]:
    """An authorization server of this test's own: taking it down must not disturb other tests, and every
    token it issued is a canary."""
    with AuthServer() as server:
        yield server


class Canaries:
    """Every secret value of one test run, with the encodings in which a careless line would carry them."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex
        self.client_id = f"leak-client-{suffix[:8]}"  # fine to show
        self.secret = f"CANARY-SECRET-{suffix}"
        self.wrong_secret = f"CANARY-WRONG-{suffix}"
        key = generate_private_key("rsa")
        self.key_pem = private_key_pem(key)
        lines = self.key_pem.splitlines()
        self.key_line = lines[len(lines) // 2]  # a full 64-character line from the middle of the key
        self.jwk = {**RSAKey.import_key(self.key_pem).as_dict(private=False), "kid": "leak-key", "use": "sig"}

    def values(self, tokens: list[str]) -> dict[str, str]:
        found = {
            "client secret": self.secret,
            "wrong client secret": self.wrong_secret,
            "private key line": self.key_line,
            # HTTP Basic credentials as sent (the canaries need no percent-encoding).
            "Basic credentials": base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode(),
            "Basic credentials (wrong)": base64.b64encode(f"{self.client_id}:{self.wrong_secret}".encode()).decode(),
            # Secret values as the API server stores them in a Secret's data.
            "client secret (base64)": base64.b64encode(self.secret.encode()).decode(),
        }
        found.update({f"access token {i}": token for i, token in enumerate(tokens)})
        return found


def assert_no_canary(where: str, text: str, canaries: dict[str, str]) -> None:
    leaked = [name for name, value in canaries.items() if value in text]
    assert not leaked, f"{', '.join(leaked)} leaked into {where}"


RESOURCES = ("leak-basic", "leak-jwt", "leak-wrong")


def spec(token_url: str, creds: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": creds},
            "target": {"secretName": target}, **extra}


def ready(kube: Kube, namespace: str, name: str, reason: str) -> bool:
    return kube.ready(namespace, name).get("reason") == reason


def run_token_command(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OAUTH_TOKEN_OPERATOR_LOG_LEVEL": "DEBUG",
           "OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS": ""}  # the leak server is on 127.0.0.1
    return subprocess.run([sys.executable, "-m", "oauth_token_operator", "token", "-f", str(path), *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize(("log_format", "log_level"), [("text", None), ("json", "DEBUG")])
def test_no_secret_leaks_through_a_whole_lifecycle(
        kube: Kube, kube_env: EnvTest, leak_server: AuthServer, namespace: str, tmp_path: Path,
        log_format: str, log_level: str | None) -> None:
    canary = Canaries()
    server = leak_server
    server.add_client(canary.client_id, secret=canary.secret, scopes=["api:read"])
    jwt_client = f"{canary.client_id}-jwt"
    server.add_client(jwt_client, auth_method="private_key_jwt", jwks={"keys": [canary.jwk]})
    url = server.token_url

    args = ["--namespace", namespace, "--log-format", log_format]
    if log_level:
        args += ["--log-level", log_level]
    operator = OperatorProcess(kube_env.kubeconfig, tmp_path, args=args, name=f"operator-{log_format}").start()
    try:
        kube.apply_secret(namespace, "creds", {"client_id": canary.client_id, "client_secret": canary.secret})
        kube.apply_secret(namespace, "wrong-creds",
                          {"client_id": canary.client_id, "client_secret": canary.wrong_secret})
        kube.apply_secret(namespace, "jwt-creds", {"client_id": jwt_client})
        kube.apply_secret(namespace, "jwt-key", {"private_key": canary.key_pem})

        # Success with a client secret (Basic) and with private_key_jwt.
        kube.create_occ(namespace, "leak-basic", spec(url, "creds", "tok-basic", scopes=["api:read"]))
        kube.create_occ(namespace, "leak-jwt", spec(url, "jwt-creds", "tok-jwt", authMethod="private_key_jwt",
                                               privateKeySecretRef={"name": "jwt-key"}, signingKeyID="leak-key"))
        # A wrong secret, sent in the form body (client_secret_post): InvalidClient.
        kube.create_occ(namespace, "leak-wrong", spec(url, "wrong-creds", "tok-wrong", authMethod="client_secret_post"))
        wait_for(lambda: ready(kube, namespace, "leak-basic", "TokenIssued")
                 and ready(kube, namespace, "leak-jwt", "TokenIssued"), message="basic and jwt Ready")
        wait_for(lambda: ready(kube, namespace, "leak-wrong", "InvalidClient"), message="wrong: InvalidClient")

        # The endpoint goes down (503) while a refresh is requested, then comes back.
        server.set_down(True)
        kube.request_refresh(namespace, "leak-basic")
        wait_for(lambda: ready(kube, namespace, "leak-basic", "EndpointUnavailable"), message="EndpointUnavailable")
        server.set_down(False)
        before = (kube.secret_data(namespace, "tok-basic") or {}).get("access_token")
        kube.request_refresh(namespace, "leak-basic")
        wait_for(lambda: ready(kube, namespace, "leak-basic", "TokenIssued")
                 and (kube.secret_data(namespace, "tok-basic") or {}).get("access_token") != before,
                 timeout=120, message="a new token after the outage")

        # The private key's resource loses its credentials Secret.
        kube.delete_secret(namespace, "jwt-creds")
        wait_for(lambda: ready(kube, namespace, "leak-jwt", "CredentialsNotFound"), message="CredentialsNotFound")

        # A refresh annotation on the healthy resource: one more token.
        issued = len(server.issued_tokens())
        kube.request_refresh(namespace, "leak-basic")
        wait_for(lambda: len(server.issued_tokens()) > issued and ready(kube, namespace, "leak-basic", "TokenIssued"),
                 message="a token for the refresh annotation")
        wait_for(lambda: {"TokenIssued", "InvalidClient", "EndpointUnavailable", "CredentialsNotFound"}
                 <= {e.reason for e in kube.core.list_namespaced_event(namespace).items},
                 message="an Event for every outcome")
        metrics = operator.metrics()
    finally:
        operator.stop()

    tokens = server.issued_tokens()
    assert len(tokens) >= 4, "the scenario must have issued tokens to look for"
    stored = (kube.secret_data(namespace, "tok-basic") or {}).get("access_token")
    assert stored in tokens, "the token in the target Secret is one the server issued (and so is a canary)"
    canaries = canary.values(tokens)
    logs = operator.logs()

    assert_no_canary(f"the operator's {log_format} log", logs, canaries)
    events = kube.core.list_namespaced_event(namespace).items
    assert events
    for event in events:
        assert_no_canary(f"Event {event.reason}", json.dumps(event.to_dict(), default=str),
                         canaries)
    for name in RESOURCES:
        occ = kube.get_occ(namespace, name)
        assert occ is not None and occ.get("status")
        assert_no_canary(f"{name} (status, metadata and annotations)", json.dumps(occ), canaries)
    assert "oauth_token_operator_token_requests_total" in metrics
    assert_no_canary("/metrics", metrics, canaries)

    if log_format == "json":
        assert_json_lines_name_their_resource(logs, namespace)
    else:
        assert_text_lines_name_their_resource(logs, namespace)


def mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def assert_text_lines_name_their_resource(logs: str, namespace: str) -> None:
    lines = logs.splitlines()
    for name in RESOURCES:
        about = [line for line in lines if mentions(line, name)]
        assert about, f"no log line names {namespace}/{name}"
        for line in about:
            assert f"{namespace}/{name}" in line, f"a log line about {name} does not say {namespace}/{name}: {line}"


def assert_json_lines_name_their_resource(logs: str, namespace: str) -> None:
    records: list[dict[str, Any]] = []
    for number, line in enumerate(logs.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"log line {number} is not one JSON object: {line[:300]!r}")
        assert isinstance(record, dict), f"log line {number} is JSON but not an object: {line[:300]!r}"
        assert record.get("message"), f"log line {number} has no message: {line[:300]!r}"
        records.append(record)
    assert any(r.get("severity") == "debug" for r in records), "--log-level DEBUG must log debug lines"
    for name in RESOURCES:
        about = [r for r in records if mentions(json.dumps(r), name)]
        assert about, f"no log line names {namespace}/{name}"
        for record in about:
            obj = record.get("object") or {}
            named = (obj.get("namespace"), obj.get("name")) == (namespace, name) or str(
                record["message"]).startswith(f"{namespace}/{name}:")
            assert named, f"a log line about {name} does not name {namespace}/{name}: {record}"


def test_token_command_output_holds_no_secret(leak_server: AuthServer, tmp_path: Path) -> None:
    canary = Canaries()
    leak_server.add_client(canary.client_id, secret=canary.secret)

    def write(secret: str) -> Path:
        path = tmp_path / f"{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
             "stringData": {"client_id": canary.client_id, "client_secret": secret}},
            {"apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
             "metadata": {"name": "torch"},
             "spec": spec(leak_server.token_url, "creds", "torch-token")},
        ]))
        return path

    good = run_token_command(write(canary.secret), "--allow-insecure-http")
    assert good.returncode == 0, good.stderr
    assert set(json.loads(good.stdout)) == {"tokenType", "expiresAt", "scope", "tokenSHA256"}
    bad = run_token_command(write(canary.wrong_secret), "--allow-insecure-http")
    assert bad.returncode == 3
    assert bad.stderr.startswith("InvalidClient:")

    tokens = leak_server.issued_tokens(canary.client_id)
    assert len(tokens) == 1
    canaries = canary.values(tokens)
    for run, label in ((good, "succeeding"), (bad, "failing")):
        assert_no_canary(f"the {label} token command's stdout", run.stdout, canaries)
        assert_no_canary(f"the {label} token command's stderr", run.stderr, canaries)
