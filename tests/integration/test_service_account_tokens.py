"""``authMethod: kubernetes_service_account`` end to end: the test tier's real kube-apiserver mints the tokens
(TokenRequest API), and the test authorization server verifies them as Entra ID or Keycloak would: signature
against the cluster's JWKS (``/openid/v1/jwks``), issuer, subject ``system:serviceaccount:NS:SA``, audience and
lifetime. The refusals are proven too: a ServiceAccount that did not opt in, or did not list the audience, gets
nothing minted (no TokenRequest is even made).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from kubernetes import client
from tests.support.authserver import AuthServer, FederatedTrust
from tests.support.envtest import EnvTest

from oauth_token_operator.api import OAuthClientCredential
from oauth_token_operator.errors import AssertionNotPermitted, CredentialsNotFound, InvalidClient, OperatorError
from oauth_token_operator.kube.client import KubeClient
from oauth_token_operator.kube.serviceaccounts import mint_service_account_token, with_service_account_assertion
from oauth_token_operator.resolve import referenced_objects, resolve_client_config
from oauth_token_operator.service_account_assertion import TOKEN_AUDIENCES_ANNOTATION
from oauth_token_operator.tokens.client import TokenClient
from oauth_token_operator.tokens.model import ClientConfig
from oauth_token_operator.tokens.networks import DeniedNetworks

SA = "torch-client"
TOKEN_REQUESTS = ("create", "serviceaccounts/token")


@pytest.fixture
async def kube(kube_env: EnvTest) -> AsyncIterator[KubeClient]:
    kube_client = KubeClient(kube_env.api_client(), connections=2)
    yield kube_client
    await kube_client.close()


@pytest.fixture
async def token_client() -> AsyncIterator[TokenClient]:
    # The test servers are on loopback, which the operator's default denied networks refuse.
    tokens = TokenClient(allow_insecure_http=True, timeout=5.0, denied_networks=DeniedNetworks())
    yield tokens
    await tokens.aclose()


@pytest.fixture
def authserver() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster_jwks(kube_env: EnvTest) -> dict[str, Any]:
    """The ServiceAccount issuer's public keys, from where a federating server fetches them."""
    with kube_env.api_client() as api:
        discovery = client.WellKnownApi(api).get_service_account_issuer_open_id_configuration(
            _preload_content=False).data
        keys = client.OpenidApi(api).get_service_account_issuer_open_id_keyset(_preload_content=False).data
    assert json.loads(discovery)["issuer"] == kube_env.service_account_issuer
    jwks: dict[str, Any] = json.loads(keys)
    return jwks


def service_account(admin: client.ApiClient, namespace: str, audiences: str | None, name: str = SA) -> None:
    annotations = {TOKEN_AUDIENCES_ANNOTATION: audiences} if audiences is not None else None
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name, annotations=annotations)))


def resource(namespace: str, token_url: str, **assertion: Any) -> OAuthClientCredential:
    return OAuthClientCredential.model_validate({
        "metadata": {"name": "torch", "namespace": namespace},
        "spec": {"tokenURL": token_url, "clientID": "torch-app", "authMethod": "kubernetes_service_account",
                 "serviceAccountAssertion": {"serviceAccountName": SA, **assertion},
                 "target": {"secretName": "torch-token"}},
    })


def trust(kube_env: EnvTest, namespace: str, **fields: Any) -> FederatedTrust:
    """What the server trusts: the cluster's issuer and ``system:serviceaccount:NS:SA`` unless ``fields`` say
    otherwise (``jwks`` and ``audience`` are required)."""
    defaults: dict[str, Any] = {"issuer": kube_env.service_account_issuer,
                                "subject": f"system:serviceaccount:{namespace}:{SA}", "max_lifetime": 600}
    return FederatedTrust(**(defaults | fields))


async def prepared(kube: KubeClient, occ: OAuthClientCredential, endpoint: str) -> ClientConfig:
    """What the refresh core does: resolve, learn the endpoint, mint, then fetch_token."""
    resolved = await resolve_client_config(occ, kube)
    return await with_service_account_assertion(kube, occ, resolved.config, endpoint)


def assert_not_in(secret: str, exc: BaseException) -> None:
    signature = secret.rsplit(".", 1)[-1]
    for text in (str(exc), repr(exc), repr(exc.args), exc.message if isinstance(exc, OperatorError) else ""):
        assert secret not in text and signature not in text


# --------------------------------------------------------------------------------------------- accepted


async def test_minted_token_is_verified_against_the_cluster_jwks_and_accepted(
        kube_env: EnvTest, admin: client.ApiClient, namespace: str, kube: KubeClient, token_client: TokenClient,
        authserver: AuthServer, cluster_jwks: dict[str, Any]) -> None:
    service_account(admin, namespace, f"https://unrelated.example.com, {authserver.token_url}")
    authserver.add_client("torch-app", auth_method="federated_jwt",
                          federated=trust(kube_env, namespace, jwks=cluster_jwks, audience=authserver.token_url))
    occ = resource(namespace, authserver.token_url)
    assert referenced_objects(occ) == set(), "clientID and a ServiceAccount: no Secret to read"

    config = await prepared(kube, occ, authserver.token_url)
    minted = config.client_assertion.get_secret_value() if config.client_assertion else ""
    assert minted.count(".") == 2 and minted not in repr(config)
    result = await token_client.fetch_token(config)

    assert authserver.accepts(result.token.access_token.get_secret_value())
    [request] = authserver.requests
    assert request.granted and request.auth_method == "federated_jwt" and request.client_id == "torch-app"
    [claims] = authserver.accepted_federated_claims
    assert claims["iss"] == kube_env.service_account_issuer
    assert claims["sub"] == f"system:serviceaccount:{namespace}:{SA}"
    assert claims["aud"] == [authserver.token_url]  # default audience: the token endpoint
    assert claims["exp"] - claims["iat"] == 600  # expirationSeconds' default
    assert kube.requests[TOKEN_REQUESTS] == 1
    assert ("get", "secrets") not in kube.requests

    # Every token request gets a token of its own.
    again = await prepared(kube, occ, authserver.token_url)
    assert again.client_assertion is not None and again.client_assertion.get_secret_value() != minted
    assert kube.requests[TOKEN_REQUESTS] == 2


async def test_audience_and_lifetime_from_the_spec(
        kube_env: EnvTest, admin: client.ApiClient, namespace: str, kube: KubeClient, token_client: TokenClient,
        authserver: AuthServer, cluster_jwks: dict[str, Any]) -> None:
    audience = "api://AzureADTokenExchange"
    service_account(admin, namespace, audience)
    authserver.add_client("torch-app", auth_method="federated_jwt",
                          federated=trust(kube_env, namespace, jwks=cluster_jwks, audience=audience,
                                                  max_lifetime=900))
    occ = resource(namespace, authserver.token_url, audience=audience, expirationSeconds=900)

    await token_client.fetch_token(await prepared(kube, occ, authserver.token_url))

    [claims] = authserver.accepted_federated_claims
    assert claims["aud"] == [audience] and claims["exp"] - claims["iat"] == 900


# ----------------------------------------------------------------------------- what the server refuses


@pytest.mark.parametrize("mismatch", ["subject", "keys", "lifetime", "audience"])
async def test_server_refuses_a_token_it_does_not_trust_and_the_token_stays_secret(
        kube_env: EnvTest, admin: client.ApiClient, namespace: str, kube: KubeClient, token_client: TokenClient,
        authserver: AuthServer, cluster_jwks: dict[str, Any], mismatch: str) -> None:
    service_account(admin, namespace, authserver.token_url)
    foreign = {"keys": [RSAKey.generate_key(2048, parameters={"kid": kid}).as_dict(private=False)
                        for kid in {k.get("kid", "") for k in cluster_jwks["keys"]}]}
    changes: dict[str, Any] = {"jwks": cluster_jwks, "audience": authserver.token_url}
    changes |= {"subject": {"subject": f"system:serviceaccount:{namespace}:someone-else"},
               "keys": {"jwks": foreign},  # same kid, another key: a forged token would look like this
               "lifetime": {"max_lifetime": 300},
               "audience": {"audience": authserver.issuer + "/other"}}[mismatch]
    authserver.add_client("torch-app", auth_method="federated_jwt",
                          federated=trust(kube_env, namespace, **changes))
    config = await prepared(kube, resource(namespace, authserver.token_url), authserver.token_url)
    minted = config.client_assertion.get_secret_value() if config.client_assertion else ""

    with pytest.raises(InvalidClient) as caught:
        await token_client.fetch_token(config)

    assert "system:serviceaccount:" in caught.value.message  # the hint says what the server must trust
    # ... and the server's own words say which check failed: each is really verified
    assert {"subject": "'sub'", "keys": "bad_signature", "lifetime": "lives longer than 300s",
            "audience": "'aud'"}[mismatch] in caught.value.message
    assert_not_in(minted, caught.value)
    assert authserver.accepted_federated_claims == []


# ------------------------------------------------------------------------------ what the operator refuses


@pytest.mark.parametrize(("annotation", "says"), [
    (None, "does not allow the operator to mint tokens"),
    ("https://sso.example.com/realms/apps, api://AzureADTokenExchange", "lists only api://AzureADTokenExchange"),
    ("", "does not allow the operator to mint tokens"),
])
async def test_nothing_is_minted_without_the_opt_in_for_that_audience(
        admin: client.ApiClient, namespace: str, kube: KubeClient, authserver: AuthServer,
        annotation: str | None, says: str) -> None:
    service_account(admin, namespace, annotation)
    occ = resource(namespace, authserver.token_url)

    with pytest.raises(AssertionNotPermitted) as caught:
        await prepared(kube, occ, authserver.token_url)

    message = caught.value.message
    assert says in message and TOKEN_AUDIENCES_ANNOTATION in message and authserver.token_url in message
    assert f"{namespace}/{SA}" in message
    assert caught.value.reason == "AssertionNotPermitted"
    assert kube.requests[TOKEN_REQUESTS] == 0, "no TokenRequest may be made for a ServiceAccount that did not opt in"
    assert authserver.requests == []


async def test_a_missing_service_account_is_credentials_not_found(namespace: str, kube: KubeClient) -> None:
    with pytest.raises(CredentialsNotFound, match=f"ServiceAccount {namespace}/{SA} not found"):
        await mint_service_account_token(kube, namespace, SA, "https://idp.example.com/token", 600)
    assert kube.requests[TOKEN_REQUESTS] == 0
