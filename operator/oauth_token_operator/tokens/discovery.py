"""Finding the token endpoint from an issuer: metadata URLs and metadata parsing, with no I/O.

Two conventions exist and servers implement one, the other or both:

* RFC 8414 (OAuth 2.0 Authorization Server Metadata) inserts ``/.well-known/oauth-authorization-server``
  *before* the issuer's path: ``https://h/realms/x`` → ``https://h/.well-known/oauth-authorization-server/realms/x``.
* OpenID Connect Discovery 1.0 appends ``/.well-known/openid-configuration`` *after* it:
  ``https://h/realms/x/.well-known/openid-configuration``.

We try them in that order (:func:`metadata_urls`): RFC 8414 is the OAuth standard, and OpenID covers the many
servers (Keycloak, Entra ID, Okta custom servers) that only publish that one.

A document's ``issuer`` should equal the one we asked for (RFC 8414 §3.3). We compare ignoring a trailing
slash, and a remaining mismatch is reported as a warning rather than a failure: some widely used servers
(Entra ID's v1 endpoints, multi-tenant setups) publish an issuer that differs from the discovery URL, and
the document was fetched from the issuer's own host over verified TLS, which is what we trust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidSpec

__all__ = [
    "OAUTH_WELL_KNOWN",
    "OPENID_WELL_KNOWN",
    "ServerMetadata",
    "metadata_urls",
    "oauth_metadata_url",
    "openid_configuration_url",
    "parse_metadata",
]

OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OPENID_WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class ServerMetadata:
    """What we use from an authorization server's metadata document."""

    token_endpoint: str
    issuer: str | None
    metadata_url: str
    warnings: tuple[str, ...] = ()


def _split_issuer(issuer: str) -> tuple[str, str, str]:
    parts = urlsplit(issuer.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidSpec(f"issuerURL {issuer!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise InvalidSpec(f"issuerURL {issuer!r} may not have a query or fragment (RFC 8414 §2)")
    return parts.scheme, parts.netloc, parts.path.rstrip("/")


def oauth_metadata_url(issuer: str) -> str:
    """The RFC 8414 §3.1 metadata URL: the well-known path goes between the host and the issuer's path."""
    scheme, netloc, path = _split_issuer(issuer)
    return urlunsplit((scheme, netloc, OAUTH_WELL_KNOWN + path, "", ""))


def openid_configuration_url(issuer: str) -> str:
    """The OpenID Connect Discovery 1.0 §4 URL: the well-known path is appended to the issuer."""
    scheme, netloc, path = _split_issuer(issuer)
    return urlunsplit((scheme, netloc, path + OPENID_WELL_KNOWN, "", ""))


def metadata_urls(issuer: str) -> tuple[str, str]:
    """The URLs to try, in order: RFC 8414, then OpenID."""
    return oauth_metadata_url(issuer), openid_configuration_url(issuer)


def _same_issuer(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


def parse_metadata(body: bytes, *, issuer: str, metadata_url: str) -> ServerMetadata:
    """The token endpoint announced by a metadata document. InvalidSpec when the document is unusable."""
    try:
        document = json.loads(body)
    except ValueError:
        raise InvalidSpec(f"{metadata_url} is not a JSON metadata document") from None
    if not isinstance(document, dict):
        raise InvalidSpec(f"{metadata_url} is not a JSON object")
    endpoint = document.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise InvalidSpec(f"{metadata_url} has no token_endpoint; set tokenURL instead of issuerURL")
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise InvalidSpec(f"{metadata_url} announces a token_endpoint that is not an http(s) URL")
    if "@" in parts.netloc:
        raise InvalidSpec(f"{metadata_url} announces a token_endpoint with user information (user@); refused")
    announced = document.get("issuer")
    warnings: tuple[str, ...] = ()
    if not isinstance(announced, str):
        announced = None
        warnings = (f"the discovery document {metadata_url} does not name its issuer",)
    elif not _same_issuer(announced, issuer):
        warnings = (
            f"the discovery document {metadata_url} names issuer {announced[:200]!r}, not "
            f"{issuer!r} (RFC 8414 §3.3); its token_endpoint is used anyway",
        )
    return ServerMetadata(token_endpoint=endpoint, issuer=announced, metadata_url=metadata_url, warnings=warnings)
