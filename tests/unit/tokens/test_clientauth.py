"""One strategy per authMethod: every method has one, and each redacts every secret it puts on the wire."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

import jwt
import pytest
from pydantic import SecretStr
from tokens_testkit import private_pem, rsa_key

from oauth_token_operator.api import AuthMethod, SigningAlgorithm
from oauth_token_operator.errors import CredentialsNotFound, InvalidSpec
from oauth_token_operator.tokens.classify import classify_error_response, config_secrets, redact
from oauth_token_operator.tokens.clientauth import STRATEGIES, ClientAuth, Credential, strategy_for
from oauth_token_operator.tokens.model import ClientConfig, TLSMaterial
from oauth_token_operator.tokens.request import build_token_request

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
URL = "https://idp.example.com/realms/apps/protocol/openid-connect/token"
SECRET_CANARY = "Canary-secret-7f3a-p@ss:w+rd/100%=&x y-" + "s" * 40  # long enough for HS512
ASSERTION_CANARY = "eyJhbGciOiJSUzI1NiJ9.Canary-minted-ServiceAccount-token-51c8.c2ln"
KEY_CANARY = "-----BEGIN PRIVATE KEY-----\nCanary-tls-key-0b9e\n-----END PRIVATE KEY-----\n"

#: What may travel in the clear: everything else a strategy adds must be in its secrets.
PUBLIC_HEADERS = {"Accept", "Content-Type"}
PUBLIC_FORM = {"grant_type", "client_id", "client_assertion_type", "scope", "audience", "resource"}


def full_config(method: AuthMethod) -> ClientConfig:
    """A config holding a canary in every secret field, whatever the method reads."""
    return ClientConfig(
        client_id="torch-client",
        auth_method=method,
        client_secret=SecretStr(SECRET_CANARY),
        private_key_pem=SecretStr(private_pem(rsa_key())),
        client_assertion=SecretStr(ASSERTION_CANARY),
        tls=TLSMaterial(client_cert_pem="CERT", client_key_pem=SecretStr(KEY_CANARY)),
        scopes=("api:read",),
    )


def test_every_auth_method_has_exactly_its_strategy() -> None:
    assert set(STRATEGIES) == set(AuthMethod)
    for method in AuthMethod:
        strategy = strategy_for(method)
        assert isinstance(strategy, ClientAuth) and strategy.method is method
        assert method.value in repr(strategy)


@pytest.mark.parametrize("method", list(AuthMethod))
def test_every_secret_a_strategy_sends_is_redacted(method: AuthMethod) -> None:
    config = full_config(method)
    request = build_token_request(config, URL, now=NOW, jti="jti-1")
    secrets = request.secret_values()

    sent = [value for name, value in request.headers.items() if name not in PUBLIC_HEADERS]
    sent += [value for name, value in request.form if name not in PUBLIC_FORM]
    for value in sent:  # an Authorization header is "Basic <credentials>": the credentials are the secret
        assert value in secrets or value.removeprefix("Basic ") in secrets, f"{method}: unredacted {value[:12]}..."

    # A server echoing the whole request back (headers, the encoded body, the decoded values) leaks nothing.
    wire = " ".join([*request.headers.values(), request.body().decode(), *(v for _, v in request.form)])
    echoed = redact(wire, config_secrets(config, *secrets))
    for canary in (SECRET_CANARY, ASSERTION_CANARY, "Canary-tls-key", *secrets):
        assert canary not in echoed, f"{method}: {canary[:12]}... survived redaction"
    assert "Canary" not in echoed
    refused = classify_error_response(401, {"content-type": "text/plain"}, wire.encode(),
                                      secrets=config_secrets(config, *secrets), auth_method=method)
    assert "Canary" not in refused.message and "Canary" not in repr(refused)


@pytest.mark.parametrize("method", [AuthMethod.CLIENT_SECRET_JWT, AuthMethod.PRIVATE_KEY_JWT,
                                    AuthMethod.TLS_CLIENT_AUTH, AuthMethod.KUBERNETES_SERVICE_ACCOUNT])
def test_methods_without_a_secret_on_the_wire_never_send_it(method: AuthMethod) -> None:
    request = build_token_request(full_config(method), URL, now=NOW, jti="jti-1")
    wire = " ".join([*request.headers.values(), request.body().decode()])
    for form in (SECRET_CANARY, quote(SECRET_CANARY, safe=""), quote_plus(SECRET_CANARY),
                 base64.b64encode(f"torch-client:{quote(SECRET_CANARY, safe='')}".encode()).decode()):
        assert form not in wire
    assert "Authorization" not in request.headers


@pytest.mark.parametrize("method", [m for m in AuthMethod if Credential.CLIENT_SECRET in strategy_for(m).needs])
def test_secret_methods_refuse_to_run_without_the_secret(method: AuthMethod) -> None:
    config = ClientConfig(client_id="torch", auth_method=method, credentials_source="Secret team-a/creds")
    with pytest.raises(CredentialsNotFound, match="Secret team-a/creds"):
        build_token_request(config, URL, now=NOW, jti="j")


def test_needs_say_what_resolve_must_read() -> None:
    needs = {method: strategy_for(method).needs for method in AuthMethod}
    assert needs == {
        AuthMethod.CLIENT_SECRET_BASIC: {Credential.CLIENT_SECRET},
        AuthMethod.CLIENT_SECRET_POST: {Credential.CLIENT_SECRET},
        AuthMethod.CLIENT_SECRET_JWT: {Credential.CLIENT_SECRET},
        AuthMethod.PRIVATE_KEY_JWT: {Credential.PRIVATE_KEY},
        AuthMethod.TLS_CLIENT_AUTH: {Credential.CLIENT_CERTIFICATE},
        AuthMethod.KUBERNETES_SERVICE_ACCOUNT: {Credential.SERVICE_ACCOUNT_TOKEN},
    }
    assert [m for m in AuthMethod if strategy_for(m).retries_basic_encoding] == [AuthMethod.CLIENT_SECRET_BASIC]


def test_refusal_hints_point_at_what_the_method_uses() -> None:
    hints = {method: strategy_for(method).refusal_hint("Secret team-a/creds", "") for method in AuthMethod}
    assert all("team-a/creds" in hint for hint in hints.values())
    assert "privateKeySecretRef" in hints[AuthMethod.PRIVATE_KEY_JWT]
    assert "tls.clientCertificateSecretRef" in hints[AuthMethod.TLS_CLIENT_AUTH]
    assert "client_secret_jwt" in hints[AuthMethod.CLIENT_SECRET_JWT]
    assert "system:serviceaccount:" in hints[AuthMethod.KUBERNETES_SERVICE_ACCOUNT]
    assert "client_secret_basic" in strategy_for(AuthMethod.CLIENT_SECRET_POST).refusal_hint("S", "basic")
    refused = classify_error_response(401, {}, b'{"error": "invalid_client"}',
                                      auth_method=AuthMethod.KUBERNETES_SERVICE_ACCOUNT, credentials_source="S")
    assert "serviceAccountAssertion.audience" in refused.message


# ---------------------------------------------------------------------------------------- client_secret_jwt


def _secret_jwt(**fields: object) -> ClientConfig:
    return ClientConfig(**{"client_id": "torch-client", "auth_method": AuthMethod.CLIENT_SECRET_JWT,  # type: ignore[arg-type]
                           "client_secret": SecretStr(SECRET_CANARY), **fields})


@pytest.mark.parametrize("algorithm", [None, "HS256", "HS384", "HS512"])
def test_client_secret_jwt_signs_the_claims_with_the_secret(algorithm: str | None) -> None:
    config = _secret_jwt(signing_algorithm=SigningAlgorithm(algorithm) if algorithm else None)
    form = dict(build_token_request(config, URL, now=NOW, jti="jti-1").form)
    assert form["client_id"] == "torch-client"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    expected = algorithm or "HS256"
    assert jwt.get_unverified_header(assertion) == {"alg": expected, "typ": "JWT"}
    claims = jwt.decode(assertion, SECRET_CANARY.encode(), algorithms=[expected], audience=URL,
                        options={"verify_exp": False, "verify_iat": False})
    issued = int(NOW.timestamp())
    assert claims == {"iss": "torch-client", "sub": "torch-client", "aud": URL, "jti": "jti-1",
                      "iat": issued, "exp": issued + 60}
    with pytest.raises(jwt.InvalidSignatureError):  # a different secret does not verify it
        jwt.decode(assertion, b"another-secret-" * 5, algorithms=[expected], options={"verify_aud": False})


def test_client_secret_jwt_audience_kid_and_fresh_jti() -> None:
    config = _secret_jwt(assertion_audience="https://idp.example.com/realms/apps", signing_key_id="k1")
    first = dict(build_token_request(config, URL, now=NOW, jti="a").form)["client_assertion"]
    second = dict(build_token_request(config, URL, now=NOW, jti="b").form)["client_assertion"]
    assert jwt.get_unverified_header(first)["kid"] == "k1"
    for assertion, jti in ((first, "a"), (second, "b")):
        claims = jwt.decode(assertion, options={"verify_signature": False})
        assert (claims["aud"], claims["jti"]) == ("https://idp.example.com/realms/apps", jti)


def test_client_secret_jwt_with_a_short_secret_signs_without_warnings() -> None:
    # Servers generate what they generate; RFC 7518's length is a recommendation. (Warnings are errors here.)
    config = _secret_jwt(client_secret=SecretStr("short"))
    assertion = dict(build_token_request(config, URL, now=NOW, jti="j").form)["client_assertion"]
    assert assertion.count(".") == 2


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "PS512"])
def test_client_secret_jwt_refuses_asymmetric_algorithms(algorithm: str) -> None:
    with pytest.raises(InvalidSpec, match="HS256, HS384 or HS512"):
        build_token_request(_secret_jwt(signing_algorithm=SigningAlgorithm(algorithm)), URL, now=NOW, jti="j")


def test_kubernetes_service_account_sends_the_minted_token_as_is() -> None:
    config = ClientConfig(client_id="torch-client", auth_method=AuthMethod.KUBERNETES_SERVICE_ACCOUNT,
                          client_assertion=SecretStr(ASSERTION_CANARY))
    request = build_token_request(config, URL, now=NOW, jti="j")
    assert request.form == [
        ("grant_type", "client_credentials"),
        ("client_id", "torch-client"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", ASSERTION_CANARY),
    ]
    assert ASSERTION_CANARY not in repr(request) and ASSERTION_CANARY not in repr(config)
    with pytest.raises(CredentialsNotFound, match="serviceAccountAssertion"):
        build_token_request(ClientConfig(client_id="t", auth_method=AuthMethod.KUBERNETES_SERVICE_ACCOUNT),
                            URL, now=NOW, jti="j")
