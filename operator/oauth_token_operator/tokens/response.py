"""Turn a 2xx token endpoint answer into a :class:`Token`, accepting what real servers send (RFC 6749 §5.1).

Real answers stray from the RFC in harmless ways, and we accept them: ``expires_in`` as a numeric string
(Apigee's ``"1799"``), ``token_type`` in any case or as Apigee's ``BearerToken`` (normalised to ``Bearer``;
other types such as ``DPoP`` or ``N_A`` are kept as sent), dozens of extra fields (ignored, including a key
that is the empty string), a ``scope`` given as a list, a form-encoded body from servers that ignore
``Accept``. A ``refresh_token`` is ignored: the client_credentials grant must not rely on one (RFC 6749
§4.4.3), we simply ask again.

**Expiry is counted from our receive time** ``now``, never from a server timestamp such as Apigee's
``issued_at`` (epoch milliseconds). ``expires_in`` is relative by design, so ``now + expires_in`` is immune to
clock skew between the server and the operator and errs late only by the network latency, which the refresh
margin dwarfs; mixing in the server's clock would let a skewed server make us keep a token past its real
expiry. Without ``expires_in`` a JWT access token's claims are read (unverified: we are not its audience,
only its carrier): with ``iat`` the lifetime ``exp - iat`` is again counted from ``now``; with ``exp`` alone
it is used as an absolute time. Otherwise the caller's default lifetime applies and ``expiry_source`` says
so, so the status can tell the user. ``expires_in: 0`` is read as "not stated" (Apigee uses 0 for "never").

A 2xx that is not a token is described by media type and length (:func:`.classify.describe_body`), and a
JSON object without ``access_token`` by the names of its fields only where they are token-response names
from :data:`TOKEN_FIELD_NAMES`: the endpoint may be an internal service, whose content must not be read back.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl

from pydantic import SecretStr

from ..api import AuthMethod
from ..errors import InvalidTokenResponse, TokenError
from .classify import classify_error_response, clean_server_text, describe_body
from .model import Token

__all__ = ["MAX_LIFETIME_SECONDS", "TOKEN_FIELD_NAMES", "parse_token_response"]

MAX_LIFETIME_SECONDS = 10 * 366 * 24 * 3600
"""A token lifetime beyond ten years is a server bug (or milliseconds sent as seconds), not a promise."""

TOKEN_FIELD_NAMES = frozenset(
    {
        "access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token", "issued_token_type",
        "expires_at", "issued_at", "ext_expires_in", "not-before-policy", "refresh_expires_in", "session_state",
        "accessToken", "access-token", "AccessToken", "token", "jwt", "tokenType", "expiresIn", "expires",
        "application_name", "client_id", "status", "developer.email", "organization_name", "api_product_list",
    }
)
"""Field names a token response may carry (RFC 6749 §5.1, and those of Keycloak, Entra ID and Apigee): only
these are named in a message about a 2xx without an ``access_token``; other names are only counted."""

_BEARER_TYPES = frozenset({"bearer", "bearertoken", "bearer_token", "bearer-token"})
ExpirySource = Literal["expires_in", "jwt_exp", "default"]


def _decode_body(headers: Mapping[str, str], body: bytes, status: int) -> dict[str, object]:
    content_type = headers.get("content-type", "").lower()
    prefix = f"token endpoint answered {status}"
    if "application/x-www-form-urlencoded" in content_type:  # e.g. GitHub-style servers ignoring Accept
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise InvalidTokenResponse(f"{prefix} with a form-encoded body that cannot be parsed") from None
    stripped = body.strip()
    if not stripped:
        raise InvalidTokenResponse(f"{prefix} with an empty body instead of a token")
    try:
        parsed = json.loads(stripped)
    except ValueError:
        what = f"{prefix} with {describe_body(headers, body)}, not JSON"
        if "html" in content_type or stripped[:1] == b"<":
            raise InvalidTokenResponse(
                f"{what}; tokenURL may point at a portal or login page rather than the token endpoint"
            ) from None
        raise InvalidTokenResponse(what) from None
    if not isinstance(parsed, dict):
        raise InvalidTokenResponse(f"{prefix} with a JSON {type(parsed).__name__} instead of an object")
    return parsed


def _number(value: object) -> float | None:
    """A JSON number or numeric string as a finite float; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _jwt_claims(token: str) -> dict[str, object] | None:
    """The payload of a JWS compact token, unverified; None for anything that is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _jwt_expiry(token: str, now: datetime) -> datetime | None:
    claims = _jwt_claims(token)
    if claims is None:
        return None
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None:
        return None
    if iat is not None and 0 < exp - iat <= MAX_LIFETIME_SECONDS:
        return now + timedelta(seconds=exp - iat)
    try:
        expires_at = datetime.fromtimestamp(exp, tz=now.tzinfo)
    except (OverflowError, OSError, ValueError):
        return None
    if expires_at <= now:
        raise InvalidTokenResponse(
            f"the access token is a JWT whose exp ({expires_at.isoformat()}) has already passed by our clock; "
            "check the clocks of the operator's node and the server"
        )
    if (expires_at - now).total_seconds() > MAX_LIFETIME_SECONDS:
        return None
    return expires_at


def _expiry(
    fields: dict[str, object], access_token: str, *, now: datetime, default_lifetime: float
) -> tuple[datetime, ExpirySource]:
    raw = fields.get("expires_in")
    if raw is not None and raw != "":
        seconds = _number(raw)
        if seconds is None or seconds < 0 or seconds > MAX_LIFETIME_SECONDS:
            shown = clean_server_text(json.dumps(raw), limit=40)
            raise InvalidTokenResponse(
                f"token endpoint answered with an unusable expires_in {shown}; expected a number of seconds "
                f"between 0 and {MAX_LIFETIME_SECONDS}"
            )
        if seconds > 0:
            return now + timedelta(seconds=seconds), "expires_in"
    jwt_expires_at = _jwt_expiry(access_token, now)
    if jwt_expires_at is not None:
        return jwt_expires_at, "jwt_exp"
    return now + timedelta(seconds=default_lifetime), "default"


def _token_type(value: object) -> str:
    if value is None or value == "":
        return "Bearer"  # RFC 6749 requires it, but servers that omit it issue bearer tokens
    if not isinstance(value, str):
        raise InvalidTokenResponse("token endpoint answered with a token_type that is not a string")
    value = value.strip()
    if value.lower() in _BEARER_TYPES:
        return "Bearer"
    if not value.isprintable() or len(value) > 64:
        raise InvalidTokenResponse("token endpoint answered with an unusable token_type")
    return value


def _scope(value: object) -> str | None:
    if isinstance(value, list):
        value = " ".join(str(item) for item in value)
    if isinstance(value, str) and value.strip():
        return " ".join(value.split())
    return None


def is_header_safe_token(token: str) -> bool:
    """RFC 6749 Appendix A.12: ``access-token = 1*VSCHAR`` (%x20-7E). A space would split an
    ``Authorization`` header, so it is refused too: every character must be visible ASCII (%x21-7E)."""
    return all("\x21" <= char <= "\x7e" for char in token)


def parse_token_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    default_lifetime: float,
    secrets: Iterable[str] = (),
    auth_method: AuthMethod | None = None,
    credentials_source: str | None = None,
) -> Token:
    """The token in a 2xx answer received at ``now``; raises InvalidTokenResponse when there is none.

    A 2xx carrying an OAuth ``error`` instead of a token (some servers do that) is classified like an error
    answer; ``secrets`` are redacted from anything quoted, and ``auth_method`` / ``credentials_source`` only
    sharpen that message's hint (see :func:`.classify.classify_error_response`).
    """
    headers = {name.lower(): value for name, value in headers.items()}

    def refusal() -> TokenError:
        return classify_error_response(status, headers, body, now=now, secrets=secrets, auth_method=auth_method,
                                       credentials_source=credentials_source)

    if not 200 <= status < 300:
        raise refusal()
    fields = _decode_body(headers, body, status)
    access_token = fields.get("access_token")
    if access_token == "":
        raise InvalidTokenResponse(f"token endpoint answered {status} with an empty access_token")
    if access_token is None:
        if fields.get("error"):  # an OAuth error wearing a 2xx
            raise refusal()
        known = sorted(name for name in fields if name in TOKEN_FIELD_NAMES)
        others = len(fields) - len(known)
        names = ", ".join(known) + (f"{' and ' if known else ''}{others} other{'s' if others != 1 else ''}"
                                    if others else "")
        raise InvalidTokenResponse(
            f"token endpoint answered {status} without an access_token (fields: {names or 'none'})"
        )
    if not isinstance(access_token, str):
        raise InvalidTokenResponse(f"token endpoint answered {status} with an access_token that is not a string")
    if not is_header_safe_token(access_token):
        raise InvalidTokenResponse(
            f"token endpoint answered {status} with an access_token containing whitespace, control characters "
            "non-ASCII characters (RFC 6749 allows visible ASCII only); it could not be sent in a header"
        )
    expires_at, source = _expiry(fields, access_token, now=now, default_lifetime=default_lifetime)
    return Token(
        access_token=SecretStr(access_token),
        token_type=_token_type(fields.get("token_type")),
        issued_at=now,
        expires_at=expires_at,
        expiry_source=source,
        scope=_scope(fields.get("scope")),
    )
