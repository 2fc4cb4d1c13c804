"""Spec validation a user meets with `token -f` (the API server enforces the same rules, see integration)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from oauth_token_operator.api import OAuthClientCredentialSpec, parse_duration


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tokenURL": "https://idp.example.com/oauth/token",
        "clientCredentialsSecretRef": {"name": "creds"},
        "target": {"secretName": "tok"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_minimal_spec_gets_documented_defaults() -> None:
    parsed = OAuthClientCredentialSpec.model_validate(spec())
    assert parsed.auth_method == "client_secret_basic"
    assert parsed.client_credentials_secret_ref.client_id_key == "client_id"
    assert parsed.client_credentials_secret_ref.client_secret_key == "client_secret"
    assert parsed.scopes == [] and parsed.extra_params == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"issuerURL": "https://idp.example.com"}, "exactly one of tokenURL and issuerURL"),
        ({"tokenURL": None}, "exactly one of tokenURL and issuerURL"),
        ({"tokenURL": "ftp://idp.example.com/token"}, "String should match pattern"),
        ({"tokenURL": "idp.example.com/token"}, "String should match pattern"),
        ({"authMethod": "private_key_jwt"}, "needs privateKeySecretRef"),
        ({"authMethod": "tls_client_auth"}, "needs tls.clientCertificateSecretRef"),
        ({"authMethod": "client_secret_hmac"}, "Input should be"),
        ({"scope": "read"}, "Extra inputs are not permitted"),
        ({"extraParams": {"client_secret": "x"}}, "may not set client_secret"),
        ({"target": {"secretName": "Bad_Name"}}, "String should match pattern"),
        ({"target": {"secretName": "t", "template": {"data": {"a": "${token}"}}}}, "unknown placeholder"),
        ({"refreshPolicy": {"renewBefore": "10m", "renewBeforePercentage": 20}}, "at most one"),
        ({"refreshPolicy": {"renewBefore": "ten minutes"}}, "String should match pattern"),
        ({"clientCredentialsSecretRef": None}, "set clientID or clientCredentialsSecretRef"),
        ({"clientCredentialsSecretRef": None, "clientID": "app"}, "this authMethod needs clientCredentialsSecretRef"),
        ({"clientID": "app", "clientCredentialsSecretRef": {"name": "c", "clientIDKey": "id"}}, "in one place"),
        ({"signingAlgorithm": "HS256"}, "only for authMethod client_secret_jwt"),
        ({"authMethod": "client_secret_jwt", "signingAlgorithm": "ES256"}, "signs with signingAlgorithm HS256"),
        ({"authMethod": "kubernetes_service_account"}, "needs serviceAccountAssertion"),
        ({"serviceAccountAssertion": {"serviceAccountName": "sa"}}, "only for that authMethod"),
        ({"authMethod": "kubernetes_service_account", "assertionAudience": "x",
          "serviceAccountAssertion": {"serviceAccountName": "sa"}}, "serviceAccountAssertion.audience"),
        ({"authMethod": "kubernetes_service_account",
          "serviceAccountAssertion": {"serviceAccountName": "sa", "expirationSeconds": 599}}, "greater than or equal"),
        ({"credentialsExpiryWarning": "a week"}, "String should match pattern"),
    ],
)
def test_specs_a_user_could_get_wrong_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OAuthClientCredentialSpec.model_validate(spec(**overrides))


def test_full_spec_from_api_md_parses() -> None:
    parsed = OAuthClientCredentialSpec.model_validate(spec(
        authMethod="private_key_jwt",
        privateKeySecretRef={"name": "torch-jwt-key", "key": "private_key"},
        signingAlgorithm="RS256", signingKeyID="client-rsa", assertionAudience="https://idp.example.com",
        scopes=["api:read", "api:write"], audience="https://api.example.com",
        resources=["https://api.example.com"], extraParams={"validity_period": "3600"},
        tls={"caBundleRef": {"kind": "ConfigMap", "name": "idp-ca", "key": "ca.crt"},
             "clientCertificateSecretRef": {"name": "torch-mtls"}, "insecureSkipVerify": False},
        target={"secretName": "torch-token", "template": {"data": {"Authorization": "Bearer ${access_token}"},
                                                          "labels": {"team": "a"}}},
        rolloutRestartTargets=[{"kind": "Deployment", "name": "torch-client"}],
    ))
    assert parsed.extra_params == {"validity_period": "3600"}
    assert parsed.tls is not None and parsed.tls.ca_bundle_ref is not None
    assert parsed.tls.ca_bundle_ref.kind == "ConfigMap"


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1h30m", 5400), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 minutes")
