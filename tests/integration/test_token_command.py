"""``oauth-token-operator token -f FILE`` as users run it: a real process against real token endpoints.

The exit status is the contract scripts rely on (0 issued, 2 bad input, 3 refused, 4 unavailable or invalid
answer); on failure stderr names the reason (the condition reason the operator would set) and explains it in
one line; on success stdout is one JSON object that proves which token was issued without showing it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.authserver import AuthServer, FederatedTrust
from tests.support.envtest import EnvTest
from tests.support.gateways import ApigeeGateway, ScriptedResponse, ScriptedServer, WSO2Gateway
from tests.support.operator_process import free_port
from tests.support.pki import TestCA

CLIENT_ID, SECRET = "cli-client", "cli-secret-4f9a"
OUTPUT_KEYS = {"tokenType", "expiresAt", "scope", "tokenSHA256"}


@pytest.fixture(scope="module")
def server() -> Iterator[AuthServer]:
    with AuthServer() as auth:
        auth.add_client(CLIENT_ID, secret=SECRET, scopes=["api:read", "api:write"], token_lifetime=900)
        auth.add_client("no-expiry", secret=SECRET, send_expires_in=False)
        yield auth


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


# ---------------------------------------------------------------------------------------------- helpers


def secret(name: str = "creds", *, client_id: str = CLIENT_ID, client_secret: str | None = SECRET,
           encoded: bool = False) -> dict[str, Any]:
    values = {"client_id": client_id} | ({"client_secret": client_secret} if client_secret is not None else {})
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque"}
    if encoded:
        body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    else:
        body["stringData"] = values
    return body


def resource(token_url: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clientCredentialsSecretRef": {"name": "creds"}, "target": {"secretName": "tok"}}
    if token_url is not None:
        body["tokenURL"] = token_url
    body.update(spec)
    return {"apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
            "metadata": {"name": "torch"}, "spec": body}


def write(tmp_path: Path, *documents: dict[str, Any]) -> Path:
    path = tmp_path / "credentials.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def token_command(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
                  ) -> subprocess.CompletedProcess[str]:
    # Hermetic: no operator settings and no cluster from the caller's environment unless a test passes them.
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("OAUTH_TOKEN_OPERATOR_") and k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "oauth_token_operator", "token", *args],
                          capture_output=True, text=True, timeout=60, input=stdin, check=False,
                          env={**environment, **(env or {})})


def succeeded(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr}"
    output = json.loads(run.stdout)
    assert isinstance(output, dict)
    assert len(run.stdout.strip().splitlines()) == 1, "stdout is one JSON object on one line"
    return output


def failed(run: subprocess.CompletedProcess[str], code: int, reason: str) -> str:
    assert run.returncode == code, f"expected exit {code}, got {run.returncode}: {run.stderr}{run.stdout}"
    assert run.stdout == "", "nothing on stdout when no token was issued"
    assert run.stderr.startswith(f"{reason}: "), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, f"one line of explanation, not a traceback:\n{run.stderr}"
    return run.stderr


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------------------------- exit 0


def test_token_issued_prints_proof_not_the_token(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(), resource(server.token_url, scopes=["api:read"]))
    before = set(server.issued_tokens(CLIENT_ID))
    started = datetime.now(UTC)
    output = succeeded(token_command("-f", str(path), "--allow-insecure-http"))

    assert set(output) == OUTPUT_KEYS
    (issued,) = set(server.issued_tokens(CLIENT_ID)) - before
    assert output["tokenSHA256"] == sha256(issued), "the hash identifies the token the server issued"
    assert issued not in json.dumps(output)
    assert server.accepts(issued)
    assert output["tokenType"] == "Bearer"
    assert output["scope"] == "api:read"
    expires = parse_time(output["expiresAt"])
    assert started + timedelta(seconds=890) <= expires <= datetime.now(UTC) + timedelta(seconds=901)
    assert output["expiresAt"].endswith("Z")


def test_show_token_adds_the_token_the_server_accepts(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(), resource(server.token_url))
    output = succeeded(token_command("-f", str(path), "--show-token", "--allow-insecure-http"))

    assert set(output) == OUTPUT_KEYS | {"accessToken"}
    assert output["tokenSHA256"] == sha256(output["accessToken"])
    assert server.accepts(output["accessToken"])


def test_base64_data_and_stdin(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(encoded=True), resource(server.token_url))
    output = succeeded(token_command("-f", "-", "--show-token", "--allow-insecure-http",
                                     stdin=path.read_text()))
    assert server.accepts(output["accessToken"])


def test_insecure_http_allowed_by_environment(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(), resource(server.token_url))
    run = token_command("-f", str(path), "--show-token", env={"OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_HTTP": "true"})
    assert server.accepts(succeeded(run)["accessToken"])
    assert "http" in run.stderr, "plain http is flagged even when allowed"


def test_default_lifetime_from_the_resource_as_in_the_cluster(server: AuthServer, tmp_path: Path) -> None:
    """No expires_in in the answer: the resource's refreshPolicy.defaultLifetime applies, as in the operator."""
    path = write(tmp_path, secret(client_id="no-expiry"),
                 resource(server.token_url, refreshPolicy={"defaultLifetime": "10m"}))
    output = succeeded(token_command("-f", str(path), "--allow-insecure-http"))
    remaining = (parse_time(output["expiresAt"]) - datetime.now(UTC)).total_seconds()
    assert 590 <= remaining <= 601, output


def test_apigee_with_post_credentials_and_base64_data(tmp_path: Path) -> None:
    with ApigeeGateway() as apigee:
        apigee.add_client("consumer-key", "consumer-secret")
        path = write(tmp_path, secret(client_id="consumer-key", client_secret="consumer-secret", encoded=True),
                     resource(apigee.token_url, authMethod="client_secret_post"))
        output = succeeded(token_command("-f", str(path), "--show-token", "--allow-insecure-http"))
        assert output["tokenType"] == "Bearer", "Apigee's BearerToken is a bearer token"
        assert apigee.accepts(output["accessToken"])


def test_https_with_a_configmap_ca_bundle(ca: TestCA, tmp_path: Path) -> None:
    with WSO2Gateway(tls=ca) as wso2:
        wso2.add_client("wso2-key", "wso2-secret")
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "idp-ca"},
                     "data": {"ca.crt": ca.cert_pem}}
        path = write(tmp_path, secret(client_id="wso2-key", client_secret="wso2-secret"), configmap,
                     resource(wso2.token_url, tls={"caBundleRef": {"kind": "ConfigMap", "name": "idp-ca"}},
                              extraParams={"validity_period": "600"}))
        output = succeeded(token_command("-f", str(path), "--show-token"))
        assert wso2.accepts(output["accessToken"])
        assert (parse_time(output["expiresAt"]) - datetime.now(UTC)).total_seconds() <= 601

        # The same file without the CA: the certificate is not trusted, which is an unavailable endpoint.
        untrusted = write(tmp_path, secret(client_id="wso2-key", client_secret="wso2-secret"),
                          resource(wso2.token_url))
        failed(token_command("-f", str(untrusted)), 4, "EndpointUnavailable")


def test_help_shows_the_example() -> None:
    run = token_command("--help")
    assert run.returncode == 0
    assert "$ oauth-token-operator token -f credentials.yaml" in run.stdout
    assert "kind: OAuthClientCredential" in run.stdout
    assert "exit status: 0 token issued" in run.stdout


# ------------------------------------------------------------------------------------------------- exit 2


def test_unreadable_file(tmp_path: Path) -> None:
    stderr = failed(token_command("-f", str(tmp_path / "missing.yaml")), 2, "InvalidSpec")
    assert "missing.yaml" in stderr
    failed(token_command("-f", str(tmp_path)), 2, "InvalidSpec")  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    failed(token_command("-f", str(binary)), 2, "InvalidSpec")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: Secret\nmetadata: {name: [unclosed\n")
    assert "not valid YAML" in failed(token_command("-f", str(path)), 2, "InvalidSpec")


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_resource(server: AuthServer, tmp_path: Path, count: int) -> None:
    path = write(tmp_path, secret(), *[resource(server.token_url)] * count)
    stderr = failed(token_command("-f", str(path), "--allow-insecure-http"), 2, "InvalidSpec")
    assert f"found {count}" in stderr


@pytest.mark.parametrize("document", [
    resource("https://idp.example.com/token", issuerURL="https://idp.example.com"),
    resource(None),
    resource("ftp://idp.example.com/token"),
    resource("https://idp.example.com/token", authMethod="private_key_jwt"),
    {**resource("https://idp.example.com/token"), "metadata": None},
], ids=["both-urls", "no-url", "ftp-url", "jwt-without-key", "no-metadata"])
def test_invalid_spec(tmp_path: Path, document: dict[str, Any]) -> None:
    failed(token_command("-f", str(write(tmp_path, secret(), document))), 2, "InvalidSpec")


def test_missing_secret_or_key(server: AuthServer, tmp_path: Path) -> None:
    no_secret = write(tmp_path, resource(server.token_url))
    stderr = failed(token_command("-f", str(no_secret), "--allow-insecure-http"), 2, "CredentialsNotFound")
    assert "creds" in stderr
    no_key = write(tmp_path, secret(client_secret=None), resource(server.token_url))
    stderr = failed(token_command("-f", str(no_key), "--allow-insecure-http"), 2, "CredentialsNotFound")
    assert "client_secret" in stderr


def test_plain_http_refused_without_permission(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(), resource(server.token_url))
    count = server.token_request_count()
    stderr = failed(token_command("-f", str(path)), 2, "InvalidSpec")
    assert "--allow-insecure-http" in stderr
    failed(token_command("-f", str(path), env={"OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_HTTP": "false"}),
           2, "InvalidSpec")
    assert server.token_request_count() == count, "nothing was sent in clear text"


# ------------------------------------------------------------------------------------------------- exit 3


def test_wrong_secret_is_invalid_client(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(client_secret="wrong-secret-83b1"), resource(server.token_url))
    stderr = failed(token_command("-f", str(path), "--allow-insecure-http"), 3, "InvalidClient")
    assert "wrong-secret-83b1" not in stderr


def test_invalid_scope_is_rejected(server: AuthServer, tmp_path: Path) -> None:
    path = write(tmp_path, secret(), resource(server.token_url, scopes=["admin:everything"]))
    stderr = failed(token_command("-f", str(path), "--allow-insecure-http"), 3, "TokenRequestRejected")
    assert "invalid_scope" in stderr


# ------------------------------------------------------------------------------------------------- exit 4


def test_closed_port_is_endpoint_unavailable(tmp_path: Path) -> None:
    path = write(tmp_path, secret(), resource(f"http://127.0.0.1:{free_port()}/token"))
    failed(token_command("-f", str(path), "--allow-insecure-http"), 4, "EndpointUnavailable")


def test_answer_without_access_token_is_invalid_token_response(tmp_path: Path) -> None:
    with ScriptedServer(ScriptedResponse.json({"token_type": "Bearer", "expires_in": 3600})) as scripted:
        path = write(tmp_path, secret(), resource(scripted.token_url))
        stderr = failed(token_command("-f", str(path), "--allow-insecure-http"), 4, "InvalidTokenResponse")
    assert "without an access_token" in stderr


# ------------------------------------------------------------------------ credentials without a static secret


def test_client_secret_jwt_with_the_client_id_in_the_spec(server: AuthServer, tmp_path: Path) -> None:
    hmac_secret = "cli-hs-" + "x" * 60
    server.add_client("cli-hs", secret=hmac_secret, auth_method="client_secret_jwt")
    path = write(tmp_path, secret(client_id="ignored", client_secret=hmac_secret),
                 resource(server.token_url, clientID="cli-hs", authMethod="client_secret_jwt",
                          signingAlgorithm="HS512"))
    output = succeeded(token_command("-f", str(path), "--show-token", "--allow-insecure-http"))

    assert server.accepts(output["accessToken"])
    request = server.requests[-1]
    assert request.granted and request.auth_method == "client_secret_jwt" and request.client_id == "cli-hs"
    assert "client_secret" not in request.form_names


def test_service_account_assertion_without_a_cluster_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, resource("https://idp.example.com/token", clientID="app",
                                    clientCredentialsSecretRef=None, authMethod="kubernetes_service_account",
                                    serviceAccountAssertion={"serviceAccountName": "torch-client"}))
    stderr = failed(token_command("-f", str(path)), 2, "InvalidSpec")
    assert "needs a cluster" in stderr and "KUBECONFIG" in stderr


def test_service_account_assertion_minted_with_the_kubeconfig(kube_env: EnvTest, tmp_path: Path) -> None:
    from kubernetes import client

    from oauth_token_operator.service_account_assertion import TOKEN_AUDIENCES_ANNOTATION

    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    with kube_env.api_client() as api, AuthServer() as auth:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        try:
            jwks = json.loads(client.OpenidApi(api).get_service_account_issuer_open_id_keyset(
                _preload_content=False).data)
            auth.add_client("torch-app", auth_method="federated_jwt", federated=FederatedTrust(
                issuer=kube_env.service_account_issuer, jwks=jwks, audience=auth.token_url,
                subject=f"system:serviceaccount:{namespace}:torch-client"))
            document = resource(auth.token_url, clientID="torch-app", clientCredentialsSecretRef=None,
                                authMethod="kubernetes_service_account",
                                serviceAccountAssertion={"serviceAccountName": "torch-client"})
            document["metadata"]["namespace"] = namespace
            path = write(tmp_path, document)
            env = {"KUBECONFIG": str(kube_env.kubeconfig)}

            stderr = failed(token_command("-f", str(path), "--allow-insecure-http", env=env), 2, "CredentialsNotFound")
            assert f"ServiceAccount {namespace}/torch-client not found" in stderr

            core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
                metadata=client.V1ObjectMeta(name="torch-client")))
            stderr = failed(token_command("-f", str(path), "--allow-insecure-http", env=env), 2,
                            "AssertionNotPermitted")
            assert f"{TOKEN_AUDIENCES_ANNOTATION}={auth.token_url}" in stderr
            assert auth.requests == []

            core.patch_namespaced_service_account("torch-client", namespace, {"metadata": {"annotations": {
                TOKEN_AUDIENCES_ANNOTATION: auth.token_url}}})
            output = succeeded(token_command("-f", str(path), "--show-token", "--allow-insecure-http", env=env))
            assert auth.accepts(output["accessToken"])
            [claims] = auth.accepted_federated_claims
            assert claims["sub"] == f"system:serviceaccount:{namespace}:torch-client"
        finally:
            core.delete_namespace(namespace)


# ------------------------------------------------------------------------------------ credentials that expire


def test_expired_credentials_warn_and_the_refusal_says_when_they_expired(server: AuthServer, tmp_path: Path) -> None:
    expired = secret(client_secret="revoked-secret-5e1d")
    expired["stringData"]["client_secret_expires_at"] = "2026-01-31T00:00:00Z"
    run = token_command("-f", str(write(tmp_path, expired, resource(server.token_url))), "--allow-insecure-http")

    assert run.returncode == 3 and run.stdout == ""
    warning, refusal = run.stderr.strip().splitlines()
    assert warning.startswith("warning: the client secret in Secret default/creds expired on 2026-01-31T00:00:00Z")
    assert refusal.startswith("InvalidClient: ")
    assert refusal.endswith("(the client secret expired on 2026-01-31T00:00:00Z)")
    assert "revoked-secret-5e1d" not in run.stderr


def test_credentials_expiring_soon_warn_but_the_token_is_issued(server: AuthServer, tmp_path: Path) -> None:
    soon = secret()
    soon["stringData"]["valid_until"] = str(int((datetime.now(UTC) + timedelta(hours=30)).timestamp()))
    document = resource(server.token_url, clientCredentialsSecretRef={"name": "creds", "expiresAtKey": "valid_until"},
                        credentialsExpiryWarning="48h")
    run = token_command("-f", str(write(tmp_path, soon, document)), "--allow-insecure-http")

    assert run.returncode == 0, run.stderr
    assert "warning: the client secret in Secret default/creds expires on" in run.stderr and "(in 1d" in run.stderr
    # Without credentialsExpiryWarning the setting decides (default 168h).
    plain = resource(server.token_url, clientCredentialsSecretRef={"name": "creds", "expiresAtKey": "valid_until"})
    quiet = token_command("-f", str(write(tmp_path, soon, plain)), "--allow-insecure-http",
                          env={"OAUTH_TOKEN_OPERATOR_CREDENTIALS_EXPIRY_WARNING": "1h"})
    assert quiet.returncode == 0 and "expires on" not in quiet.stderr
    default = token_command("-f", str(write(tmp_path, soon, plain)), "--allow-insecure-http")
    assert default.returncode == 0 and "expires on" in default.stderr
    # ... and the spec wins over the setting.
    spec_wins = token_command("-f", str(write(tmp_path, soon, document)), "--allow-insecure-http",
                              env={"OAUTH_TOKEN_OPERATOR_CREDENTIALS_EXPIRY_WARNING": "1h"})
    assert spec_wins.returncode == 0 and "expires on" in spec_wins.stderr
