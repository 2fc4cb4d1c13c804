"""The one place where token-endpoint failures become errors of the tree in :mod:`oauth_token_operator.errors`.

Two kinds of failure reach us: an HTTP answer that is not a token (:func:`classify_error_response`, here) and
an exception from the transport (:func:`~.transport_errors.classify_transport_error`, which needs httpx and so
lives apart: this module is pure, as ``.importlinter`` enforces). Both produce a
:class:`~oauth_token_operator.errors.TokenError` whose class says what to do next (wait, or fix the inputs)
and whose message tells a human what happened and where to look, in one line.

Deciding the class: a 429, 408 or 5xx is transient whatever the body says; a 3xx is a misconfigured URL (we
never follow redirects with credentials); otherwise a known OAuth ``error`` code decides (RFC 6749 §5.2), and
without one the status does (401/403 are the client's credentials, other 4xx a refused request).

Only RFC 6749 §5.2 error fields are ever quoted: ``error``, ``error_description`` and ``error_uri``, each
stripped of control characters, bounded and passed through :func:`redact` with the request's secrets, so a
message never carries a client secret, a private key or a token, even when a gateway reflects the request body
into its error page. Anything else a server sends is described, never quoted: a text or HTML page, a JSON
document of another shape, by its status, media type and length (:func:`describe_body`); a redirect, without
its ``Location``. The endpoint may not be an authorization server at all: a resource pointed at an internal
service must not read that service's pages back through the operator's status, Events and logs. Vendor error
codes (Apigee's ``steps.oauth.v2.InvalidApiKey``) still decide the class and are shown only as the RFC 6749
code they stand for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import quote, quote_plus, urlsplit

from ..api import AuthMethod
from ..errors import EndpointUnavailable, InvalidClient, TokenError, TokenRequestRejected
from .clientauth import ClientSecretBasic, strategy_for
from .model import ClientConfig

__all__ = [
    "MAX_SERVER_TEXT",
    "classify_error_response",
    "clean_server_text",
    "config_secrets",
    "describe_body",
    "is_invalid_client_answer",
    "parse_retry_after",
    "redact",
    "without_userinfo",
]

MAX_SERVER_TEXT = 200
"""Server-provided text is cut to this many characters in messages."""

_REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 4  # shorter "secrets" would shred every message; nobody's real secret is that short
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,40}/[a-z0-9][a-z0-9!#$&^_.+-]{0,40}")
_RFC6749_TEXT = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §5.2: the characters of error
_KNOWN_CODES = frozenset(
    {
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
        "invalid_scope", "invalid_target", "access_denied", "server_error", "temporarily_unavailable",
        "slow_down", "invalid_token", "insufficient_scope", "invalid_dpop_proof", "use_dpop_nonce",
    }
)
"""Codes of RFC 6749, 6750, 8707, 8628 and 9449: a vendor code is shown as one of these, or not at all."""
_CLIENT_CODES = frozenset({"invalid_client", "unauthorized_client"})
_REQUEST_CODES = frozenset(
    {
        "invalid_scope",
        "invalid_target",
        "invalid_request",
        "unsupported_grant_type",
        "invalid_grant",
    }
)
_CODE_HINTS = {
    "unauthorized_client": "the client may not use the client_credentials grant; enable that grant type "
    "for the application on the server",
    "invalid_scope": "check spec.scopes against the scopes this client may request",
    "invalid_target": "check spec.resources and spec.audience against what the server knows",
    "invalid_request": "the server found the request malformed; check spec.extraParams, spec.audience and "
    "spec.authMethod",
    "unsupported_grant_type": "the server does not offer the client_credentials grant to this client; "
    "enable it for the application on the server",
    "invalid_grant": "the server refused the grant; check spec.scopes, spec.audience and spec.extraParams",
}


_AUTHENTICATION_FAILED = re.compile(r"credential|authenticat|invalid client|secret", re.IGNORECASE)


def _says_authentication_failed(status: int, description: str | None) -> bool:
    return status == 401 and description is not None and bool(_AUTHENTICATION_FAILED.search(description))


# ---------------------------------------------------------------------------------------------- redaction


def config_secrets(config: ClientConfig, *extra: str) -> tuple[str, ...]:
    """Every secret string of ``config`` (plus ``extra``, e.g. a request's Basic header or assertion)."""
    values = [*extra]
    for secret in (config.client_secret, config.private_key_pem, config.tls.client_key_pem, config.client_assertion):
        if secret is not None:
            values.append(secret.get_secret_value())
    return tuple(value for value in values if value)


def _variants(secret: str) -> set[str]:
    """The forms a secret may take when a server echoes it: as is, form/percent-encoded, JSON-escaped."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    # A PEM key echoed partially (or re-wrapped) still leaks its body lines.
    forms.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 16)
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its encoded forms) and every PEM private key replaced by a marker."""
    text = _PEM_PRIVATE_KEY.sub("[REDACTED private key]", text)
    forms: set[str] = set()
    for secret in secrets:
        forms |= _variants(secret)
    for form in sorted(forms, key=len, reverse=True):  # longest first: a secret may contain another
        text = text.replace(form, _REDACTED)
    return text


def clean_server_text(text: str, secrets: Iterable[str] = (), limit: int = MAX_SERVER_TEXT) -> str:
    """Server text made safe to show: control characters out, secrets redacted, cut to ``limit``."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    text = redact(text, secrets)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` in its authority: the only form of a URL shown in status or messages.

    Admission refuses userinfo in URLs already; this keeps objects stored before that rule (and discovery
    documents, which announce what they like) from echoing a password. Purely textual, never raises.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}://{authority.rsplit('@', 1)[1]}{rest[end:]}"


# ------------------------------------------------------------------------------------------ HTTP answers


@dataclass(frozen=True)
class _ServerSays:
    """What an error body told us, before any cleaning. Only ``error``/``error_description``/``error_uri``
    are ever shown; ``vendor_code`` only classifies (and is shown as the RFC 6749 code it maps to)."""

    code: str | None = None
    description: str | None = None
    uri: str | None = None
    vendor_code: str | None = None
    oauth: bool = False
    """The body is a JSON object with an RFC 6749 ``error``: otherwise it is described, not quoted."""


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _first(*values: object) -> str | None:
    for value in values:
        if (text := _text(value)) is not None:
            return text
    return None


def _vendor_code(obj: dict[str, object]) -> str | None:
    """An error code in a non-RFC shape, for classification only."""
    error, fault = obj.get("error"), obj.get("fault")
    if isinstance(error, dict):  # {"error": {"code": ..., "message": ...}} (Google-style APIs, some gateways)
        return _first(error.get("code"), error.get("error"), error.get("status"))
    if isinstance(fault, dict):  # Apigee policy faults: {"fault": {"faultstring", "detail": {"errorcode"}}}
        detail = fault.get("detail")
        return _first(detail.get("errorcode")) if isinstance(detail, dict) else None
    return _first(obj.get("ErrorCode"), obj.get("errorCode"), obj.get("error_code"))


def _read_body(headers: Mapping[str, str], body: bytes) -> _ServerSays:
    stripped = body.strip()
    if not stripped or stripped[:1] != b"{":
        return _ServerSays()
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return _ServerSays()
    if not isinstance(parsed, dict):
        return _ServerSays()
    code = parsed.get("error")
    if isinstance(code, str) and code.strip():
        description, uri = parsed.get("error_description"), parsed.get("error_uri")
        return _ServerSays(
            code=code,
            description=description if isinstance(description, str) and description.strip() else None,
            uri=uri if isinstance(uri, str) and uri.strip() else None,
            oauth=True,
        )
    return _ServerSays(vendor_code=_vendor_code(parsed))


def describe_body(headers: Mapping[str, str], body: bytes) -> str:
    """A body by its media type and length, never its content: ``a 1234-byte text/html body``."""
    if not body.strip():
        return "an empty body"
    raw = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    media = raw.split(";", 1)[0].strip().lower()
    if not media:
        kind = "body without Content-Type"
    elif _MEDIA_TYPE.fullmatch(media):
        kind = f"{media} body"
    else:
        kind = "body with an unusual Content-Type"
    return f"a {len(body)}-byte {kind}"


def _shown_code(code: str | None, secrets: Iterable[str]) -> str | None:
    """An ``error`` value as RFC 6749 allows it (printable ASCII without quote or backslash), bounded."""
    if code is None:
        return None
    code = code.strip()
    if len(code) > 80 or not _RFC6749_TEXT.fullmatch(code):
        return None
    shown = redact(code, secrets)
    return shown if shown == code else None  # a "code" that holds a secret is no code


def _shown_uri(uri: str | None, secrets: Iterable[str]) -> str | None:
    """An ``error_uri`` if it is a plain http(s) URL (no userinfo), bounded; else nothing."""
    if uri is None:
        return None
    uri = uri.strip()
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if len(uri) > MAX_SERVER_TEXT or not _RFC6749_TEXT.fullmatch(uri) or redact(uri, secrets) != uri:
        return None
    return uri


def _oauth_code(code: str | None) -> str | None:
    """The RFC 6749 code a vendor code stands for (Apigee ``steps.oauth.v2.invalid_client`` → ``invalid_client``)."""
    if code is None:
        return None
    last = code.strip().rsplit(".", 1)[-1]
    snake = _CAMEL_BOUNDARY.sub("_", last).lower()
    if snake.startswith(("invalid_client", "invalid_api_key")):
        return "invalid_client"
    return snake


def is_invalid_client_answer(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the server refused the client's authentication itself: 401, 403 or ``invalid_client``.

    Narrower than :class:`InvalidClient` (which also covers ``unauthorized_client``, an authenticated client
    that may not use the grant): this is the question "were the credentials as sent not accepted?".
    """
    if status in (401, 403):
        return True
    if not 400 <= status < 500:
        return False
    headers = {name.lower(): value for name, value in headers.items()}
    says = _read_body(headers, body)
    return _oauth_code(says.code or says.vendor_code) == "invalid_client"


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _client_hint(auth_method: AuthMethod | None, source: str, challenge: str) -> str:
    if challenge == "bearer":
        return (
            "the server asks for a Bearer token (WWW-Authenticate: Bearer): tokenURL may point at a "
            "protected API rather than at the token endpoint"
        )
    strategy = strategy_for(auth_method) if auth_method is not None else ClientSecretBasic()
    return strategy.refusal_hint(source, challenge)


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def classify_error_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    secrets: Iterable[str] = (),
    auth_method: AuthMethod | None = None,
    credentials_source: str | None = None,
) -> TokenError:
    """The error for a token endpoint answer that is not a token (any non-2xx, or a 2xx with an ``error``).

    ``credentials_source`` (e.g. ``Secret team-a/torch-client``) and ``auth_method`` only improve the hint.
    """
    now = now or datetime.now(UTC)
    secrets = tuple(secrets)
    headers = {name.lower(): value for name, value in headers.items()}
    says = _read_body(headers, body)
    oauth_code = _oauth_code(says.code or says.vendor_code)
    code = _shown_code(says.code, secrets) if says.oauth else None
    if code is None and oauth_code in _KNOWN_CODES:
        code = oauth_code  # a vendor code, or an unprintable one, shown as the RFC 6749 code it stands for
    description = clean_server_text(says.description, secrets) if says.description else None
    uri = _shown_uri(says.uri, secrets)

    what = f"token endpoint answered {_status_text(status) if code is None else f'{status} {code}'}"
    if says.oauth:
        if description:
            what += f": {description}"
        if uri:
            what += f" (see {uri})"
    elif not (300 <= status < 400):
        what += f" with {describe_body(headers, body)}"
        if code is not None:
            what += " (a vendor error code; the body is not shown)"
        elif body.strip():
            what += ", not an OAuth error response"

    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(headers.get("retry-after"), now=now)
        when = f"; retrying after {retry_after:.0f}s (Retry-After)" if retry_after is not None else ""
        why = "the server is rate limiting token requests" if status == 429 else "the server is unavailable"
        return EndpointUnavailable(f"{what}; {why}{when}", retry_after=retry_after)
    if 300 <= status < 400:
        return TokenRequestRejected(
            f"token endpoint answered {_status_text(status)}, a redirect to another location (not shown); "
            "redirects are not followed for token requests; set tokenURL to the token endpoint itself"
        )
    source = credentials_source or "the client credentials Secret"
    challenge = headers.get("www-authenticate", "").strip().split(" ", 1)[0].lower()
    if oauth_code in _CLIENT_CODES or (status in (401, 403) and (oauth_code not in _REQUEST_CODES or status == 401)):
        # unauthorized_client is "may not use this grant" (RFC 6749 §5.2), except that some servers (Keycloak)
        # also send it, with a 401, when the client's authentication failed ("Invalid client or Invalid client
        # credentials"): then the credentials are what to check. The description tells the two apart.
        if oauth_code == "unauthorized_client" and not _says_authentication_failed(status, description):
            hint = _CODE_HINTS[oauth_code]
        else:
            hint = _client_hint(auth_method, source, challenge)
        return InvalidClient(f"{what}; {hint}")
    if oauth_code in _CODE_HINTS:
        return TokenRequestRejected(f"{what}; {_CODE_HINTS[oauth_code]}")
    if status in (404, 405):
        return TokenRequestRejected(f"{what}; check that tokenURL (or the discovered endpoint) is the token endpoint")
    if 400 <= status < 500 or 200 <= status < 300:  # a 2xx here carried an OAuth error instead of a token
        return TokenRequestRejected(f"{what}; the server refused the token request")
    return EndpointUnavailable(f"{what}; unexpected answer from the token endpoint")
