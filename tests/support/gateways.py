"""Token endpoints as users meet them: small stdlib servers that imitate real gateways' quirks exactly.

:class:`~tests.support.authserver.AuthServer` is a well-behaved RFC 6749 server. The endpoints in
``/work/shared/seeds`` are not, and the token client must cope with them as they are:

* :class:`ApigeeGateway` (seed 000/001, an Apigee Edge developer portal): credentials in the form body only
  (Basic is ignored), ``expires_in`` as a *string* (``"1799"``), ``issued_at`` as epoch *milliseconds* in a
  string, ``token_type: "BearerToken"``, a dozen extra keys including the empty key ``"": ""``; a bad client
  gets a 401 whose JSON has no RFC ``error`` member (``ErrorCode``/``Error``, or a ``fault`` for a revoked
  app).
* :class:`WSO2Gateway` (seed 003, WSO2 API Manager): HTTPS with a private CA (the seed's ``curl -k``),
  HTTP Basic ``base64(key:secret)`` taken literally (no form-decoding, so an RFC-encoded secret with special
  characters is refused), optional ``scope`` (default ``"am_application_scope default"``), ``validity_period``
  honoured, no refresh token. With ``reuse_active_token=True`` it behaves like a stock WSO2: while a token is
  active the same token comes back with the *remaining* lifetime (the seed's ``"expires_in":723``).
* :class:`AnalyticsGateway` (seed 002): credentials in the body or in Basic (form-decoded per RFC 6749
  §2.3.1, ``+`` is a space), RFC-shaped answer with ``token_type: "bearer"`` and a ``refresh_token``; 401 with
  an empty body for a blocked client.
* :class:`ScriptedServer`: answers each request with the next queued :class:`ScriptedResponse` (403 with an
  empty body, 429/503 with ``Retry-After``, HTML error pages, oversized bodies, redirects, slow answers...).

All of them listen on ``127.0.0.1`` with an ephemeral port in a background thread, are context managers,
record every request without its secrets (:class:`~tests.support.authserver.RecordedRequest`) and count
token requests. They speak HTTP/1.0 (one request per connection), which keeps shutdown simple: ``stop()``
interrupts slow answers and joins every handler thread.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
import ssl
import string
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self, cast
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from .authserver import RecordedRequest, RequestLog, loopback_opener, redact_form, redact_headers
from .pki import TestCA, server_ssl_context

__all__ = [
    "AnalyticsGateway",
    "ApigeeGateway",
    "GatewayRequest",
    "LoopbackServer",
    "ScriptedResponse",
    "ScriptedServer",
    "WSO2Gateway",
]

log = logging.getLogger(__name__)

_JSON = (("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclass(frozen=True)
class ScriptedResponse:
    """One HTTP answer. ``delay`` sleeps before answering (interrupted by ``stop()``);
    ``content_length=False`` sends no Content-Length (the body then ends when the connection closes)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay: float = 0.0
    content_length: bool = True

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, *, headers: Sequence[tuple[str, str]] = (), delay: float = 0.0
    ) -> ScriptedResponse:
        return cls(status, (*_JSON, *headers), json.dumps(payload).encode(), delay)

    @classmethod
    def text(
        cls,
        body: str,
        status: int,
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
        delay: float = 0.0,
    ) -> ScriptedResponse:
        return cls(status, (("Content-Type", content_type), *headers), body.encode(), delay)

    @classmethod
    def html(
        cls, status: int, title: str = "Service Unavailable", *, headers: Sequence[tuple[str, str]] = ()
    ) -> ScriptedResponse:
        page = (
            f"<!DOCTYPE html><html><head><title>{status} {title}</title></head>"
            f"<body><h1>{title}</h1><p>The server is temporarily unable to service your request.</p>"
            "<hr><address>nginx</address></body></html>"
        )
        return cls.text(page, status, content_type="text/html; charset=utf-8", headers=headers)

    @classmethod
    def empty(cls, status: int, *, headers: Sequence[tuple[str, str]] = ()) -> ScriptedResponse:
        return cls(status, tuple(headers), b"")

    @classmethod
    def retry_after(cls, status: int, seconds: float | str) -> ScriptedResponse:
        return cls.json({"error": "temporarily_unavailable"}, status, headers=[("Retry-After", str(seconds))])

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> ScriptedResponse:
        return cls(status, (("Location", location), ("Content-Type", "text/plain")), b"moved")

    @classmethod
    def oversized(cls, size: int, *, content_length: bool = True) -> ScriptedResponse:
        """A 200 that looks like a token response but is ``size`` bytes long."""
        prefix, suffix = b'{"token_type": "Bearer", "expires_in": 3600, "access_token": "', b'"}'
        filler = max(0, size - len(prefix) - len(suffix))
        return cls(200, _JSON, prefix + b"a" * filler + suffix, content_length=content_length)

    @classmethod
    def token(
        cls,
        access_token: str = "scripted-token",
        expires_in: Any = 3600,
        *,
        status: int = 200,
        delay: float = 0.0,
        **extra: Any,
    ) -> ScriptedResponse:
        return cls.json(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in, **extra},
            status,
            delay=delay,
        )


@dataclass
class GatewayRequest:
    """A parsed request, handed to :meth:`LoopbackServer.respond`."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    form: list[tuple[str, str]]
    basic: tuple[str, str] | None
    """Basic credentials exactly as base64-decoded and split at the first ``:`` (no percent-decoding)."""
    peer_cert: dict[str, Any] | None = None
    client_id: str | None = None  # filled in by the gateway when it knows who asked
    granted: bool = False

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def form_value(self, name: str) -> str | None:
        return next((value for key, value in self.form if key == name), None)

    @property
    def auth_method(self) -> str | None:
        if self.basic is not None:
            return "client_secret_basic"
        if self.form_value("client_secret") is not None:
            return "client_secret_post"
        return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads: nothing outlives stop()
    block_on_close = True

    def __init__(self, gateway: LoopbackServer, ssl_context: ssl.SSLContext | None) -> None:
        self.gateway = gateway
        self.ssl_context = ssl_context
        super().__init__(("127.0.0.1", gateway.requested_port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the handler thread, so a slow or failing client cannot stall
        # the accept loop.
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:  # wrap_socket detaches ``request``: the TLS socket is ours to close
            tls_socket = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls_socket, client_address)
        finally:
            self.shutdown_request(tls_socket)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    timeout = 10
    server_version = "loopback-gateway/1.0"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)

    def _serve(self) -> None:
        gateway = cast(_HTTPServer, self.server).gateway
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        content_type = self.headers.get("Content-Type", "")
        form = (
            parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            if content_type.startswith("application/x-www-form-urlencoded")
            else []
        )
        peer_cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        request = GatewayRequest(
            method=self.command,
            path=split.path,
            query=parse_qsl(split.query, keep_blank_values=True),
            headers=list(self.headers.items()),
            form=form,
            basic=_raw_basic(self.headers.get("Authorization")),
            peer_cert=cast(dict[str, Any] | None, peer_cert),
        )
        response = gateway.dispatch(request)
        if response.delay > 0 and gateway.stopping.wait(response.delay):
            return  # stopping: drop the connection
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.content_length:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (TimeoutError, ConnectionError, ssl.SSLError) as exc:
            log.debug("client went away: %s", exc)


def _raw_basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


@dataclass
class _Issued:
    client_id: str
    scope: str
    issued_at: float
    expires_at: float


@dataclass
class _GatewayClient:
    client_id: str
    secret: str
    revoked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class LoopbackServer:
    """Base of the servers here: lifecycle, addresses, recording, counting, and issued-token bookkeeping."""

    DEFAULT_TOKEN_PATH: ClassVar[str] = "/token"
    WHOAMI_PATH: ClassVar[str] = "/api/whoami"

    def __init__(self, *, tls: TestCA | None = None, token_path: str | None = None, port: int = 0) -> None:
        self._tls = tls
        self.token_path = token_path or self.DEFAULT_TOKEN_PATH
        self.requested_port = port
        self.ca_pem: str | None = tls.cert_pem if tls is not None else None
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._log = RequestLog()
        self._tokens: dict[str, _Issued] = {}
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        context = None
        if self._tls is not None:
            context = server_ssl_context(self._tls.issue_server_cert(name=f"gateway-{uuid.uuid4().hex[:8]}"))
        self.stopping.clear()
        self._server = _HTTPServer(self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()  # joins the handler threads
        if thread is not None:
            thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- addresses ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self._tls is not None else 'http'}://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + self.token_path

    # ---- recording ------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (any path), oldest first."""
        return self._log.snapshot()

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self._log.snapshot() if r.method == "POST" and r.path == self.token_path]

    def token_request_count(self, client_id: str | None = None, *, granted: bool | None = None) -> int:
        return sum(
            1
            for r in self.token_requests
            if (client_id is None or r.client_id == client_id) and (granted is None or r.granted == granted)
        )

    def reset_counts(self) -> None:
        self._log.clear()

    # ---- tokens ---------------------------------------------------------------------------------------------

    def accepts(self, token: str) -> bool:
        """Whether ``GET /api/whoami`` with this bearer token answers 200 (over HTTP)."""
        request = urllib.request.Request(  # noqa: S310 - our own loopback http(s) URL
            self.url + self.WHOAMI_PATH, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with loopback_opener(self.ca_pem).open(request, timeout=10) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 401:
                return False
            raise

    def _issue(self, client_id: str, lifetime: float, scope: str = "", access_token: str | None = None) -> str:
        token = access_token or secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._tokens[token] = _Issued(client_id, scope, now, now + lifetime)
        return token

    def _valid_token(self, token: str) -> _Issued | None:
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or time.time() >= issued.expires_at or self._client_revoked(issued.client_id):
            return None
        return issued

    def _client_revoked(self, client_id: str) -> bool:
        return False

    # ---- dispatch -------------------------------------------------------------------------------------------

    def dispatch(self, request: GatewayRequest) -> ScriptedResponse:
        if request.method == "GET" and request.path == self.WHOAMI_PATH:
            return self._whoami(request)
        response = self.respond(request)
        names, form = redact_form(request.form)
        self._log.append(
            RecordedRequest(
                time=time.time(),
                method=request.method,
                path=request.path,
                status=response.status,
                granted=request.granted,
                client_id=request.client_id,
                auth_method=request.auth_method,
                form_names=names,
                form=form,
                headers=redact_headers(request.headers),
            )
        )
        return response

    def respond(self, request: GatewayRequest) -> ScriptedResponse:
        raise NotImplementedError

    def _whoami(self, request: GatewayRequest) -> ScriptedResponse:
        authorization = request.header("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        issued = self._valid_token(token.strip()) if scheme.lower() == "bearer" else None
        if issued is None:
            return ScriptedResponse.json(
                {"error": "invalid_token"}, 401, headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')]
            )
        return ScriptedResponse.json(
            {"client_id": issued.client_id, "scope": issued.scope, "expires_at": int(issued.expires_at)}
        )


class _ClientRegistry(LoopbackServer):
    """A gateway with registered clients (id, secret, revoked)."""

    def __init__(
        self, *, tls: TestCA | None = None, token_path: str | None = None, port: int = 0, lifetime: int = 3600
    ) -> None:
        super().__init__(tls=tls, token_path=token_path, port=port)
        self.lifetime = lifetime
        self._clients: dict[str, _GatewayClient] = {}

    def add_client(self, client_id: str, secret: str, **extra: Any) -> None:
        with self._lock:
            self._clients[client_id] = _GatewayClient(client_id, secret, extra=dict(extra))

    def set_secret(self, client_id: str, secret: str) -> None:
        with self._lock:
            self._clients[client_id].secret = secret

    def revoke(self, client_id: str) -> None:
        with self._lock:
            self._clients[client_id].revoked = True

    def reinstate(self, client_id: str) -> None:
        with self._lock:
            self._clients[client_id].revoked = False

    def set_token_lifetime(self, seconds: int) -> None:
        self.lifetime = seconds

    def _client_revoked(self, client_id: str) -> bool:
        with self._lock:
            client = self._clients.get(client_id)
        return client is None or client.revoked

    def _check(self, client_id: str | None, secret: str | None) -> _GatewayClient | None:
        """The client when id and secret match (revoked or not), else None."""
        if client_id is None or secret is None:
            return None
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            return None
        return client


class ApigeeGateway(_ClientRegistry):
    """An Apigee Edge ``GenerateAccessToken`` endpoint as the seed portal shows it (30-minute tokens)."""

    DEFAULT_TOKEN_PATH = "/oauth/accesstoken"

    def __init__(
        self,
        *,
        tls: TestCA | None = None,
        token_path: str | None = None,
        port: int = 0,
        lifetime: int = 1799,
        organization_name: str = "uscis",
        api_products: Sequence[str] = ("test-case-status-api-usda-stage", "OAuth-Int"),
    ) -> None:
        super().__init__(tls=tls, token_path=token_path, port=port, lifetime=lifetime)
        self.organization_name = organization_name
        self.api_products = tuple(api_products)

    def respond(self, request: GatewayRequest) -> ScriptedResponse:
        if request.method != "POST" or request.path != self.token_path:
            return ScriptedResponse.json(
                {
                    "fault": {
                        "faultstring": "Unable to identify proxy for host",
                        "detail": {"errorcode": "messaging.adaptors.http.flow.ApplicationNotFound"},
                    }
                },
                404,
            )
        grant_type = request.form_value("grant_type") or dict(request.query).get("grant_type")
        if grant_type != "client_credentials":
            return ScriptedResponse.json(
                {"ErrorCode": "invalid_request", "Error": f"Unsupported grant type : {grant_type}"}, 400
            )
        client_id = request.form_value("client_id")  # Basic is not looked at: body credentials only
        request.client_id = client_id
        client = self._check(client_id, request.form_value("client_secret"))
        if client is None:
            return ScriptedResponse.json({"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"}, 401)
        if client.revoked:
            return ScriptedResponse.json(
                {
                    "fault": {
                        "faultstring": "Invalid client identifier {0}",
                        "detail": {"errorcode": "oauth.v2.InvalidClientIdentifier"},
                    }
                },
                401,
            )
        issued_at_ms = int(time.time() * 1000)
        alphabet = string.ascii_letters + string.digits
        access_token = self._issue(
            client.client_id,
            self.lifetime,
            request.form_value("scope") or "",
            "".join(secrets.choice(alphabet) for _ in range(28)),
        )
        request.granted = True
        products = self.api_products
        return ScriptedResponse.json(
            {
                "refresh_token_expires_in": "0",
                "api_product_list": "[" + ", ".join(products) + "]",
                "api_product_list_json": list(products),
                "organization_name": self.organization_name,
                "developer.email": "developer@example.com",
                "token_type": "BearerToken",
                "issued_at": str(issued_at_ms),
                "client_id": client.client_id,
                "access_token": access_token,
                "application_name": str(client.extra.get("application_name", uuid.uuid4())),
                "scope": request.form_value("scope") or "",
                "expires_in": str(self.lifetime),
                "refresh_count": "0",
                "status": "approved",
                "": "",
            }
        )


class WSO2Gateway(_ClientRegistry):
    """WSO2 API Manager's ``/token`` (seed 003). Requires ``tls`` (WSO2 serves HTTPS with its own cert)."""

    DEFAULT_TOKEN_PATH = "/token"
    DEFAULT_SCOPE = "am_application_scope default"

    def __init__(
        self,
        *,
        tls: TestCA,
        token_path: str | None = None,
        port: int = 0,
        lifetime: int = 3600,
        reuse_active_token: bool = False,
    ) -> None:
        super().__init__(tls=tls, token_path=token_path, port=port, lifetime=lifetime)
        self.reuse_active_token = reuse_active_token

    def respond(self, request: GatewayRequest) -> ScriptedResponse:
        if request.method != "POST" or request.path != self.token_path:
            return ScriptedResponse.text("Not Found", 404)
        failed = ScriptedResponse.json(
            {"error_description": "Client Authentication failed.", "error": "invalid_client"}, 401
        )
        if request.basic is None:
            return failed
        client_id, secret = request.basic  # literally: WSO2 does not form-decode Basic credentials
        request.client_id = client_id
        client = self._check(client_id, secret)
        if client is None or client.revoked:
            return failed
        if request.form_value("grant_type") != "client_credentials":
            return ScriptedResponse.json(
                {"error_description": "Unsupported grant_type value", "error": "unsupported_grant_type"}, 400
            )
        lifetime = self.lifetime
        validity_period = request.form_value("validity_period")
        if validity_period is not None:
            try:
                lifetime = int(validity_period)
            except ValueError:
                return ScriptedResponse.json(
                    {"error_description": "Invalid validity period", "error": "invalid_request"}, 400
                )
        scope = request.form_value("scope") or self.DEFAULT_SCOPE
        request.granted = True
        if self.reuse_active_token:
            active = self._active_token(client.client_id, scope)
            if active is not None:
                token, remaining = active
                return self._answer(token, scope, remaining)
        token = self._issue(client.client_id, lifetime, scope, str(uuid.uuid4()))
        return self._answer(token, scope, lifetime)

    def _active_token(self, client_id: str, scope: str) -> tuple[str, int] | None:
        now = time.time()
        with self._lock:
            for token, issued in self._tokens.items():
                if issued.client_id == client_id and issued.scope == scope and issued.expires_at - now >= 1:
                    return token, int(issued.expires_at - now)
        return None

    @staticmethod
    def _answer(token: str, scope: str, expires_in: int) -> ScriptedResponse:
        return ScriptedResponse.json(
            {"access_token": token, "scope": scope, "token_type": "Bearer", "expires_in": expires_in},
            headers=[("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff")],
        )


class AnalyticsGateway(_ClientRegistry):
    """The analytics product's token endpoint (seed 002)."""

    DEFAULT_TOKEN_PATH = "/token"
    DEFAULT_SCOPE = "create"

    def __init__(
        self, *, tls: TestCA | None = None, token_path: str | None = None, port: int = 0, lifetime: int = 3600
    ) -> None:
        super().__init__(tls=tls, token_path=token_path, port=port, lifetime=lifetime)
        self._blocked: set[str] = set()

    def block(self, client_id: str, blocked: bool = True) -> None:
        """A blocked client gets a bare 401 (empty body), as the seed describes."""
        with self._lock:
            (self._blocked.add if blocked else self._blocked.discard)(client_id)

    def respond(self, request: GatewayRequest) -> ScriptedResponse:
        if request.method != "POST" or request.path != self.token_path:
            return ScriptedResponse.empty(404)
        if request.basic is not None:
            client_id, secret = (unquote_plus(part) for part in request.basic)
        else:
            client_id, secret = request.form_value("client_id") or "", request.form_value("client_secret") or ""
        request.client_id = client_id or None
        with self._lock:
            blocked = client_id in self._blocked
        if blocked:
            return ScriptedResponse.empty(401, headers=[("WWW-Authenticate", 'Basic realm="analytics"')])
        client = self._check(client_id, secret)
        if client is None or client.revoked:
            return ScriptedResponse.json(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, 401
            )
        if request.form_value("grant_type") != "client_credentials":
            return ScriptedResponse.json({"error": "unsupported_grant_type"}, 400)
        scope = request.form_value("scope") or self.DEFAULT_SCOPE
        token = self._issue(client.client_id, self.lifetime, scope)
        request.granted = True
        return ScriptedResponse.json(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.lifetime,
                "refresh_token": secrets.token_urlsafe(24),
                "scope": scope,
            }
        )


class ScriptedServer(LoopbackServer):
    """Answers each request (any method, any path) with the next queued :class:`ScriptedResponse`;
    ``default`` (or a 500 saying nothing was queued) when the queue is empty."""

    def __init__(
        self,
        *responses: ScriptedResponse,
        tls: TestCA | None = None,
        token_path: str | None = None,
        port: int = 0,
        default: ScriptedResponse | None = None,
    ) -> None:
        super().__init__(tls=tls, token_path=token_path, port=port)
        self._queue: list[ScriptedResponse] = list(responses)
        self.default = default
        self.unscripted = 0
        """How many requests found the queue empty."""

    def push(self, *responses: ScriptedResponse) -> None:
        with self._lock:
            self._queue.extend(responses)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def respond(self, request: GatewayRequest) -> ScriptedResponse:
        request.client_id = request.basic[0] if request.basic else request.form_value("client_id")
        with self._lock:
            response = self._queue.pop(0) if self._queue else None
            if response is None:
                self.unscripted += 1
        if response is None:
            response = self.default or ScriptedResponse.text("ScriptedServer: no response queued", 500)
        request.granted = response.status == 200
        return response
