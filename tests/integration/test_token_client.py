"""TokenClient against real servers on loopback: Authlib's authorization server and gateway imitations.

Every success is checked end to end (the issuing server accepts the token at its ``/api/whoami``), and every
failure is checked for the secret it must not carry (the canary below, in every encoding that went on the
wire).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey
from pydantic import SecretStr
from tests.support.authserver import AuthServer, redact_headers
from tests.support.gateways import AnalyticsGateway, ApigeeGateway, ScriptedResponse, ScriptedServer, WSO2Gateway
from tests.support.pki import KeyType, TestCA, generate_private_key, private_key_pem

from oauth_token_operator.api import AuthMethod, SigningAlgorithm
from oauth_token_operator.errors import (
    EndpointUnavailable,
    InvalidClient,
    InvalidSpec,
    InvalidTokenResponse,
    OperatorError,
    TokenRequestRejected,
)
from oauth_token_operator.tokens.client import TokenClient, TokenResult
from oauth_token_operator.tokens.egress import DeniedNetworks
from oauth_token_operator.tokens.model import ClientConfig, TLSMaterial

SPECIAL = "p@ss:w+rd/100%=&x y"
"""A secret with every character that Basic encoding gets wrong somewhere."""
CANARY = "Canary-9d2f41-p@ss:w+rd/100%=&x y"
"""The secret of every failing request: it must never appear in an error message, in any encoding."""
LOOPBACK_ALLOWED = DeniedNetworks()
"""The test servers listen on 127.0.0.1, which the operator's default denied networks refuse."""


# ------------------------------------------------------------------------------------------------- helpers


def _encodings(secret: str, client_id: str | None = None) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret), secret.split("-")[1] if "-" in secret else secret}
    if client_id is not None:
        for user, password in ((client_id, secret), (quote(client_id, safe=""), quote(secret, safe=""))):
            forms.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    return forms


def assert_no_secret(exc: BaseException, secret: str = CANARY, client_id: str | None = None) -> None:
    texts = [str(exc), repr(exc.args)]
    if isinstance(exc, OperatorError):
        texts.append(exc.message)
    for text in texts:
        for form in _encodings(secret, client_id):
            assert form not in text, f"secret material in error message: {text!r}"


def config(url: str, client_id: str, secret: str | None = None, *, issuer: bool = False,
           method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC, tls: TLSMaterial | None = None,
           **kwargs: Any) -> ClientConfig:
    return ClientConfig(
        client_id=client_id,
        token_url=None if issuer else url,
        issuer_url=url if issuer else None,
        client_secret=SecretStr(secret) if secret is not None else None,
        auth_method=method,
        tls=tls or TLSMaterial(),
        **kwargs,
    )


def lifetime(result: TokenResult) -> float:
    return (result.token.expires_at - result.token.issued_at).total_seconds()


def token_of(result: TokenResult) -> str:
    return result.token.access_token.get_secret_value()


def new_key(key_type: KeyType, kid: str) -> tuple[str, dict[str, Any]]:
    """A private key (PEM) and its public JWK with ``kid``, as a client would register it."""
    pem = private_key_pem(generate_private_key(key_type))
    key = RSAKey.import_key(pem) if key_type == "rsa" else ECKey.import_key(pem)
    return pem, {**key.as_dict(private=False), "kid": kid, "use": "sig"}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every server thread (and every handler thread) is gone once a test's fixtures are torn down."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while (leaked := [t for t in threading.enumerate() if t not in before]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
async def client() -> AsyncIterator[TokenClient]:
    """A client that may talk plain http to loopback servers (most tests are not about TLS)."""
    token_client = TokenClient(allow_insecure_http=True, timeout=5.0, denied_networks=LOOPBACK_ALLOWED)
    yield token_client
    await token_client.aclose()


@pytest.fixture
async def strict_client() -> AsyncIterator[TokenClient]:
    token_client = TokenClient(timeout=5.0, denied_networks=LOOPBACK_ALLOWED)
    yield token_client
    await token_client.aclose()


@pytest.fixture
def authserver() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


@pytest.fixture
def https_authserver(ca: TestCA) -> Iterator[AuthServer]:
    with AuthServer(tls=ca) as server:
        server.add_client("tls-client", secret=SPECIAL)
        yield server


# --------------------------------------------------------------------------- the server quirk we encode for


def test_authlib_basic_decoding_percent_but_not_plus(authserver: AuthServer) -> None:
    """The finding documented in tests.support.authserver: Authlib unquotes %XX but leaves '+' alone."""
    authserver.add_client("quirk", secret=SPECIAL)

    def status(encoded_secret: str) -> int:
        credentials = base64.b64encode(f"quirk:{encoded_secret}".encode()).decode()
        response = httpx.post(authserver.token_url, data={"grant_type": "client_credentials"},
                              headers={"Authorization": f"Basic {credentials}"}, trust_env=False)
        return response.status_code

    assert status(quote(SPECIAL, safe="")) == 200  # space as %20: decoded back
    assert status(quote_plus(SPECIAL)) == 401  # space as '+': '+' is kept, secret mismatch
    assert status(SPECIAL) == 200  # raw: '%=&' is no valid escape, so nothing changes


# ------------------------------------------------------------------------------------ client secret methods


async def test_client_secret_basic_with_special_characters(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("basic-client", secret=SPECIAL, scopes=["api:read", "api:write"])

    result = await client.fetch_token(config(authserver.token_url, "basic-client", SPECIAL, scopes=("api:read",)))

    assert authserver.accepts(token_of(result))
    assert authserver.whoami(token_of(result)) == {
        "client_id": "basic-client", "scope": "api:read", "expires_at": pytest.approx(time.time() + 3600, abs=5)}
    assert result.token.token_type == "Bearer"
    assert result.token.scope == "api:read"
    assert result.token.expiry_source == "expires_in"
    assert lifetime(result) == pytest.approx(3600, abs=2)
    assert result.endpoint == authserver.token_url
    assert any("http://" in warning for warning in result.warnings)  # plain http is flagged
    [request] = authserver.requests  # percent-encoding is understood at once: no second attempt
    assert request.granted and request.auth_method == "client_secret_basic"
    assert request.form == (("grant_type", "client_credentials"), ("scope", "api:read"))


async def test_client_secret_post_with_special_characters(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("post-client", secret=SPECIAL, auth_method="client_secret_post")

    result = await client.fetch_token(
        config(authserver.token_url, "post-client", SPECIAL, method=AuthMethod.CLIENT_SECRET_POST))

    assert authserver.accepts(token_of(result))
    [request] = authserver.requests
    assert request.auth_method == "client_secret_post"
    assert request.form_value("client_secret") == "[redacted]"


async def test_basic_retried_raw_when_server_does_not_decode(ca: TestCA, client: TokenClient) -> None:
    with WSO2Gateway(tls=ca) as wso2:
        wso2.add_client("wso2-key", SPECIAL)
        cfg = config(wso2.token_url, "wso2-key", SPECIAL, tls=TLSMaterial(ca_bundle_pem=ca.cert_pem))

        result = await client.fetch_token(cfg)

        assert wso2.accepts(token_of(result))
        assert [r.granted for r in wso2.token_requests] == [False, True]  # RFC encoding refused, raw accepted
        assert result.warnings == ()  # https with a trusted private CA: nothing to flag

        again = await client.fetch_token(cfg)  # the encoding that worked is remembered
        assert wso2.accepts(token_of(again))
        assert [r.granted for r in wso2.token_requests] == [False, True, True]


async def test_wrong_secret_is_invalid_client(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("basic-client", secret=SPECIAL)

    with pytest.raises(InvalidClient) as caught:
        await client.fetch_token(config(authserver.token_url, "basic-client", CANARY))

    assert_no_secret(caught.value, client_id="basic-client")
    assert 1 <= authserver.token_request_count("basic-client") <= 2  # at most one retry with raw Basic
    assert authserver.token_request_count(granted=True) == 0


async def test_a_secret_refused_in_both_encodings_costs_one_request_next_time(
        authserver: AuthServer, client: TokenClient) -> None:
    # A wrong secret whose encoding matters is tried form-encoded, then raw: two requests, once. A gateway
    # that locks a client after N failures must not see every later attempt twice.
    authserver.add_client("locked-client", secret="right")
    wrong = config(authserver.token_url, "locked-client", "wr ong+secret")
    for expected in (2, 3, 4):
        with pytest.raises(InvalidClient):
            await client.fetch_token(wrong)
        assert authserver.token_request_count("locked-client") == expected
    with pytest.raises(InvalidClient):  # another secret (a rotation): both encodings are worth a try again
        await client.fetch_token(config(authserver.token_url, "locked-client", "an other+one"))
    assert authserver.token_request_count("locked-client") == 6


@pytest.mark.parametrize("method", [AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST])
async def test_revoked_client_is_invalid_client(authserver: AuthServer, client: TokenClient,
                                                method: AuthMethod) -> None:
    authserver.add_client("app", secret=CANARY, auth_method=method.value)
    cfg = config(authserver.token_url, "app", CANARY, method=method)
    first = await client.fetch_token(cfg)
    assert authserver.accepts(token_of(first))

    authserver.revoke("app")
    with pytest.raises(InvalidClient) as caught:
        await client.fetch_token(cfg)

    assert_no_secret(caught.value, client_id="app")
    assert not authserver.accepts(token_of(first))  # revoking the app revoked its tokens too


async def test_invalid_scope_is_rejected(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("scoped", secret=CANARY, scopes=["api:read"])

    with pytest.raises(TokenRequestRejected) as caught:
        await client.fetch_token(config(authserver.token_url, "scoped", CANARY, scopes=("api:admin",)))

    assert "invalid_scope" in caught.value.message
    assert_no_secret(caught.value, client_id="scoped")


# ------------------------------------------------------------------------------------------ private_key_jwt


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
async def test_private_key_jwt_picks_the_key_by_kid(authserver: AuthServer, client: TokenClient,
                                                   key_type: KeyType) -> None:
    signing_pem, signing_jwk = new_key(key_type, "current-key")
    _, other_jwk = new_key("ec" if key_type == "rsa" else "rsa", "old-key")
    jwks = {"keys": [other_jwk, signing_jwk]}
    authserver.add_client("jwt-client", auth_method="private_key_jwt", jwks=jwks)
    cfg = config(authserver.token_url, "jwt-client", method=AuthMethod.PRIVATE_KEY_JWT,
                 private_key_pem=SecretStr(signing_pem), signing_key_id="current-key")

    result = await client.fetch_token(cfg)

    assert authserver.accepts(token_of(result))
    [request] = authserver.requests
    assert request.auth_method == "private_key_jwt" and request.client_id == "jwt-client"
    assert "client_assertion" in request.form_names

    # Without the kid the server cannot tell which of the two keys to verify with.
    with pytest.raises(InvalidClient) as caught:
        await client.fetch_token(config(authserver.token_url, "jwt-client", method=AuthMethod.PRIVATE_KEY_JWT,
                                        private_key_pem=SecretStr(signing_pem)))
    assert "PRIVATE KEY" not in caught.value.message


async def test_private_key_jwt_with_an_unregistered_key(authserver: AuthServer, client: TokenClient) -> None:
    _, registered = new_key("rsa", "k1")
    authserver.add_client("jwt-client", auth_method="private_key_jwt", jwks={"keys": [registered]})
    intruder, _ = new_key("rsa", "k1")

    with pytest.raises(InvalidClient) as caught:
        await client.fetch_token(config(authserver.token_url, "jwt-client", method=AuthMethod.PRIVATE_KEY_JWT,
                                        private_key_pem=SecretStr(intruder), signing_key_id="k1"))

    assert "PRIVATE KEY" not in str(caught.value)


# ---------------------------------------------------------------------------------------- client_secret_jwt

HMAC_SECRET = "hs-" + "k" * 61 + SPECIAL
"""64+ bytes: long enough for HS512 (RFC 7518 §3.2), with the characters that break encodings."""


@pytest.mark.parametrize("algorithm", [None, "HS384", "HS512"])
async def test_client_secret_jwt_is_verified_by_authlib_with_the_secret(
        authserver: AuthServer, client: TokenClient, algorithm: str | None) -> None:
    authserver.add_client("hs-client", secret=HMAC_SECRET, auth_method="client_secret_jwt")
    cfg = config(authserver.token_url, "hs-client", HMAC_SECRET, method=AuthMethod.CLIENT_SECRET_JWT,
                 signing_algorithm=SigningAlgorithm(algorithm) if algorithm else None)

    result = await client.fetch_token(cfg)

    assert authserver.accepts(token_of(result))
    [request] = authserver.requests
    assert request.granted and request.auth_method == "client_secret_jwt" and request.client_id == "hs-client"
    assert "client_secret" not in request.form_names and request.header("Authorization") is None
    assert "client_assertion" in request.form_names


async def test_client_secret_jwt_audience_may_be_the_issuer(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("hs-client", secret=HMAC_SECRET, auth_method="client_secret_jwt")
    cfg = config(authserver.token_url, "hs-client", HMAC_SECRET, method=AuthMethod.CLIENT_SECRET_JWT,
                 assertion_audience=authserver.issuer)
    assert authserver.accepts(token_of(await client.fetch_token(cfg)))

    with pytest.raises(InvalidClient):  # an audience the server is not
        await client.fetch_token(config(authserver.token_url, "hs-client", HMAC_SECRET,
                                        method=AuthMethod.CLIENT_SECRET_JWT,
                                        assertion_audience="https://elsewhere.example.com"))


async def test_client_secret_jwt_with_a_wrong_secret_is_invalid_client(
        authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("hs-client", secret=HMAC_SECRET, auth_method="client_secret_jwt")

    with pytest.raises(InvalidClient) as caught:
        await client.fetch_token(config(authserver.token_url, "hs-client", CANARY,
                                        method=AuthMethod.CLIENT_SECRET_JWT))

    assert "client_secret_jwt" in caught.value.message
    assert_no_secret(caught.value, client_id="hs-client")
    assert authserver.token_request_count(granted=True) == 0


# ------------------------------------------------------------------------------------------ tls_client_auth


async def test_tls_client_auth_over_mutual_tls(ca: TestCA, client: TokenClient) -> None:
    with AuthServer(tls=ca, require_client_cert=True) as server:
        server.add_client("mtls-client", auth_method="tls_client_auth")
        good = ca.issue_client_cert("mtls-client")
        other = ca.issue_client_cert("someone-else")

        def cfg(cert_pem: str, key_pem: str) -> ClientConfig:
            return config(server.token_url, "mtls-client", method=AuthMethod.TLS_CLIENT_AUTH,
                          tls=TLSMaterial(ca_bundle_pem=ca.cert_pem, client_cert_pem=cert_pem,
                                          client_key_pem=SecretStr(key_pem)))

        result = await client.fetch_token(cfg(good.cert_pem, good.key_pem))
        assert server.accepts(token_of(result))
        assert server.requests[-1].auth_method == "tls_client_auth"

        with pytest.raises(InvalidClient) as caught:
            await client.fetch_token(cfg(other.cert_pem, other.key_pem))
        assert "PRIVATE KEY" not in caught.value.message
        assert server.token_request_count(granted=True) == 1


# ------------------------------------------------------------------------------------------------ discovery


async def test_discovery_rfc8414_with_issuer_path(client: TokenClient) -> None:
    with AuthServer(issuer_path="/realms/apps", oidc=False) as server:
        server.add_client("disco", secret=SPECIAL)
        cfg = config(server.issuer, "disco", SPECIAL, issuer=True)

        assert await client.token_endpoint(cfg) == server.token_url
        result = await client.fetch_token(cfg)

        assert result.endpoint == server.token_url
        assert server.accepts(token_of(result))


async def test_discovery_openid_configuration_only(client: TokenClient) -> None:
    with AuthServer(issuer_path="/tenant-1", rfc8414=False) as server:
        server.add_client("disco", secret=SPECIAL)

        result = await client.fetch_token(config(server.issuer, "disco", SPECIAL, issuer=True))

        assert result.endpoint == server.token_url
        assert server.accepts(token_of(result))


async def test_discovery_with_no_document_is_invalid_spec(client: TokenClient) -> None:
    with AuthServer(issuer_path="/nowhere", rfc8414=False, oidc=False) as server:
        with pytest.raises(InvalidSpec):
            await client.fetch_token(config(server.issuer, "disco", CANARY, issuer=True))
        assert server.token_request_count() == 0


# ------------------------------------------------------------------------------------------------------ TLS


async def test_https_with_ca_bundle(https_authserver: AuthServer, strict_client: TokenClient) -> None:
    result = await strict_client.fetch_token(config(
        https_authserver.token_url, "tls-client", SPECIAL, tls=TLSMaterial(ca_bundle_pem=https_authserver.ca_pem)))

    assert https_authserver.accepts(token_of(result))
    assert result.warnings == ()


async def test_https_without_ca_bundle_fails_verification(https_authserver: AuthServer,
                                                          strict_client: TokenClient) -> None:
    with pytest.raises(EndpointUnavailable) as caught:
        await strict_client.fetch_token(config(https_authserver.token_url, "tls-client", CANARY))

    assert "caBundleRef" in caught.value.message  # the hint says what to do
    assert_no_secret(caught.value, client_id="tls-client")
    assert https_authserver.token_request_count() == 0  # nothing was sent to an unverified server


async def test_insecure_skip_verify_refused_unless_the_operator_allows_it(
        https_authserver: AuthServer, strict_client: TokenClient) -> None:
    with pytest.raises(InvalidSpec) as caught:
        await strict_client.fetch_token(config(
            https_authserver.token_url, "tls-client", CANARY, tls=TLSMaterial(insecure_skip_verify=True)))

    assert "OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_SKIP_VERIFY" in caught.value.message
    assert "caBundleRef" in caught.value.message
    assert_no_secret(caught.value, client_id="tls-client")
    assert https_authserver.token_request_count() == 0


async def test_insecure_skip_verify_works_and_warns_when_allowed(https_authserver: AuthServer) -> None:
    allowing = TokenClient(timeout=5.0, denied_networks=LOOPBACK_ALLOWED, allow_insecure_skip_verify=True)
    try:
        result = await allowing.fetch_token(config(
            https_authserver.token_url, "tls-client", SPECIAL, tls=TLSMaterial(insecure_skip_verify=True)))
    finally:
        await allowing.aclose()

    assert https_authserver.accepts(token_of(result))
    assert any("insecureSkipVerify" in warning for warning in result.warnings)


async def test_plain_http_refused_unless_allowed(authserver: AuthServer, strict_client: TokenClient) -> None:
    authserver.add_client("plain", secret=CANARY)

    with pytest.raises(InvalidSpec) as caught:
        await strict_client.fetch_token(config(authserver.token_url, "plain", CANARY))

    assert "http://" in caught.value.message
    assert_no_secret(caught.value, client_id="plain")
    assert authserver.token_request_count() == 0


# ------------------------------------------------------------------------------------------- availability


@pytest.mark.parametrize(("status", "retry_after"), [(503, 7), (429, 120)])
async def test_unavailable_with_retry_after(authserver: AuthServer, client: TokenClient, status: int,
                                            retry_after: int) -> None:
    authserver.add_client("busy", secret=CANARY)
    authserver.fail_next(1, status=status, retry_after=retry_after)

    with pytest.raises(EndpointUnavailable) as caught:
        await client.fetch_token(config(authserver.token_url, "busy", CANARY))

    assert caught.value.retry_after == pytest.approx(retry_after, abs=1)
    assert_no_secret(caught.value, client_id="busy")
    assert authserver.token_request_count() == 1  # no retry inside the client: backoff is the caller's

    result = await client.fetch_token(config(authserver.token_url, "busy", CANARY))  # and it recovers
    assert authserver.accepts(token_of(result))


async def test_connection_closed_without_answer(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("down", secret=CANARY)
    authserver.set_down(True, mode="close")

    with pytest.raises(EndpointUnavailable) as caught:
        await client.fetch_token(config(authserver.token_url, "down", CANARY))

    assert_no_secret(caught.value, client_id="down")


async def test_redirect_is_not_followed(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("redirected", secret=CANARY)
    with ScriptedServer(ScriptedResponse.redirect(authserver.token_url, status=307)) as scripted:
        with pytest.raises(TokenRequestRejected) as caught:
            await client.fetch_token(config(scripted.token_url, "redirected", CANARY))

        assert "redirect" in caught.value.message
        assert_no_secret(caught.value, client_id="redirected")
        assert scripted.token_request_count() == 1
    assert authserver.token_request_count() == 0  # the credentials never reached the redirect target


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_cookie_set_for_one_client_never_goes_with_another_clients_request(
        ca: TestCA, client: TokenClient, host: str) -> None:
    # Entra ID's token endpoint answers with Set-Cookie (fpc, x-ms-gateway-slice, ...). Every resource with the
    # same TLS material shares one connection pool, whoever its tenant is: a cookie kept from one tenant's
    # request would travel with the next tenant's, linking them at the server.
    granted = ScriptedResponse.json({"access_token": "t", "token_type": "Bearer", "expires_in": 3600},
                                    headers=(("Set-Cookie", "fpc=tenant-a-session; path=/; Secure; HttpOnly"),))
    tls = TLSMaterial(ca_bundle_pem=ca.cert_pem)
    with ScriptedServer(granted, granted, tls=ca) as entra:
        # (cookie jars treat a host name and an IP address differently: aiohttp's keeps none for an address)
        url = entra.token_url.replace("127.0.0.1", host)
        await client.fetch_token(config(url, "tenant-a", "secret-a", tls=tls))
        await client.fetch_token(config(url, "tenant-b", "secret-b", tls=tls))

        first, second = entra.token_requests
    assert first.client_id == "tenant-a" and second.client_id == "tenant-b"
    assert second.header("Cookie") is None


def test_recorded_requests_keep_no_credential_or_cookie_value() -> None:
    assert redact_headers([("Cookie", "fpc=tenant-a; sid=s3cret"), ("Authorization", "Basic eDp5"),
                           ("Accept", "application/json")]) == (
        ("Cookie", "fpc=[redacted]; sid=[redacted]"), ("Authorization", "Basic [redacted]"),
        ("Accept", "application/json"))


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
async def test_oversized_body_refused(client: TokenClient, content_length: bool) -> None:
    with ScriptedServer(ScriptedResponse.oversized(1_000_000, content_length=content_length)) as scripted:
        with pytest.raises(InvalidTokenResponse) as caught:
            await client.fetch_token(config(scripted.token_url, "big", CANARY))

    assert "bytes" in caught.value.message
    assert_no_secret(caught.value, client_id="big")


async def test_timeout_is_endpoint_unavailable() -> None:
    token_client = TokenClient(allow_insecure_http=True, timeout=0.5, denied_networks=LOOPBACK_ALLOWED)
    try:
        with ScriptedServer(ScriptedResponse.token(delay=5.0)) as scripted:
            started = time.monotonic()
            with pytest.raises(EndpointUnavailable) as caught:
                await token_client.fetch_token(config(scripted.token_url, "slow", CANARY))
            assert time.monotonic() - started < 3
        assert_no_secret(caught.value, client_id="slow")
    finally:
        await token_client.aclose()


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (ScriptedResponse.empty(403), InvalidClient),
        (ScriptedResponse.html(502, "Bad Gateway"), EndpointUnavailable),
        (ScriptedResponse.html(200, "Login"), InvalidTokenResponse),
        (ScriptedResponse.json({"token_type": "Bearer", "expires_in": 3600}), InvalidTokenResponse),
        (ScriptedResponse.json({"error": "invalid_client", "error_description": f"bad secret {CANARY}"}, 400),
         InvalidClient),
    ],
    ids=["403-empty", "502-html", "200-html", "200-no-token", "400-echoing-secret"],
)
async def test_odd_answers_are_classified(client: TokenClient, response: ScriptedResponse,
                                          error: type[OperatorError]) -> None:
    with ScriptedServer(response) as scripted:
        with pytest.raises(error) as caught:
            await client.fetch_token(config(scripted.token_url, "odd", CANARY,
                                            method=AuthMethod.CLIENT_SECRET_POST))

    assert "<html" not in caught.value.message.lower()
    assert_no_secret(caught.value, client_id="odd")


# ---------------------------------------------------------------------------------- real-world answer shapes


async def test_apigee_shape(client: TokenClient) -> None:
    with ApigeeGateway() as apigee:
        apigee.add_client("consumer-key", SPECIAL)
        cfg = config(apigee.token_url, "consumer-key", SPECIAL, method=AuthMethod.CLIENT_SECRET_POST)

        result = await client.fetch_token(cfg)

        assert apigee.accepts(token_of(result))
        assert result.token.token_type == "Bearer"  # "BearerToken" normalised
        assert result.token.expiry_source == "expires_in"
        assert lifetime(result) == pytest.approx(1799, abs=2)  # the string "1799"

        apigee.revoke("consumer-key")
        with pytest.raises(InvalidClient):
            await client.fetch_token(cfg)
        with pytest.raises(InvalidClient) as caught:  # 401 without an RFC "error" member
            await client.fetch_token(config(apigee.token_url, "consumer-key", CANARY,
                                            method=AuthMethod.CLIENT_SECRET_POST))
        assert_no_secret(caught.value, client_id="consumer-key")


async def test_apigee_ignores_basic(client: TokenClient) -> None:
    with ApigeeGateway() as apigee:
        apigee.add_client("consumer-key", CANARY)

        with pytest.raises(InvalidClient) as caught:
            await client.fetch_token(config(apigee.token_url, "consumer-key", CANARY))

    assert_no_secret(caught.value, client_id="consumer-key")


async def test_wso2_validity_period_and_default_scope(ca: TestCA, client: TokenClient) -> None:
    with WSO2Gateway(tls=ca) as wso2:
        wso2.add_client("key", "secret")
        result = await client.fetch_token(config(
            wso2.token_url, "key", "secret", tls=TLSMaterial(ca_bundle_pem=ca.cert_pem),
            extra_params=(("validity_period", "120"),)))

        assert wso2.accepts(token_of(result))
        assert lifetime(result) == pytest.approx(120, abs=2)
        assert result.token.scope == "am_application_scope default"
        assert wso2.token_requests[-1].form_value("validity_period") == "120"


async def test_validity_period_honoured_by_authlib_server(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("vp", secret="secret")

    result = await client.fetch_token(config(authserver.token_url, "vp", "secret",
                                             extra_params=(("validity_period", "300"),)))

    assert lifetime(result) == pytest.approx(300, abs=2)
    seen_by_server = authserver.whoami(token_of(result))
    assert seen_by_server is not None
    assert seen_by_server["expires_at"] == pytest.approx(time.time() + 300, abs=5)


@pytest.mark.parametrize("method", [AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST])
async def test_analytics_shape(client: TokenClient, method: AuthMethod) -> None:
    with AnalyticsGateway() as analytics:
        analytics.add_client("analytics-id", SPECIAL)
        cfg = config(analytics.token_url, "analytics-id", SPECIAL, method=method)

        result = await client.fetch_token(cfg)

        assert analytics.accepts(token_of(result))
        assert result.token.token_type == "Bearer"  # "bearer" normalised
        assert result.token.scope == "create"
        assert lifetime(result) == pytest.approx(3600, abs=2)
        assert analytics.token_request_count(granted=True) == 1

        analytics.block("analytics-id")
        with pytest.raises(InvalidClient) as caught:  # a bare 401, empty body
            await client.fetch_token(config(analytics.token_url, "analytics-id", CANARY, method=method))
        assert_no_secret(caught.value, client_id="analytics-id")


async def test_jwt_access_token_without_expires_in(authserver: AuthServer, client: TokenClient) -> None:
    authserver.add_client("jwt-at", secret="secret", jwt_tokens=True, send_expires_in=False, token_lifetime=900)

    result = await client.fetch_token(config(authserver.token_url, "jwt-at", "secret"))

    assert authserver.accepts(token_of(result))
    assert result.token.expiry_source == "jwt_exp"
    assert lifetime(result) == pytest.approx(900, abs=3)


async def test_wso2_reissues_the_active_token_with_its_remaining_lifetime(ca: TestCA, client: TokenClient) -> None:
    with WSO2Gateway(tls=ca, reuse_active_token=True, lifetime=600) as wso2:
        wso2.add_client("key", "secret")
        cfg = config(wso2.token_url, "key", "secret", tls=TLSMaterial(ca_bundle_pem=ca.cert_pem))
        first = await client.fetch_token(cfg)
        await asyncio.sleep(1.1)

        second = await client.fetch_token(cfg)

        assert token_of(second) == token_of(first)  # what stock WSO2 does before expiry (seed: "expires_in":723)
        assert second.token.expires_at <= first.token.expires_at
        assert lifetime(second) < 600
