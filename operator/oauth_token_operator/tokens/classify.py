"""The one place where token-endpoint failures become errors of the tree in :mod:`oauth_token_operator.errors`.

Two kinds of failure reach us: an HTTP answer that is not a token (:func:`classify_error_response`) and an
exception from the transport (:func:`classify_transport_error`). Both produce a
:class:`~oauth_token_operator.errors.TokenError` whose class says what to do next (wait, or fix the inputs)
and whose message tells a human what happened and where to look, in one line.

Deciding the class: a 429, 408 or 5xx is transient whatever the body says; a 3xx is a misconfigured URL (we
never follow redirects with credentials); otherwise a known OAuth ``error`` code decides (RFC 6749 §5.2), and
without one the status does (401/403 are the client's credentials, other 4xx a refused request).

Servers echo things. Every piece of server text is truncated, stripped of control characters and passed
through :func:`redact` with the request's secrets, so a message never carries a client secret, a private key
or a token, even when a gateway reflects the request body into its error page. HTML pages are never quoted.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import quote, quote_plus, urlsplit

import httpx

from ..api import AuthMethod
from ..errors import EndpointUnavailable, InvalidClient, TokenError, TokenRequestRejected
from .clientauth import ClientSecretBasic, strategy_for
from .model import ClientConfig

__all__ = [
    "MAX_SERVER_TEXT",
    "classify_error_response",
    "classify_transport_error",
    "clean_server_text",
    "config_secrets",
    "is_invalid_client_answer",
    "parse_retry_after",
    "redact",
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


# ------------------------------------------------------------------------------------------ HTTP answers


@dataclass(frozen=True)
class _ServerSays:
    """What an error body told us, before any cleaning."""

    code: str | None = None
    description: str | None = None
    html: bool = False


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


def _from_json(obj: dict[str, object]) -> _ServerSays:
    error = obj.get("error")
    fault = obj.get("fault")
    if isinstance(error, dict):  # {"error": {"code": ..., "message": ...}} (Google-style APIs, some gateways)
        return _ServerSays(
            _first(error.get("code"), error.get("error"), error.get("status")),
            _first(error.get("message"), error.get("error_description")),
        )
    if isinstance(fault, dict):  # Apigee policy faults: {"fault": {"faultstring", "detail": {"errorcode"}}}
        detail = fault.get("detail")
        code = _first(detail.get("errorcode")) if isinstance(detail, dict) else None
        return _ServerSays(code, _first(fault.get("faultstring")))
    title, detail = _first(obj.get("title")), _first(obj.get("detail"))
    problem = f"{title}: {detail}" if title and detail else (title or detail)
    return _ServerSays(
        _first(error, obj.get("ErrorCode"), obj.get("errorCode"), obj.get("error_code")),
        _first(
            obj.get("error_description"),
            obj.get("Error"),
            problem,
            obj.get("message"),
            obj.get("Message"),
            obj.get("errorMessage"),
            obj.get("error_message"),
        ),
    )


def _read_body(headers: Mapping[str, str], body: bytes) -> _ServerSays:
    content_type = headers.get("content-type", "").lower()
    stripped = body.strip()
    if not stripped:
        return _ServerSays()
    if "html" in content_type or stripped[:1] == b"<":
        return _ServerSays(html=True)
    try:
        parsed = json.loads(stripped)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return _from_json(parsed)
    if "json" in content_type or parsed is not None:  # JSON, but not an object: say nothing of it
        return _ServerSays()
    return _ServerSays(description=stripped.decode("utf-8", "replace"))


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
    return _oauth_code(_read_body(headers, body).code) == "invalid_client"


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
    code = clean_server_text(says.code, secrets, limit=80) if says.code else None
    oauth_code = _oauth_code(code)
    description = clean_server_text(says.description, secrets) if says.description else None

    phrase = _status_text(status).partition(" ")[2]
    if description and phrase and description.lower().startswith(phrase.lower() + ": "):
        description = description[len(phrase) + 2 :]  # problem+json titles repeat the status phrase
    what = f"token endpoint answered {_status_text(status) if code is None else f'{status} {code}'}"
    if says.html:
        what += " with an HTML page"
    elif description:
        what += f": {description}"
    elif code is None and not body.strip():
        what += " with an empty body"

    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(headers.get("retry-after"), now=now)
        when = f"; retrying after {retry_after:.0f}s (Retry-After)" if retry_after is not None else ""
        why = "the server is rate limiting token requests" if status == 429 else "the server is unavailable"
        return EndpointUnavailable(f"{what}; {why}{when}", retry_after=retry_after)
    if 300 <= status < 400:
        location = headers.get("location")
        to = f" to {clean_server_text(location, secrets)}" if location else ""
        return TokenRequestRejected(
            f"token endpoint answered {_status_text(status)} (a redirect{to}); "
            "redirects are not followed for token requests; set tokenURL to the "
            "final URL"
        )
    source = credentials_source or "the client credentials Secret"
    challenge = headers.get("www-authenticate", "").strip().split(" ", 1)[0].lower()
    if oauth_code in _CLIENT_CODES or (status in (401, 403) and (oauth_code not in _REQUEST_CODES or status == 401)):
        if oauth_code == "unauthorized_client":
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


# ------------------------------------------------------------------------------------ transport failures


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _where(url: str | None) -> str:
    if not url:
        return "the token endpoint"
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "the token endpoint"  # never show userinfo


def classify_transport_error(
    exc: BaseException, *, url: str | None = None, secrets: Iterable[str] = ()
) -> EndpointUnavailable:
    """The error for a request that got no HTTP answer: DNS, refused, timeout, TLS, broken protocol."""
    secrets = tuple(secrets)
    host = _where(url)
    chain = list(_causes(exc))

    def detail() -> str:
        text = next((str(e) for e in chain if str(e)), type(exc).__name__)
        return clean_server_text(text, secrets)

    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in detail():
        reason = getattr(verify, "verify_message", None) or detail()
        return EndpointUnavailable(
            f"TLS certificate verification failed for {host}: {clean_server_text(str(reason), secrets)}; if "
            "the server uses a private or self-signed CA, add it with tls.caBundleRef"
        )
    if "WRONG_VERSION_NUMBER" in detail():
        return EndpointUnavailable(
            f"TLS handshake with {host} failed: the server does not speak TLS on this port (is the URL http:// "
            "rather than https://, or the port wrong?)"
        )
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return EndpointUnavailable(
            f"TLS handshake with {host} failed: {detail()}; check the server's TLS setup and, if it requires "
            "a client certificate, tls.clientCertificateSecretRef"
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        phase: dict[type[BaseException], str] = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the answer",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a connection",
        }
        doing = phase.get(type(exc), "waiting")
        return EndpointUnavailable(f"timed out {doing} ({host}); the server is slow or unreachable")
    if any(isinstance(e, socket.gaierror) for e in chain) or re.search(
        r"name or service not known|nodename nor servname|name resolution|getaddrinfo", detail(), re.I
    ):
        return EndpointUnavailable(f"cannot resolve host {host}: {detail()}; check the URL's host name and cluster DNS")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in detail().lower():
        return EndpointUnavailable(f"connection to {host} refused; is the server running and is the port right?")
    if isinstance(exc, httpx.ProtocolError):
        return EndpointUnavailable(f"the connection to {host} broke the HTTP protocol: {detail()}")
    if isinstance(exc, httpx.NetworkError | OSError):
        return EndpointUnavailable(f"network error talking to {host}: {detail()}")
    return EndpointUnavailable(f"request to {host} failed ({type(exc).__name__}): {detail()}")
