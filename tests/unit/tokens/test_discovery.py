"""Discovery URLs (RFC 8414 §3.1 vs OpenID Connect Discovery §4) and metadata parsing."""

from __future__ import annotations

import json

import pytest

from oauth_token_operator.errors import InvalidSpec
from oauth_token_operator.tokens.discovery import (
    metadata_urls,
    oauth_metadata_url,
    openid_configuration_url,
    parse_metadata,
)


@pytest.mark.parametrize(
    ("issuer", "rfc8414", "openid"),
    [
        (
            "https://h/realms/x",
            "https://h/.well-known/oauth-authorization-server/realms/x",
            "https://h/realms/x/.well-known/openid-configuration",
        ),
        (
            "https://h/realms/x/",
            "https://h/.well-known/oauth-authorization-server/realms/x",
            "https://h/realms/x/.well-known/openid-configuration",
        ),
        ("https://h", "https://h/.well-known/oauth-authorization-server", "https://h/.well-known/openid-configuration"),
        (
            "https://h/",
            "https://h/.well-known/oauth-authorization-server",
            "https://h/.well-known/openid-configuration",
        ),
        (
            "https://login.example.com:8443/tenant/v2.0",
            "https://login.example.com:8443/.well-known/oauth-authorization-server/tenant/v2.0",
            "https://login.example.com:8443/tenant/v2.0/.well-known/openid-configuration",
        ),
    ],
)
def test_metadata_urls(issuer: str, rfc8414: str, openid: str) -> None:
    assert oauth_metadata_url(issuer) == rfc8414
    assert openid_configuration_url(issuer) == openid
    assert metadata_urls(issuer) == (rfc8414, openid)  # RFC 8414 first


@pytest.mark.parametrize("issuer", ["https://h/x?tenant=1", "https://h/x#frag", "ftp://h/x", "h/x", "https://"])
def test_unusable_issuers(issuer: str) -> None:
    with pytest.raises(InvalidSpec, match="issuerURL"):
        metadata_urls(issuer)


def _doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_parse_metadata() -> None:
    metadata = parse_metadata(
        _doc(
            issuer="https://h/realms/x",
            token_endpoint="https://h/realms/x/protocol/openid-connect/token",
            jwks_uri="https://h/jwks",
        ),
        issuer="https://h/realms/x",
        metadata_url="https://h/realms/x/.well-known/openid-configuration",
    )
    assert metadata.token_endpoint == "https://h/realms/x/protocol/openid-connect/token"
    assert metadata.issuer == "https://h/realms/x"
    assert metadata.warnings == ()


def test_trailing_slash_difference_is_not_a_mismatch() -> None:
    metadata = parse_metadata(
        _doc(issuer="https://tenant.auth0.com/", token_endpoint="https://t/oauth/token"),
        issuer="https://tenant.auth0.com",
        metadata_url="u",
    )
    assert metadata.warnings == ()


def test_issuer_mismatch_is_a_warning() -> None:
    metadata = parse_metadata(
        _doc(issuer="https://sts.windows.net/t/", token_endpoint="https://login/t/token"),
        issuer="https://login.microsoftonline.com/t",
        metadata_url="u",
    )
    assert metadata.token_endpoint == "https://login/t/token"
    assert len(metadata.warnings) == 1 and "https://sts.windows.net/t/" in metadata.warnings[0]


def test_missing_issuer_is_a_warning() -> None:
    metadata = parse_metadata(_doc(token_endpoint="https://h/token"), issuer="https://h", metadata_url="u")
    assert metadata.issuer is None and "does not name its issuer" in metadata.warnings[0]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>", "not a JSON"),
        (b"[]", "not a JSON object"),
        (_doc(issuer="https://h"), "no token_endpoint"),
        (_doc(issuer="https://h", token_endpoint=""), "no token_endpoint"),
        (_doc(issuer="https://h", token_endpoint=42), "no token_endpoint"),
        (_doc(issuer="https://h", token_endpoint="javascript:alert(1)"), "not an http(s) URL"),
        (_doc(issuer="https://h", token_endpoint="/relative/token"), "not an http(s) URL"),
        (_doc(issuer="https://h", token_endpoint="https://admin:pw@h/token"), "with user information"),
    ],
)
def test_unusable_metadata(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidSpec, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_metadata(body, issuer="https://h", metadata_url="https://h/.well-known/openid-configuration")
