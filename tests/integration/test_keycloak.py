"""The token client and ``oauth-token-operator token -f`` against a real Keycloak, the self-hosted identity provider
our users run most.

Every issued token is checked the way a resource server would: Keycloak's own introspection endpoint must call it
active and issued to the client that asked (``azp``). Every refusal is checked for the reason and message a user
would read. The session's Keycloak comes from the ``keycloak`` fixture (tests/conftest.py); each test makes its
own clients in one realm of this module.

Methods covered: client_secret_basic, client_secret_post, client_secret_jwt (HS256, HS512), private_key_jwt (key
uploaded as a JWKS or as the certificate) and kubernetes_service_account (Keycloak's ``federated-jwt`` with its
Kubernetes identity provider trusting the test API server, which mints the tokens), through TokenClient and
through the ``token`` command. Keycloak's refusals of note: a wrong secret is ``401 unauthorized_client`` (not
``invalid_client``), a bad client_secret_jwt signature ``400 unauthorized_client``, a ServiceAccount token for
another audience than the realm issuer ``400 invalid_client`` "Invalid token audience".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey, RSAKey
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr
from tests.support.envtest import EnvTest
from tests.support.keycloak import Keycloak, Realm
from tests.support.pki import KeyType, TestCA, generate_private_key, private_key_pem

from oauth_token_operator.api import AuthMethod, OAuthClientCredential, SigningAlgorithm
from oauth_token_operator.errors import InvalidClient
from oauth_token_operator.kube.client import KubeClient
from oauth_token_operator.kube.serviceaccounts import with_service_account_assertion
from oauth_token_operator.resolve import resolve_client_config
from oauth_token_operator.service_account_assertion import TOKEN_AUDIENCES_ANNOTATION
from oauth_token_operator.tokens.client import TokenClient, TokenResult
from oauth_token_operator.tokens.model import ClientConfig
from oauth_token_operator.tokens.networks import DeniedNetworks

REALM = "oto-tests"
SPECIAL = "p@ss:w+rd/100%=&x y"
"""A client secret with every character that Basic encoding gets wrong somewhere."""
CANARY = "Canary-5e1b77-p@ss:w+rd/100%=&x y"
"""The secret of every refused request: it must not appear in the refusal, in any encoding."""


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def realm(keycloak: Keycloak) -> Realm:
    return Realm.create(keycloak, REALM)


@pytest.fixture
async def token_client() -> AsyncIterator[TokenClient]:
    # Keycloak's dev mode is plain http, on loopback (which the operator's default denied networks refuse).
    client = TokenClient(allow_insecure_http=True, timeout=30.0, denied_networks=DeniedNetworks())
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def keycloak_log_on_failure(request: pytest.FixtureRequest, keycloak: Keycloak) -> Iterator[None]:
    """When a test fails, show what Keycloak logged meanwhile (its refusals are explained only there)."""
    offset = keycloak.log_path.stat().st_size
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        with keycloak.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")[-6000:]
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\n--- Keycloak log during {request.node.nodeid} ({keycloak.log_path}):\n{text}")


# ------------------------------------------------------------------------------------------------- helpers


def config(realm: Realm, client_id: str, secret: str | None = None, *, issuer: bool = False,
           method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC, **kwargs: Any) -> ClientConfig:
    return ClientConfig(client_id=client_id, token_url=None if issuer else realm.token_endpoint,
                        issuer_url=realm.issuer if issuer else None,
                        client_secret=SecretStr(secret) if secret is not None else None, auth_method=method,
                        **kwargs)


def token_of(result: TokenResult) -> str:
    return result.token.access_token.get_secret_value()


def lifetime(result: TokenResult) -> float:
    return (result.token.expires_at - result.token.issued_at).total_seconds()


def assert_no_secret(text: str, secret: str) -> None:
    from urllib.parse import quote, quote_plus

    for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
        assert form not in text, f"secret material in: {text!r}"


# ------------------------------------------------------------------------------- client secret methods


@pytest.mark.parametrize("method", [AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST])
async def test_client_secret_issues_a_token_keycloak_accepts(realm: Realm, token_client: TokenClient,
                                                            method: AuthMethod) -> None:
    client_id = realm.client("secret", secret=SPECIAL)

    result = await token_client.fetch_token(config(realm, client_id, SPECIAL, method=method))

    claims = realm.assert_issued_to(token_of(result), client_id)
    assert result.token.token_type == "Bearer"
    assert result.token.expiry_source == "expires_in"
    assert lifetime(result) == pytest.approx(300, abs=3)  # the realm's default access token lifespan
    assert claims["exp"] == pytest.approx(result.token.expires_at.timestamp(), abs=3)
    assert result.endpoint == realm.token_endpoint


async def test_wrong_secret_is_invalid_client(realm: Realm, token_client: TokenClient) -> None:
    client_id = realm.client("wrong", secret="the-right-one")

    with pytest.raises(InvalidClient) as caught:  # Keycloak answers 401 unauthorized_client, not invalid_client
        await token_client.fetch_token(config(realm, client_id, CANARY))

    message = caught.value.message
    assert "401 unauthorized_client" in message
    assert "Invalid client or Invalid client credentials" in message
    assert_no_secret(message, CANARY)


async def test_client_without_service_accounts_is_invalid_client(realm: Realm, token_client: TokenClient) -> None:
    """The switch users forget in Keycloak's console ("Service accounts roles"): the grant is not allowed."""
    client_id = realm.client("no-grant", secret=SPECIAL, serviceAccountsEnabled=False)

    with pytest.raises(InvalidClient) as caught:
        await token_client.fetch_token(config(realm, client_id, SPECIAL))

    message = caught.value.message
    assert "unauthorized_client" in message
    assert "Client not enabled to retrieve service account" in message
    assert "enable that grant type" in message
    assert_no_secret(message, SPECIAL)


async def test_discovery_through_the_realm_issuer(realm: Realm, token_client: TokenClient) -> None:
    client_id = realm.client("disco", secret=SPECIAL)
    cfg = config(realm, client_id, SPECIAL, issuer=True)

    assert await token_client.token_endpoint(cfg) == realm.token_endpoint
    result = await token_client.fetch_token(cfg)

    assert result.endpoint == realm.token_endpoint
    realm.assert_issued_to(token_of(result), client_id)


# ------------------------------------------------------------------------------------------ private_key_jwt


def public_jwk(private_pem: str, key_type: KeyType, kid: str) -> dict[str, Any]:
    key = RSAKey.import_key(private_pem) if key_type == "rsa" else ECKey.import_key(private_pem)
    return {**key.as_dict(private=False), "kid": kid, "use": "sig"}


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
async def test_private_key_jwt_with_a_jwks(realm: Realm, token_client: TokenClient, key_type: KeyType) -> None:
    signing_pem = private_key_pem(generate_private_key(key_type))
    other_pem = private_key_pem(generate_private_key("ec" if key_type == "rsa" else "rsa"))
    jwks = {"keys": [public_jwk(other_pem, "ec" if key_type == "rsa" else "rsa", "old-key"),
                     public_jwk(signing_pem, key_type, "current-key")]}
    client_id = realm.client("pkjwt", "client-jwt",
                             attributes={"use.jwks.string": "true", "jwks.string": json.dumps(jwks)})

    result = await token_client.fetch_token(config(realm, client_id, method=AuthMethod.PRIVATE_KEY_JWT,
                                                   private_key_pem=SecretStr(signing_pem),
                                                   signing_key_id="current-key"))

    realm.assert_issued_to(token_of(result), client_id)

    # A key the client never registered: Keycloak refuses it, and the refusal says so without the key.
    intruder = private_key_pem(generate_private_key(key_type))
    with pytest.raises(InvalidClient) as caught:
        await token_client.fetch_token(config(realm, client_id, method=AuthMethod.PRIVATE_KEY_JWT,
                                              private_key_pem=SecretStr(intruder), signing_key_id="current-key"))
    assert "PRIVATE KEY" not in caught.value.message


async def test_private_key_jwt_with_the_certificate_uploaded(realm: Realm, token_client: TokenClient,
                                                             tmp_path: Path) -> None:
    """The other way Keycloak's admin console takes a key: the client's certificate (PEM body) as an attribute."""
    issued = TestCA(tmp_path).issue_client_cert("pkjwt-cert", key_type="rsa")
    der = x509.load_pem_x509_certificate(issued.cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    client_id = realm.client("pkjwt-cert", "client-jwt",
                             attributes={"jwt.credential.certificate": base64.b64encode(der).decode()})

    result = await token_client.fetch_token(config(realm, client_id, method=AuthMethod.PRIVATE_KEY_JWT,
                                                   private_key_pem=SecretStr(issued.key_pem)))

    realm.assert_issued_to(token_of(result), client_id)


# ---------------------------------------------------------------------------------- client_secret_jwt


@pytest.mark.parametrize("algorithm", [None, SigningAlgorithm.HS512])  # HS256 by default
async def test_client_secret_jwt(realm: Realm, token_client: TokenClient, algorithm: SigningAlgorithm | None) -> None:
    secret = uuid.uuid4().hex + uuid.uuid4().hex  # 256 bits: HS256 wants a key at least that long
    client_id = realm.client("csjwt", "client-secret-jwt", secret=secret)

    result = await token_client.fetch_token(config(realm, client_id, secret, method=AuthMethod.CLIENT_SECRET_JWT,
                                                   signing_algorithm=algorithm))

    realm.assert_issued_to(token_of(result), client_id)

    # Signed with another secret: Keycloak says the signature failed (as 400 unauthorized_client).
    with pytest.raises(InvalidClient) as caught:
        await token_client.fetch_token(config(realm, client_id, CANARY, method=AuthMethod.CLIENT_SECRET_JWT,
                                              signing_algorithm=algorithm))
    assert "Signature on JWT token by client secret" in caught.value.message
    assert_no_secret(caught.value.message, CANARY)


# ------------------------------------------------------------------------------------------ token -f


def token_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH_TOKEN_OPERATOR_")}
    environment.pop("KUBECONFIG", None)
    environment["OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS"] = ""  # Keycloak listens on loopback here
    return subprocess.run([sys.executable, "-m", "oauth_token_operator", "token", *args], capture_output=True,
                          text=True, timeout=120, check=False, env={**environment, **(env or {})})


def credentials_file(tmp_path: Path, client_id: str, secret: str, **spec: Any) -> Path:
    documents = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "stringData": {"client_id": client_id, "client_secret": secret}},
        {"apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
         "metadata": {"name": "keycloak"},
         "spec": {"clientCredentialsSecretRef": {"name": "creds"}, "target": {"secretName": "tok"}, **spec}},
    ]
    path = tmp_path / "credentials.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def test_token_command_against_keycloak(realm: Realm, tmp_path: Path) -> None:
    client_id = realm.client("cli", secret=SPECIAL)
    path = credentials_file(tmp_path, client_id, SPECIAL, issuerURL=realm.issuer, authMethod="client_secret_post")

    run = token_command("-f", str(path), "--show-token", "--allow-insecure-http")

    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert output["tokenSHA256"] == hashlib.sha256(output["accessToken"].encode()).hexdigest()
    claims = realm.assert_issued_to(output["accessToken"], client_id)
    assert output["expiresAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))

    wrong = token_command("-f", str(credentials_file(tmp_path, client_id, CANARY, issuerURL=realm.issuer)),
                          "--allow-insecure-http")
    assert wrong.returncode == 3, wrong.stderr
    assert wrong.stdout == ""
    assert wrong.stderr.startswith("InvalidClient: "), wrong.stderr
    assert "unauthorized_client" in wrong.stderr
    assert_no_secret(wrong.stderr, CANARY)


# ------------------------------------------------------------ a ServiceAccount token as the client assertion


@pytest.fixture(scope="module")
def federation(keycloak: Keycloak, kube_env: EnvTest, realm: Realm) -> Iterator[dict[str, str]]:
    """Keycloak trusts the test API server as a Kubernetes identity provider (Keycloak 26.x ``federated-jwt``),
    and one client trusts ServiceAccount ``workload`` of a fresh namespace.

    The API server's ServiceAccount issuer is ``https://127.0.0.1:<port>`` (tests/support/envtest.py); Keycloak
    fetches ``<issuer>/.well-known/openid-configuration`` and the JWKS from it, trusting the API server's CA
    (``--truststore-paths``, from the ``keycloak`` fixture), anonymously: that needs the discovery role bound to
    ``system:unauthenticated``, as on clusters that publish their issuer. Both ServiceAccounts opt in to tokens
    for the realm issuer (Keycloak's audience) and the token endpoint (the operator's default audience).
    """
    api = kube_env.api_client()
    rbac, core = k8s.RbacAuthorizationV1Api(api), k8s.CoreV1Api(api)
    binding = f"oto-keycloak-issuer-discovery-{uuid.uuid4().hex[:6]}"
    rbac.create_cluster_role_binding({
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:service-account-issuer-discovery"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}],
    })
    namespace = f"kc-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    audiences = f"{realm.issuer}, {realm.token_endpoint}"
    for name in ("workload", "other-workload"):
        core.create_namespaced_service_account(namespace, {"metadata": {
            "name": name, "annotations": {TOKEN_AUDIENCES_ANNOTATION: audiences}}})
    keycloak.admin.create_identity_provider(realm.name, "cluster", "kubernetes",
                                            {"issuer": kube_env.service_account_issuer})
    client_id = realm.client("federated", "federated-jwt", attributes={
        "jwt.credential.issuer": "cluster", "jwt.credential.sub": f"system:serviceaccount:{namespace}:workload"})
    try:
        yield {"namespace": namespace, "client_id": client_id}
    finally:
        try:
            core.delete_namespace(namespace)
            rbac.delete_cluster_role_binding(binding)
        except ApiException:
            pass
        api.close()


@pytest.fixture
async def kube(kube_env: EnvTest) -> AsyncIterator[KubeClient]:
    kube_client = KubeClient(kube_env.api_client(), connections=2)
    yield kube_client
    await kube_client.close()


def federated_resource(realm: Realm, federation: dict[str, str], service_account: str = "workload",
                       audience: str | None = None) -> dict[str, Any]:
    assertion = {"serviceAccountName": service_account} | ({"audience": audience} if audience else {})
    return {"apiVersion": "oauth-token-operator.dev/v1alpha1", "kind": "OAuthClientCredential",
            "metadata": {"name": "federated", "namespace": federation["namespace"]},
            "spec": {"issuerURL": realm.issuer, "clientID": federation["client_id"],
                     "authMethod": "kubernetes_service_account", "serviceAccountAssertion": assertion,
                     "target": {"secretName": "federated-token"}}}


async def fetch_as_service_account(kube: KubeClient, token_client: TokenClient, body: dict[str, Any]) -> TokenResult:
    """What the refresh core does: resolve, learn the endpoint, mint the ServiceAccount token, fetch."""
    occ = OAuthClientCredential.model_validate(body)
    resolved = await resolve_client_config(occ, kube)
    endpoint = await token_client.token_endpoint(resolved.config)
    return await token_client.fetch_token(await with_service_account_assertion(kube, occ, resolved.config, endpoint))


async def test_service_account_token_accepted_by_keycloak(
        realm: Realm, federation: dict[str, str], kube: KubeClient, token_client: TokenClient) -> None:
    """``authMethod: kubernetes_service_account`` against Keycloak: no secret anywhere, the real API server mints
    the ServiceAccount token for the realm issuer, Keycloak verifies it against the cluster's JWKS."""
    result = await fetch_as_service_account(kube, token_client,
                                            federated_resource(realm, federation, audience=realm.issuer))

    realm.assert_issued_to(token_of(result), federation["client_id"])
    assert result.endpoint == realm.token_endpoint  # discovered from issuerURL
    assert kube.requests["create", "serviceaccounts/token"] == 1
    assert ("get", "secrets") not in kube.requests


@pytest.mark.parametrize(("service_account", "audience", "says"), [
    ("other-workload", "realm", "Invalid client or Invalid client credentials"),  # not the trusted subject
    ("workload", None, "Invalid token audience"),  # the default audience (token endpoint) is not Keycloak's
], ids=["another-service-account", "token-endpoint-audience"])
async def test_keycloak_refuses_a_service_account_token_it_does_not_trust(
        realm: Realm, federation: dict[str, str], kube: KubeClient, token_client: TokenClient,
        service_account: str, audience: str | None, says: str) -> None:
    body = federated_resource(realm, federation, service_account, realm.issuer if audience else None)

    with pytest.raises(InvalidClient) as caught:
        await fetch_as_service_account(kube, token_client, body)

    assert says in caught.value.message
    assert "eyJ" not in caught.value.message  # no JWT (the minted token) in what the user reads


def test_token_command_with_a_service_account_token(
        kube_env: EnvTest, realm: Realm, federation: dict[str, str], tmp_path: Path) -> None:
    """``oauth-token-operator token -f`` mints with $KUBECONFIG and Keycloak accepts: the whole chain as processes."""
    path = tmp_path / "federated.yaml"
    path.write_text(yaml.safe_dump(federated_resource(realm, federation, audience=realm.issuer)), encoding="utf-8")

    run = token_command("-f", str(path), "--show-token", "--allow-insecure-http",
                        env={"KUBECONFIG": str(kube_env.kubeconfig)})

    assert run.returncode == 0, run.stderr
    realm.assert_issued_to(json.loads(run.stdout)["accessToken"], federation["client_id"])
