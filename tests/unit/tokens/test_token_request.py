"""What goes on the wire for each client authentication method (RFC 6749 §2.3/§4.4.2, RFC 7523, RFC 8705)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, unquote_plus

import jwt
import pytest
from pydantic import SecretStr
from tokens_testkit import CANARY, private_pem, rsa_key

from oauth_token_operator.api import AuthMethod
from oauth_token_operator.errors import CredentialsNotFound, InvalidSpec
from oauth_token_operator.tokens.model import ClientConfig, TLSMaterial
from oauth_token_operator.tokens.request import (
    basic_credentials,
    basic_encoding_matters,
    build_token_request,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
URL = "https://idp.example.com/oauth/accesstoken"
NASTY = "p@ss:w+rd/100%=&x y"


def _build(**fields: object) -> tuple[dict[str, str], list[tuple[str, str]]]:
    config = ClientConfig(**{"client_id": "torch", "client_secret": SecretStr(CANARY), **fields})  # type: ignore[arg-type]
    request = build_token_request(config, URL, now=NOW, jti="jti-1")
    assert request.url == URL
    return request.headers, request.form


def _basic_pair(header: str) -> tuple[str, str]:
    assert header.startswith("Basic ")
    raw = base64.b64decode(header.removeprefix("Basic ")).decode()
    client_id, sep, secret = raw.partition(":")
    assert sep
    return client_id, secret


def test_client_secret_basic_exact_request() -> None:
    headers, form = _build()
    expected_auth = "Basic " + base64.b64encode(f"torch:{CANARY}".encode()).decode()
    assert headers == {
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": expected_auth,
    }
    assert form == [("grant_type", "client_credentials")]


def test_basic_form_encoding_survives_rfc_and_percent_only_decoders() -> None:
    header = basic_credentials("my client:1", NASTY)
    encoded_id, encoded_secret = _basic_pair(header)
    assert (encoded_id, encoded_secret) == ("my%20client%3A1", "p%40ss%3Aw%2Brd%2F100%25%3D%26x%20y")
    # An RFC 6749 §2.3.1 decoder (form-decoding, '+' is a space) recovers both...
    assert (unquote_plus(encoded_id), unquote_plus(encoded_secret)) == ("my client:1", NASTY)
    # ...and so does a decoder that only handles %XX (Authlib's server), because we never emit '+'.
    assert (unquote(encoded_id), unquote(encoded_secret)) == ("my client:1", NASTY)
    assert "+" not in encoded_secret


def test_basic_raw_encoding_sends_credentials_unchanged() -> None:
    header = basic_credentials("torch", NASTY, "raw")
    assert header == "Basic " + base64.b64encode(f"torch:{NASTY}".encode()).decode()


def test_basic_encoding_choice_is_passed_through() -> None:
    config = ClientConfig(client_id="torch", client_secret=SecretStr(NASTY))
    form = build_token_request(config, URL, now=NOW, jti="j", basic_encoding="form")
    raw = build_token_request(config, URL, now=NOW, jti="j", basic_encoding="raw")
    assert _basic_pair(form.headers["Authorization"])[1] == "p%40ss%3Aw%2Brd%2F100%25%3D%26x%20y"
    assert _basic_pair(raw.headers["Authorization"])[1] == NASTY


@pytest.mark.parametrize(
    ("client_id", "secret", "matters"),
    [
        ("torch", CANARY, False),  # unreserved characters only: both encodings are the same bytes
        ("torch", NASTY, True),
        ("my client", "plain", True),
        ("a:b", NASTY, False),  # a raw "a:b:secret" is ambiguous: never sent
    ],
)
def test_basic_encoding_matters(client_id: str, secret: str, matters: bool) -> None:
    assert basic_encoding_matters(client_id, secret) is matters


def test_client_secret_post_puts_credentials_in_the_body() -> None:
    headers, form = _build(auth_method=AuthMethod.CLIENT_SECRET_POST, client_secret=SecretStr(NASTY))
    assert "Authorization" not in headers
    assert form == [("grant_type", "client_credentials"), ("client_id", "torch"), ("client_secret", NASTY)]


def test_post_body_is_form_encoded_and_round_trips() -> None:
    config = ClientConfig(
        client_id="torch",
        client_secret=SecretStr(NASTY),
        auth_method=AuthMethod.CLIENT_SECRET_POST,
        scopes=("api:read", "api:write"),
    )
    request = build_token_request(config, URL, now=NOW, jti="j")
    body = request.body()
    assert body == (
        b"grant_type=client_credentials&scope=api%3Aread+api%3Awrite&client_id=torch"
        b"&client_secret=p%40ss%3Aw%2Brd%2F100%25%3D%26x+y"
    )
    assert parse_qsl(body.decode(), strict_parsing=True) == request.form


def test_scopes_audience_resources_and_extra_params_in_order() -> None:
    _, form = _build(
        scopes=("api:read", "api:write"),
        audience="https://api.example.com",
        resources=("https://a.example.com", "https://b.example.com"),
        extra_params=(("validity_period", "3600"), ("tenant", "t1")),
        auth_method=AuthMethod.CLIENT_SECRET_POST,
    )
    assert form == [
        ("grant_type", "client_credentials"),
        ("scope", "api:read api:write"),
        ("audience", "https://api.example.com"),
        ("resource", "https://a.example.com"),
        ("resource", "https://b.example.com"),
        ("client_id", "torch"),
        ("client_secret", CANARY),
        ("validity_period", "3600"),
        ("tenant", "t1"),
    ]


def test_empty_scopes_and_audience_are_omitted() -> None:
    _, form = _build(scopes=(), audience=None, resources=())
    assert [name for name, _ in form] == ["grant_type"]


@pytest.mark.parametrize("name", ["grant_type", "client_secret", "scope", "resource"])
def test_extra_params_cannot_override_our_parameters(name: str) -> None:
    with pytest.raises(InvalidSpec, match=name):
        _build(extra_params=((name, "x"),))


@pytest.mark.parametrize("method", [AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST])
@pytest.mark.parametrize("secret", [None, SecretStr("")])
def test_secret_methods_need_a_secret(method: AuthMethod, secret: SecretStr | None) -> None:
    config = ClientConfig(
        client_id="torch", client_secret=secret, auth_method=method, credentials_source="Secret team-a/torch-client"
    )
    with pytest.raises(CredentialsNotFound, match="Secret team-a/torch-client"):
        build_token_request(config, URL, now=NOW, jti="j")


def test_empty_client_id_is_reported() -> None:
    with pytest.raises(CredentialsNotFound, match="empty client ID"):
        build_token_request(ClientConfig(client_id="", client_secret=SecretStr(CANARY)), URL, now=NOW, jti="j")


def test_tls_client_auth_sends_client_id_and_no_secret() -> None:
    tls = TLSMaterial(client_cert_pem="CERT", client_key_pem=SecretStr("KEY"))
    headers, form = _build(auth_method=AuthMethod.TLS_CLIENT_AUTH, tls=tls)
    assert "Authorization" not in headers
    assert form == [("grant_type", "client_credentials"), ("client_id", "torch")]


def test_tls_client_auth_without_certificate_is_invalid() -> None:
    with pytest.raises(InvalidSpec, match="clientCertificateSecretRef"):
        _build(auth_method=AuthMethod.TLS_CLIENT_AUTH)


def test_prepared_request_repr_hides_credentials() -> None:
    config = ClientConfig(client_id="torch", client_secret=SecretStr(CANARY), auth_method=AuthMethod.CLIENT_SECRET_POST)
    request = build_token_request(config, URL, now=NOW, jti="j")
    assert CANARY not in repr(request)
    assert CANARY in request.secret_values()


def test_secret_values_cover_basic_header_and_assertion() -> None:
    config = ClientConfig(client_id="torch", client_secret=SecretStr(CANARY))
    request = build_token_request(config, URL, now=NOW, jti="j")
    assert request.secret_values() == (request.headers["Authorization"].removeprefix("Basic "),)


def test_private_key_jwt_form() -> None:
    config = ClientConfig(
        client_id="torch", auth_method=AuthMethod.PRIVATE_KEY_JWT, private_key_pem=SecretStr(private_pem(rsa_key()))
    )
    request = build_token_request(config, URL, now=NOW, jti="jti-1")
    names = [name for name, _ in request.form]
    assert names == ["grant_type", "client_id", "client_assertion_type", "client_assertion"]
    assert dict(request.form)["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "Authorization" not in request.headers
    claims = jwt.decode(
        dict(request.form)["client_assertion"],
        rsa_key().public_key(),
        algorithms=["RS256"],
        audience=URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["jti"] == "jti-1"
