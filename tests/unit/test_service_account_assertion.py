"""The pure half of kubernetes_service_account: the audience to mint for and the ServiceAccount's opt-in."""

from __future__ import annotations

from typing import Any

import pytest

from oauth_token_operator.api import OAuthClientCredential, OAuthClientCredentialSpec
from oauth_token_operator.kube.serviceaccounts import with_service_account_assertion
from oauth_token_operator.service_account_assertion import (
    TOKEN_AUDIENCES_ANNOTATION,
    assertion_audience,
    assertion_refusal,
    permitted_audiences,
)
from oauth_token_operator.tokens.model import ClientConfig

ENDPOINT = "https://sso.example.com/realms/apps/protocol/openid-connect/token"


def spec(**assertion: Any) -> OAuthClientCredentialSpec:
    return OAuthClientCredentialSpec.model_validate({
        "issuerURL": "https://sso.example.com/realms/apps", "clientID": "torch-app",
        "authMethod": "kubernetes_service_account",
        "serviceAccountAssertion": {"serviceAccountName": "torch-client", **assertion},
        "target": {"secretName": "t"}})


def test_audience_defaults_to_the_token_endpoint_in_use() -> None:
    assert assertion_audience(spec(), ENDPOINT) == ENDPOINT
    assert assertion_audience(spec(audience="api://AzureADTokenExchange"), ENDPOINT) == "api://AzureADTokenExchange"


def test_expiration_defaults_to_ten_minutes() -> None:
    parsed = spec().service_account_assertion
    assert parsed is not None and parsed.expiration_seconds == 600


@pytest.mark.parametrize(("value", "allowed"), [
    (None, set()),
    ("", set()),
    (" , ", set()),
    ("api://AzureADTokenExchange", {"api://AzureADTokenExchange"}),
    (" https://a.example.com ,https://b.example.com,, ", {"https://a.example.com", "https://b.example.com"}),
])
def test_permitted_audiences_are_a_trimmed_comma_separated_list(value: str | None, allowed: set[str]) -> None:
    annotations = {TOKEN_AUDIENCES_ANNOTATION: value} if value is not None else {"other": "x"}
    assert permitted_audiences(annotations) == allowed


def test_listed_audience_is_permitted() -> None:
    annotations = {TOKEN_AUDIENCES_ANNOTATION: f"api://AzureADTokenExchange, {ENDPOINT}"}
    assert assertion_refusal("team-a", "torch-client", annotations, ENDPOINT) is None


def test_without_the_annotation_the_refusal_says_which_annotation_to_add() -> None:
    message = assertion_refusal("team-a", "torch-client", None, ENDPOINT)
    assert message is not None
    assert "ServiceAccount team-a/torch-client" in message
    assert f"{TOKEN_AUDIENCES_ANNOTATION}={ENDPOINT}" in message


@pytest.mark.parametrize("audience", [
    "https://sso.example.com/realms/apps",  # a prefix of what is listed is not what is listed
    ENDPOINT + "/",  # nor is a near miss
    "*",
])
def test_an_audience_not_listed_exactly_is_refused(audience: str) -> None:
    annotations = {TOKEN_AUDIENCES_ANNOTATION: ENDPOINT}
    message = assertion_refusal("team-a", "torch-client", annotations, audience)
    assert message is not None
    assert f"does not allow tokens for audience {audience}" in message and f"lists only {ENDPOINT}" in message


def test_no_wildcards() -> None:
    assert assertion_refusal("ns", "sa", {TOKEN_AUDIENCES_ANNOTATION: "*"}, ENDPOINT) is not None


class _Unreachable:
    """A Kubernetes API that must not be asked anything."""

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise AssertionError("no ServiceAccount is read for a method that needs no ServiceAccount token")

    async def create_service_account_token(self, namespace: str, name: str, audience: str,
                                           expiration_seconds: int) -> dict[str, Any]:
        raise AssertionError("nothing is minted for a method that needs no ServiceAccount token")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_jwt"])
async def test_other_methods_pass_through_without_asking_the_cluster(method: str) -> None:
    occ = OAuthClientCredential.model_validate({
        "metadata": {"name": "r", "namespace": "team-a"},
        "spec": {"tokenURL": ENDPOINT, "authMethod": method, "clientCredentialsSecretRef": {"name": "c"},
                 "target": {"secretName": "t"}}})
    config = ClientConfig(client_id="id", auth_method=occ.spec.auth_method)
    assert await with_service_account_assertion(_Unreachable(), occ, config, ENDPOINT) is config
