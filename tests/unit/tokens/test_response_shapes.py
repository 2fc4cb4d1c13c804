"""Real token endpoint answers, one row each, and what the operator makes of them.

Success rows check the Token (type, expiry and where it came from, scope); failure rows check the exact
Reason, that the message says what happened and where to look, and that it never carries the client secret
(a canary that several servers below echo back), however the server spells it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from tokens_testkit import CANARY

from oauth_token_operator.api import AuthMethod
from oauth_token_operator.errors import OperatorError
from oauth_token_operator.reasons import Reason
from oauth_token_operator.tokens.classify import classify_error_response
from oauth_token_operator.tokens.model import Token
from oauth_token_operator.tokens.response import parse_token_response

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DEFAULT_LIFETIME = 3600.0
JSON = {"Content-Type": "application/json"}
SOURCE = "Secret team-a/torch-client"


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# Seed 000 (an Apigee gateway), verbatim apart from the enclosing braces the page lost.
APIGEE_SEED_000 = b"""{
  "refresh_token_expires_in" : "0",
  "api_product_list" : "[test-case-status-api-usda-stage, csol-api-usda-int, OAuth-Int]",
  "api_product_list_json" : [ "test-case-status-api-usda-stage", "csol-api-usda-int", "OAuth-Int" ],
  "organization_name" : "uscis",
  "" : "",
  "token_type" : "BearerToken",
  "issued_at" : "1583340648488",
  "client_id" : "<client_id>",
  "access_token" : "<access_token>",
  "application_name" : "xxxxx-xxxxx-xxxxx-xxxxx-xxxxx",
  "scope" : "",
  "expires_in" : "1799",
  "refresh_count" : "0",
  "status" : "approved"
}"""

# Seed 000's second sample (Apigee docs), minus the `//--in seconds` comment that is not JSON.
APIGEE_DOCS = b"""{
    "issued_at": "1420260525643",
    "application_name": "ce1e94a2-9c3e-42fa-a2c6-1ee01815476b",
    "scope": "READ",
    "status": "approved",
    "api_product_list": "[TestAPI]",
    "expires_in": "1799",
    "": "",
    "organization_id": "0",
    "token_type": "BearerToken",
    "client_id": "5jUAdGv9pBouF0wOH5keAVI35GBtx3dT",
    "access_token": "XkhU2DFnMGIVL2hvsRHLM00hRWav",
    "organization_name": "docs"
}"""

# Seed 002 (an analytics product): RFC-style, lowercase bearer, with a refresh_token we must ignore.
ANALYTICS_SEED_002 = b"""{
  "access_token":"MTQ0NjJkZmQ5OTM2NDE1ZTZjNGZmZjI3",
  "token_type":"bearer",
  "expires_in":3600,
  "refresh_token":"IwOGYzYTlmM2YxOTQ5MGE3YmNmMDFkNTVk",
  "scope":"create"
}"""

# Seed 003 (WSO2 API Manager), verbatim.
WSO2_SEED_003 = (
    b'{"access_token":"4c27f899-6f9c-3217-b974-3ceb5a409ac3","scope":"am_application_scope default",'
    b'"token_type":"Bearer","expires_in":723}'
)

INTERNAL = "internal-page-canary-5e1d"
"""Content of an internal service's page: a tokenURL pointed at that service must never read it back."""

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Something went wrong</h1>"
    b"<script>alert(1)</script><p>client_secret=" + CANARY.encode() + b"</p></body></html>"
)


@dataclass(frozen=True)
class Issued:
    """Expect a token."""

    token_type: str
    lifetime: float
    expiry_source: str
    scope: str | None = None
    access_token: str | None = None


@dataclass(frozen=True)
class Refused:
    """Expect an error with this reason whose message contains every one of ``says``."""

    reason: Reason
    says: tuple[str, ...] = ()
    retry_after: float | None = None
    never_says: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Row:
    id: str
    status: int
    body: bytes
    expect: Issued | Refused
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC


ROWS = [
    # ------------------------------------------------------------------------------------------ tokens
    Row(
        "rfc6749-with-scope",
        200,
        _json(
            {
                "access_token": "2YotnFZFEjr1zCsicMWpAA",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "read write",
            }
        ),
        Issued("Bearer", 3600, "expires_in", "read write", "2YotnFZFEjr1zCsicMWpAA"),
    ),
    Row(
        "rfc6749-without-scope",
        200,
        _json({"access_token": "2YotnFZFEjr1zCsicMWpAA", "token_type": "Bearer", "expires_in": 3600}),
        Issued("Bearer", 3600, "expires_in", None),
    ),
    Row("apigee-seed-000-verbatim", 200, APIGEE_SEED_000, Issued("Bearer", 1799, "expires_in", None, "<access_token>")),
    Row(
        "apigee-docs-sample",
        200,
        APIGEE_DOCS,
        Issued("Bearer", 1799, "expires_in", "READ", "XkhU2DFnMGIVL2hvsRHLM00hRWav"),
    ),
    Row(
        "analytics-seed-002-refresh-token-ignored",
        200,
        ANALYTICS_SEED_002,
        Issued("Bearer", 3600, "expires_in", "create", "MTQ0NjJkZmQ5OTM2NDE1ZTZjNGZmZjI3"),
    ),
    Row("wso2-seed-003", 200, WSO2_SEED_003, Issued("Bearer", 723, "expires_in", "am_application_scope default")),
    Row(
        "lowercase-bearer-201",
        201,
        _json({"access_token": "t", "token_type": "bearer", "expires_in": 60}),
        Issued("Bearer", 60, "expires_in"),
    ),
    Row(
        "uppercase-bearer-float-string-expiry",
        200,
        _json({"access_token": "t", "token_type": "BEARER", "expires_in": " 299.5 "}),
        Issued("Bearer", 299.5, "expires_in"),
    ),
    Row(
        "dpop-type-kept",
        200,
        _json({"access_token": "t", "token_type": "DPoP", "expires_in": 300}),
        Issued("DPoP", 300, "expires_in"),
    ),
    Row(
        "n_a-type-kept",
        200,
        _json({"access_token": "t", "token_type": "N_A", "expires_in": 300}),
        Issued("N_A", 300, "expires_in"),
    ),
    Row("no-token-type", 200, _json({"access_token": "t", "expires_in": 300}), Issued("Bearer", 300, "expires_in")),
    Row(
        "jwt-exp-and-iat-counted-from-receipt",
        200,
        # iat/exp far from our clock on purpose: only exp - iat (900 s) counts, from our receive time.
        _json({"access_token": _jwt({"iat": 1_000_000_000, "exp": 1_000_000_900, "sub": "c"}), "token_type": "Bearer"}),
        Issued("Bearer", 900, "jwt_exp"),
    ),
    Row(
        "jwt-exp-only-absolute",
        200,
        _json({"access_token": _jwt({"exp": int(NOW.timestamp()) + 1234}), "token_type": "Bearer"}),
        Issued("Bearer", 1234, "jwt_exp"),
    ),
    Row(
        "opaque-without-expires_in-uses-default",
        200,
        _json({"access_token": "opaque", "token_type": "Bearer"}),
        Issued("Bearer", DEFAULT_LIFETIME, "default"),
    ),
    Row(
        "dotted-non-jwt-without-expires_in-uses-default",
        200,
        _json({"access_token": "a.b.c", "token_type": "Bearer"}),
        Issued("Bearer", DEFAULT_LIFETIME, "default"),
    ),
    Row(
        "expires_in-zero-means-unstated",
        200,
        _json({"access_token": "t", "expires_in": "0"}),
        Issued("Bearer", DEFAULT_LIFETIME, "default"),
    ),
    Row(
        "scope-as-list",
        200,
        _json({"access_token": "t", "expires_in": 60, "scope": ["a", "b"]}),
        Issued("Bearer", 60, "expires_in", "a b"),
    ),
    Row(
        "form-encoded-body",
        200,
        b"access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&token_type=bearer",
        Issued("Bearer", DEFAULT_LIFETIME, "default", None, "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    # ------------------------------------------------------------------------- client authentication
    Row(
        "401-invalid_client-json-echoing-secret",
        401,
        _json(
            {"error": "invalid_client", "error_description": f"Client authentication failed (secret {CANARY} unknown)"}
        ),
        Refused(
            Reason.INVALID_CLIENT, ("401 invalid_client", "Client authentication failed", SOURCE, "revoked or rotated")
        ),
    ),
    Row(
        "401-no-body-www-authenticate-basic",
        401,
        b"",
        Refused(Reason.INVALID_CLIENT, ("401 Unauthorized", "empty body", "client ID and secret", SOURCE)),
        headers={"WWW-Authenticate": 'Basic realm="oauth"'},
    ),
    Row(
        "401-basic-challenge-to-a-post-client",
        401,
        b"",
        Refused(Reason.INVALID_CLIENT, ("WWW-Authenticate: Basic", "client_secret_basic")),
        headers={"WWW-Authenticate": 'Basic realm="oauth"'},
        auth_method=AuthMethod.CLIENT_SECRET_POST,
    ),
    Row(
        "401-www-authenticate-bearer",
        401,
        b"",
        Refused(Reason.INVALID_CLIENT, ("401 Unauthorized", "WWW-Authenticate: Bearer", "tokenURL")),
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    ),
    Row(
        "401-plain-text-echo",
        401,
        f"Unauthorized: client_secret={CANARY}".encode(),
        Refused(Reason.INVALID_CLIENT, ("401 Unauthorized with a 46-byte text/plain body, not an OAuth error",),
                never_says=("client_secret", "[REDACTED]")),
        headers={"Content-Type": "text/plain"},
    ),
    Row(
        "401-private-key-jwt",
        401,
        _json({"error": "invalid_client"}),
        Refused(Reason.INVALID_CLIENT, ("invalid_client", "public key", "assertionAudience")),
        auth_method=AuthMethod.PRIVATE_KEY_JWT,
    ),
    Row("403-empty-body", 403, b"", Refused(Reason.INVALID_CLIENT, ("403 Forbidden", SOURCE)), headers={}),
    Row(
        "400-invalid_client",
        400,
        _json({"error": "invalid_client"}),
        Refused(Reason.INVALID_CLIENT, ("400 invalid_client", "client ID and secret")),
    ),
    Row(
        "400-unauthorized_client",
        400,
        _json({"error": "unauthorized_client", "error_description": "grant not allowed for this client"}),
        Refused(Reason.INVALID_CLIENT, ("unauthorized_client", "client_credentials grant")),
    ),
    Row(
        # Keycloak's answer to a wrong client secret: the credentials, not the grant, are what to check.
        "401-unauthorized_client-keycloak-wrong-secret",
        401,
        _json({"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"}),
        Refused(Reason.INVALID_CLIENT, ("unauthorized_client", "check the client ID"),
                never_says=("client_credentials grant",)),
    ),
    Row(
        # ...and its answer for a client whose service accounts are off: the same code and status, the grant.
        "401-unauthorized_client-keycloak-no-service-account",
        401,
        _json({"error": "unauthorized_client", "error_description": "Client not enabled to retrieve service account"}),
        Refused(Reason.INVALID_CLIENT, ("unauthorized_client", "client_credentials grant")),
    ),
    Row(
        "apigee-errorcode",
        401,
        _json({"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"}),
        Refused(Reason.INVALID_CLIENT, ("401 invalid_client", "vendor error code"), never_says=("ClientId is",)),
    ),
    Row(
        "apigee-fault-invalid-api-key",
        401,
        _json({"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}),
        Refused(Reason.INVALID_CLIENT, ("401 invalid_client", "vendor error code"),
                never_says=("Invalid ApiKey", "oauth.v2")),
    ),
    Row(
        "apigee-fault-invalid-client-on-400",
        400,
        _json(
            {
                "fault": {
                    "faultstring": "Invalid client identifier {0}",
                    "detail": {"errorcode": "oauth.v2.InvalidClientIdentifier"},
                }
            }
        ),
        Refused(Reason.INVALID_CLIENT, ("400 invalid_client",), never_says=("identifier",)),
    ),
    # -------------------------------------------------------------------------------- refused requests
    Row(
        "400-invalid_scope",
        400,
        _json({"error": "invalid_scope", "error_description": "scope x unknown"}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("400 invalid_scope", "scope x unknown", "spec.scopes")),
    ),
    Row(
        "403-invalid_scope",
        403,
        _json({"error": "invalid_scope"}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("403 invalid_scope", "spec.scopes")),
    ),
    Row(
        "400-invalid_target",
        400,
        _json({"error": "invalid_target"}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("invalid_target", "spec.resources")),
    ),
    Row(
        "400-unsupported_grant_type",
        400,
        _json({"error": "unsupported_grant_type"}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("unsupported_grant_type", "client_credentials")),
    ),
    Row(
        "400-invalid_request",
        400,
        _json({"error": "invalid_request", "error_description": "Missing audience"}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("invalid_request", "Missing audience", "extraParams")),
    ),
    Row(
        "400-problem-json",
        400,
        _json(
            {
                "type": "https://example.com/probs/scope",
                "title": "Bad Request",
                "status": 400,
                "detail": "Requested scope 'admin' is not allowed",
            }
        ),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("400 Bad Request with a 134-byte application/problem+json body",),
                never_says=("admin",)),
        headers={"Content-Type": "application/problem+json"},
    ),
    Row(
        "404-html-page",
        404,
        HTML_PAGE,
        Refused(
            Reason.TOKEN_REQUEST_REJECTED,
            ("404 Not Found with a 167-byte text/html body", "tokenURL"),
            never_says=("<", "Something went wrong", "Error"),
        ),
        headers={"Content-Type": "text/html; charset=utf-8"},
    ),
    Row(
        "302-redirect",
        302,
        b"",
        Refused(
            Reason.TOKEN_REQUEST_REJECTED,
            ("302 Found", "another location (not shown)", "redirects are not followed", "set tokenURL"),
            never_says=("login.example.com", "https://"),
        ),
        headers={"Location": "https://login.example.com/token"},
    ),
    Row(
        "400-long-description-with-control-characters",
        400,
        _json({"error": "invalid_request", "error_description": "bad\r\nX-Injected: 1\x1b[31m" + "y" * 1000}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("bad X-Injected: 1 [31myyy", "…"), never_says=("\r", "\n", "\x1b")),
    ),
    # ------------------------------------- canaries: an internal service's content never reaches a message
    Row(
        "internal-text-page-500",
        500,
        f"metrics_db_password={INTERNAL}\nuptime 12d".encode(),
        Refused(Reason.ENDPOINT_UNAVAILABLE, ("500 Internal Server Error with a 56-byte text/plain body",),
                never_says=(INTERNAL, "metrics_db")),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    ),
    Row(
        "internal-json-api-403",
        403,
        _json({"message": INTERNAL, "title": INTERNAL, "detail": INTERNAL, "Error": INTERNAL}),
        Refused(Reason.INVALID_CLIENT, ("403 Forbidden with a", "application/json body, not an OAuth error"),
                never_says=(INTERNAL,)),
    ),
    Row(
        "internal-json-document-200",
        200,
        _json({"items": [INTERNAL], INTERNAL: True, "expires_in": 5}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("without an access_token (fields: expires_in and 2 others)",),
                never_says=(INTERNAL, "items")),
    ),
    Row(
        "content-type-carries-text",
        404,
        b"nope",
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("body with an unusual Content-Type",), never_says=(INTERNAL,)),
        headers={"Content-Type": f"text/plain {INTERNAL} ; x"},
    ),
    Row(
        "error-that-is-not-rfc-6749-text",
        400,
        _json({"error": f'internal "{INTERNAL}"'}),
        Refused(Reason.TOKEN_REQUEST_REJECTED, ("400 Bad Request",), never_says=(INTERNAL,)),
    ),
    Row(
        "error_uri-shown-when-plain",
        400,
        _json({"error": "invalid_client", "error_uri": "https://idp.example.com/docs/errors#invalid_client"}),
        Refused(Reason.INVALID_CLIENT, ("400 invalid_client (see https://idp.example.com/docs/errors#invalid_client)",)),
    ),
    Row(
        "error_uri-with-userinfo-dropped",
        400,
        _json({"error": "invalid_client", "error_uri": f"https://admin:{INTERNAL}@idp.example.com/x"}),
        Refused(Reason.INVALID_CLIENT, ("400 invalid_client;",), never_says=(INTERNAL, "admin", "see ")),
    ),
    # ---------------------------------------------------------------------------------- transient
    Row(
        "429-retry-after-seconds",
        429,
        _json({"error": "slow_down"}),
        Refused(Reason.ENDPOINT_UNAVAILABLE, ("429 slow_down", "rate limiting", "retrying after 30s"), retry_after=30),
        headers={**JSON, "Retry-After": "30"},
    ),
    Row(
        "503-retry-after-http-date",
        503,
        b"",
        Refused(Reason.ENDPOINT_UNAVAILABLE, ("503 Service Unavailable", "retrying after 120s"), retry_after=120),
        headers={"Retry-After": format_datetime(NOW + timedelta(seconds=120), usegmt=True)},
    ),
    Row(
        "503-html-page",
        503,
        HTML_PAGE,
        Refused(Reason.ENDPOINT_UNAVAILABLE, ("503 Service Unavailable", "text/html body"), never_says=("<",)),
        headers={"Content-Type": "text/html"},
    ),
    Row(
        "500-oauth-error-is-still-transient",
        500,
        _json({"error": "invalid_client"}),
        Refused(Reason.ENDPOINT_UNAVAILABLE, ("500 invalid_client", "the server is unavailable")),
    ),
    # ---------------------------------------------------------------------------- unusable 2xx answers
    Row(
        "2xx-without-access_token",
        200,
        _json({"token_type": "Bearer", "expires_in": 3600}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("without an access_token", "expires_in, token_type")),
    ),
    Row(
        "2xx-empty-access_token",
        200,
        _json({"access_token": "", "expires_in": 3600}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("200 with an empty access_token",)),
    ),
    Row(
        "2xx-non-json",
        200,
        b"OK " + CANARY.encode(),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("200 with a 21-byte text/plain body, not JSON",),
                never_says=("OK", "[REDACTED]")),
        headers={"Content-Type": "text/plain"},
    ),
    Row(
        "2xx-html-portal-page",
        200,
        HTML_PAGE,
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("text/html body", "tokenURL"), never_says=("<", "Something")),
        headers={"Content-Type": "text/html"},
    ),
    Row("2xx-empty-body", 200, b"", Refused(Reason.INVALID_TOKEN_RESPONSE, ("empty body",))),
    Row("2xx-json-array", 200, b'["access_token"]', Refused(Reason.INVALID_TOKEN_RESPONSE, ("JSON list",))),
    Row(
        "2xx-negative-expires_in",
        200,
        _json({"access_token": "t", "expires_in": -5}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("expires_in -5",)),
    ),
    Row(
        "2xx-non-numeric-expires_in",
        200,
        _json({"access_token": "t", "expires_in": "soon"}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ('expires_in "soon"',)),
    ),
    Row(
        "2xx-absurd-expires_in-milliseconds",
        200,
        _json({"access_token": "t", "expires_in": 1583340648488}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("expires_in 1583340648488",)),
    ),
    Row(
        "2xx-access_token-not-a-string",
        200,
        _json({"access_token": {"value": "t"}}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("not a string",)),
    ),
    Row(
        "2xx-access_token-with-newline",
        200,
        _json({"access_token": "abc\r\nSet-Cookie: x", "expires_in": 60}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("control characters",), never_says=("Set-Cookie",)),
    ),
    Row(
        # RFC 6749 A.12: access-token = 1*VSCHAR. Printable is not enough: no client can put it in a header.
        "2xx-access_token-non-ascii",
        200,
        _json({"access_token": "tok\u00e9n-CANARY", "expires_in": 60}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("non-ASCII",), never_says=("CANARY",)),
    ),
    Row(
        "2xx-jwt-already-expired",
        200,
        _json({"access_token": _jwt({"exp": int(NOW.timestamp()) - 10})}),
        Refused(Reason.INVALID_TOKEN_RESPONSE, ("exp", "already passed", "clocks")),
    ),
    Row(
        "2xx-carrying-an-oauth-error",
        200,
        _json({"error": "invalid_client", "error_description": CANARY}),
        Refused(Reason.INVALID_CLIENT, ("200 invalid_client", "[REDACTED]", SOURCE)),
    ),
]


def _outcome(row: Row) -> Token | OperatorError:
    secrets = (CANARY,)
    try:
        if 200 <= row.status < 300:
            return parse_token_response(
                row.status,
                row.headers,
                row.body,
                now=NOW,
                default_lifetime=DEFAULT_LIFETIME,
                secrets=secrets,
                auth_method=row.auth_method,
                credentials_source=SOURCE,
            )
        return classify_error_response(
            row.status,
            row.headers,
            row.body,
            now=NOW,
            secrets=secrets,
            auth_method=row.auth_method,
            credentials_source=SOURCE,
        )
    except OperatorError as exc:
        return exc


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_response_shape(row: Row) -> None:
    outcome = _outcome(row)
    expect = row.expect
    if isinstance(expect, Issued):
        assert isinstance(outcome, Token), outcome
        assert outcome.token_type == expect.token_type
        assert outcome.issued_at == NOW
        assert outcome.expires_at == NOW + timedelta(seconds=expect.lifetime)
        assert outcome.expiry_source == expect.expiry_source
        assert outcome.scope == expect.scope
        if expect.access_token is not None:
            assert outcome.access_token.get_secret_value() == expect.access_token
        if len(outcome.access_token.get_secret_value()) > 3:
            assert outcome.access_token.get_secret_value() not in repr(outcome)
        return
    assert isinstance(outcome, OperatorError), f"expected {expect.reason}, got a token"
    assert outcome.reason is expect.reason, outcome.message
    message = outcome.message
    for needle in expect.says:
        assert needle in message, message
    for needle in (CANARY, *expect.never_says):
        assert needle not in message, message
    assert message.isprintable(), message
    assert len(message) < 600, message
    assert outcome.retry_after == expect.retry_after


def test_refresh_token_is_not_kept_anywhere() -> None:
    token = parse_token_response(200, JSON, ANALYTICS_SEED_002, now=NOW, default_lifetime=DEFAULT_LIFETIME)
    assert "IwOGYzYTlmM2YxOTQ5MGE3YmNmMDFkNTVk" not in repr(vars(token))


def test_apigee_issued_at_does_not_move_expiry() -> None:
    """issued_at (server clock, ms) is ignored: the same body received later expires later by as much."""
    later = NOW + timedelta(hours=5)
    first = parse_token_response(200, JSON, APIGEE_SEED_000, now=NOW, default_lifetime=DEFAULT_LIFETIME)
    second = parse_token_response(200, JSON, APIGEE_SEED_000, now=later, default_lifetime=DEFAULT_LIFETIME)
    assert second.expires_at - first.expires_at == timedelta(hours=5)


def test_default_lifetime_is_the_callers() -> None:
    token = parse_token_response(200, JSON, b'{"access_token": "t"}', now=NOW, default_lifetime=120)
    assert (token.expires_at - NOW, token.expiry_source) == (timedelta(seconds=120), "default")
