"""A real OAuth 2.0 authorization server on loopback, for tests and demos.

Why a real one: the operator's token client must interoperate with servers it does not control, so its
tests talk to an independent implementation, Authlib's server side (the same code many Python identity
providers run), over real sockets and real TLS, instead of to a mock written by the author of the client.

What is inside:

* ``authlib.integrations.flask_oauth2.AuthorizationServer`` with the ``client_credentials`` grant and four
  client authentication methods: ``client_secret_basic`` and ``client_secret_post`` (Authlib's own),
  ``private_key_jwt`` (RFC 7523, Authlib's ``JWTBearerClientAssertion``, keys from the client's registered
  JWKS, selected by ``kid``), and ``tls_client_auth`` (RFC 8705 §2.1, registered here: the peer
  certificate's subject DN must equal the client's registered DN; the TLS layer already checked the chain).
* ``client_secret_jwt`` (OpenID Connect Core §9): an assertion signed with HS256/384/512 keyed by the client's
  secret, verified by Authlib's ``JWTBearerClientAssertion`` with the secret as an ``OctKey``.
* ``federated_jwt``: workload identity federation as Entra ID and Keycloak (``federated-jwt``) do it. The client
  is registered with a :class:`FederatedTrust` (an issuer, its JWKS, the subject and audience expected); the
  client names itself with the ``client_id`` form field and authenticates with a token of that issuer as
  ``client_assertion``, verified like a real server does: signature against the issuer's JWKS, ``iss``,
  ``sub``, ``aud``, ``exp``/``iat`` and a maximum lifetime.
* ``GET /api/whoami`` behind Authlib's ``ResourceProtector``: 200 with the token's client and scope for a
  valid, unexpired, unrevoked bearer token, 401 otherwise. :meth:`AuthServer.accepts` calls it over HTTP,
  so a test proves "the authorization server accepts this token" end to end. Every call is recorded as a
  :class:`ResourceCall` (:meth:`AuthServer.resource_calls`: the outcome, ``ok``/``expired``/``unknown``/
  ``revoked``/``missing``, and which issued token was presented, never the token): a consumer outside the
  test process (a pod) can be checked call by call. ``?consumer=NAME`` labels a call.
* Discovery: RFC 8414 (``/.well-known/oauth-authorization-server{issuer_path}``) and OpenID Connect
  (``{issuer_path}/.well-known/openid-configuration``), each of which can be switched off.
* Failure injection and counting for refresh and backoff tests: :meth:`AuthServer.fail_next`,
  :meth:`AuthServer.set_down`, :attr:`AuthServer.requests` (never a secret), :meth:`token_request_count`.
* The WSO2 ``validity_period`` form parameter overrides the client's token lifetime when present.

Served by werkzeug's threaded server on ``127.0.0.1`` and an ephemeral port in a background thread.
Werkzeug puts the verified peer certificate (PEM) into ``environ["SSL_CLIENT_CERT"]`` when the SSL context
asks for one (``werkzeug.serving.WSGIRequestHandler.make_environ``); mTLS mode uses ``CERT_OPTIONAL`` with
the test CA, so clients without a certificate can still use the other methods.

Quirk — how Authlib decodes HTTP Basic client credentials (``authlib.oauth2.rfc6749.util.
extract_basic_authorization``, Authlib 1.9): base64-decode, split at the first ``:``, then
``urllib.parse.unquote`` on both halves. So ``%XX`` escapes ARE decoded but ``+`` is NOT turned into a
space. Consequences, each checked by a test against this server:

* RFC 6749 §2.3.1 style with spaces as ``%20`` (``quote(secret, safe="")``) works for any secret, e.g.
  ``p@ss:w+rd/100%=&x y`` sent as ``p%40ss%3Aw%2Brd%2F100%25%3D%26x%20y``.
* Strict ``application/x-www-form-urlencoded`` (``quote_plus``: space as ``+``) fails for a secret with a
  space: the server compares against ``...x+y``.
* Raw, unencoded secrets work only when they hold no ``%XX`` sequence (``100%=&`` is not a valid escape and
  is kept as is, so the secret above happens to work raw; ``abc%41`` would become ``abcA``).

Standalone demo: ``python -m tests.support.authserver --port 0 --client demo-client:demo-secret`` prints the
token URL and serves (plain http on 127.0.0.1) until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import logging
import secrets
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, cast, get_args
from urllib.parse import unquote

import flask
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc8414 import get_well_known_url
from cryptography import x509
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey, RSAKey
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .pki import TestCA, server_ssl_context

__all__ = [
    "AUTH_METHODS",
    "SECRET_FORM_FIELDS",
    "AuthMethodName",
    "AuthServer",
    "FederatedTrust",
    "RecordedRequest",
    "RequestLog",
    "ResourceCall",
    "loopback_opener",
    "main",
    "redact_form",
    "redact_headers",
]

log = logging.getLogger(__name__)

AuthMethodName = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
                         "client_secret_jwt", "federated_jwt"]
AUTH_METHODS: tuple[AuthMethodName, ...] = get_args(AuthMethodName)
JWS_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")

#: Form fields whose values are never recorded (only their names are).
SECRET_FORM_FIELDS = frozenset(
    {"client_secret", "client_assertion", "assertion", "password", "refresh_token", "code", "code_verifier"}
)
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


# --------------------------------------------------------------------------------------------------------------
# Request recording, shared with tests.support.gateways.


@dataclass(frozen=True)
class RecordedRequest:
    """One token request as the server saw it. Holds no secret: credential values are redacted."""

    time: float
    method: str
    path: str
    status: int
    granted: bool
    client_id: str | None
    """The client the request claimed to be (from Basic, the form, or the assertion's ``sub``)."""
    auth_method: str | None
    """How the client authenticated (or tried to): one of :data:`AUTH_METHODS`, or None."""
    form_names: tuple[str, ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    """Form fields with their values, except :data:`SECRET_FORM_FIELDS` (which appear as ``[redacted]``)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Request headers; ``Authorization`` keeps only its scheme (``Basic [redacted]``), ``Cookie`` only the
    cookies' names."""
    injected: bool = False
    """True when the answer came from failure injection rather than from the server's logic."""

    def form_value(self, name: str) -> str | None:
        return next((value for key, value in self.form if key == name), None)

    def form_values(self, name: str) -> list[str]:
        return [value for key, value in self.form if key == name]

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


def redact_form(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(field names, field values with secrets redacted)."""
    items = list(pairs)
    names = tuple(name for name, _ in items)
    values = tuple((name, "[redacted]" if name in SECRET_FORM_FIELDS else value) for name, value in items)
    return names, values


def redact_headers(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Credentials keep only their scheme (``Basic [redacted]``), cookies only their names (``sid=[redacted]``)."""
    redacted: list[tuple[str, str]] = []
    for name, value in pairs:
        if name.lower() == "cookie":
            names = [part.split("=", 1)[0].strip() for part in value.split(";") if part.strip()]
            value = "; ".join(f"{cookie}=[redacted]" for cookie in names)
        elif name.lower() in _SECRET_HEADERS:
            scheme = value.split(None, 1)[0] if value.strip() else ""
            value = f"{scheme} [redacted]".strip()
        redacted.append((name, value))
    return tuple(redacted)


class RequestLog:
    """A thread-safe list of :class:`RecordedRequest`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def count(self, client_id: str | None = None, *, granted: bool | None = None) -> int:
        return sum(
            1
            for item in self.snapshot()
            if (client_id is None or item.client_id == client_id) and (granted is None or item.granted == granted)
        )

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


ResourceOutcome = Literal["ok", "expired", "unknown", "revoked", "missing"]


@dataclass(frozen=True)
class ResourceCall:
    """One call of the protected resource (``GET /api/whoami``) as the server judged it. Holds no token."""

    time: float
    status: int
    """200, or 401 when refused."""
    outcome: ResourceOutcome
    """``ok``; else why it was refused: ``expired``, ``unknown`` (never issued here), ``revoked`` (its client
    was revoked) or ``missing`` (no bearer token)."""
    consumer: str | None
    """The ``consumer`` query parameter, e.g. which mount of a pod the token came from."""
    token_issued_at: float | None
    """When the presented token was issued (identifies it among the client's tokens); None when unknown."""
    token_expires_at: float | None


# --------------------------------------------------------------------------------------------------------------
# The model objects Authlib asks for (duck-typed ClientMixin / TokenMixin).


@dataclass(frozen=True)
class FederatedTrust:
    """What a server trusts for a ``federated_jwt`` client: tokens of ``issuer`` (signed by a key of ``jwks``)
    for ``subject`` with ``audience`` in ``aud``, living at most ``max_lifetime`` seconds (``exp - iat``)."""

    issuer: str
    jwks: dict[str, Any]
    subject: str
    audience: str
    max_lifetime: int = 3600


@dataclass
class _Client:
    client_id: str
    secret: str | None
    auth_method: AuthMethodName
    jwks: dict[str, Any] | None
    tls_subject: str | None
    scopes: tuple[str, ...]
    token_lifetime: int
    jwt_tokens: bool
    send_expires_in: bool
    revoked: bool = False
    federated: FederatedTrust | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(self.scopes)
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret is None:
            return False
        return hmac.compare_digest(self.secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


@dataclass
class _IssuedToken:
    access_token: str
    client: _Client
    scope: str
    issued_at: float
    expires_at: float

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - self.issued_at)

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.client.revoked

    def check_client(self, client: _Client) -> bool:
        return client.client_id == self.client.client_id


@dataclass
class _Failure:
    status: int
    retry_after: float | str | None
    body: str | None
    close_connection: bool = False


# --------------------------------------------------------------------------------------------------------------
# Authlib extensions.


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]  # Authlib ships no type hints
    """``client_credentials`` with every client auth method, strict scopes and WSO2's ``validity_period``."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client = cast(_Client, self.request.client)
        requested = (self.request.payload.scope or "").split()
        unknown = sorted(set(requested) - set(client.scopes))
        if unknown:
            raise InvalidScopeError(description=f"Scope not allowed for this client: {' '.join(unknown)}")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = cast(_Client, self.request.client)
        lifetime = client.token_lifetime
        validity_period = self.request.payload.data.get("validity_period")
        if validity_period is not None:
            try:
                lifetime = int(validity_period)
            except ValueError:
                lifetime = 0
            if lifetime <= 0:
                raise InvalidRequestError(description="validity_period must be a positive integer (seconds)")
        token = self.generate_token(scope=self.request.payload.scope, expires_in=lifetime, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _PrivateKeyJWTAuthentication(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client assertions verified against the client's registered JWKS."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: AuthServer) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self._server = server
        self._seen_jti: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, query_client: Callable[[str], _Client | None], request: Any) -> Any:
        # Authlib tries every registered assertion method in turn: leave other clients (and assertions whose
        # sub is no client, as federated ones) to the other methods.
        sub = _unverified_jwt_claims(request.form.get("client_assertion") or "").get("sub")
        client = query_client(sub) if isinstance(sub, str) else None
        if client is None or client.auth_method != self.CLIENT_AUTH_METHOD:
            return None
        return super().__call__(query_client, request)

    def get_audiences(self) -> list[str]:
        return [self._server.token_url, self._server.issuer]

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        key = f"{claims['sub']}:{jti}"
        with self._lock:
            if key in self._seen_jti:
                return False
            self._seen_jti.add(key)
            return True

    def resolve_client_public_key(self, client: _Client) -> KeySet | OctKey:
        if not client.jwks:
            raise InvalidClientError(description="The client has no registered JWKS.")
        return KeySet.import_key_set(cast(Any, client.jwks))

    def process_assertion_claims(self, assertion: str, resolve_key: KeySet | OctKey) -> dict[str, Any]:
        # Same as Authlib's, but allowing every asymmetric JWS algorithm, not only joserfc's "recommended".
        try:
            token = jose_jwt.decode(assertion, resolve_key, algorithms=list(JWS_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description=exc.description or type(exc).__name__) from exc
        self.verify_claims(token.claims)
        return dict(token.claims)


class _ClientSecretJWTAuthentication(_PrivateKeyJWTAuthentication):
    """OpenID Connect Core §9 ``client_secret_jwt``: the assertion is an HMAC keyed by the client's secret."""

    CLIENT_AUTH_METHOD = "client_secret_jwt"

    def resolve_client_public_key(self, client: _Client) -> KeySet | OctKey:
        if not client.secret:
            raise InvalidClientError(description="The client has no secret.")
        return OctKey.import_key(client.secret)

    def process_assertion_claims(self, assertion: str, resolve_key: KeySet | OctKey) -> dict[str, Any]:
        try:
            token = jose_jwt.decode(assertion, resolve_key, algorithms=list(HMAC_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description=exc.description or type(exc).__name__) from exc
        self.verify_claims(token.claims)
        return dict(token.claims)


class _FederatedJWTAuthentication:
    """A token of a trusted issuer as the client assertion (Entra ID / Keycloak workload identity federation).

    The client is named by the ``client_id`` form field; ``sub`` is the workload (for Kubernetes:
    ``system:serviceaccount:NS:SA``), not the client, so Authlib's RFC 7523 class (``iss`` = ``sub`` = client)
    does not apply. Verified claims of every accepted assertion are kept in :attr:`accepted` for tests.
    """

    CLIENT_AUTH_METHOD = "federated_jwt"

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        # client_id -> the signature part of every assertion received (for canary checks: a signature found
        # in a log or status would mean the minted token leaked).
        self.signatures: dict[str, list[str]] = {}

    def __call__(self, query_client: Callable[[str], _Client | None], request: Any) -> _Client | None:
        data = request.form
        client_id, assertion = data.get("client_id"), data.get("client_assertion")
        jwt_bearer = data.get("client_assertion_type") == JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
        if not client_id or not assertion or not jwt_bearer:
            return None
        self.signatures.setdefault(client_id, []).append(assertion.rsplit(".", 1)[-1])
        client = query_client(client_id)
        if client is None or client.auth_method != self.CLIENT_AUTH_METHOD or client.federated is None:
            return None
        trust = client.federated
        try:
            token = jose_jwt.decode(assertion, KeySet.import_key_set(cast(Any, trust.jwks)),
                                    algorithms=list(JWS_ALGORITHMS))
            jose_jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": trust.issuer},
                sub={"essential": True, "value": trust.subject},
                aud={"essential": True, "value": trust.audience},
                exp={"essential": True},
                iat={"essential": True},
            ).validate(token.claims)
        except JoseError as exc:
            why = exc.description or exc.error
            raise InvalidClientError(description=f"Federated assertion refused: {why}") from exc
        claims = dict(token.claims)
        if int(claims["exp"]) - int(claims["iat"]) > trust.max_lifetime:
            raise InvalidClientError(description=f"Federated assertion lives longer than {trust.max_lifetime}s.")
        self.accepted.append(claims)
        return client


class _BearerTokenValidator(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, tokens: Callable[[str], _IssuedToken | None]) -> None:
        super().__init__()
        self._tokens = tokens

    def authenticate_token(self, token_string: str) -> _IssuedToken | None:
        return self._tokens(token_string)


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, logging through ``logging`` at DEBUG instead of printing every request."""

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("%s - " + message, self.address_string(), *args)


def _subject_matches(subject: x509.Name, registered: str) -> bool:
    """RFC 8705 ``tls_client_auth_subject_dn``: compare DNs as RFC 4514 strings (attribute order matters,
    case of attribute types does not). A bare value without ``=`` is compared with the CN alone."""
    if "=" not in registered:
        cns = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return any(cn.value == registered for cn in cns)

    def normalise(dn: str) -> list[tuple[str, str]]:
        parts = [part.split("=", 1) for part in dn.split(",")]
        return [(kind.strip().upper(), value.strip()) for kind, value in parts]

    return normalise(subject.rfc4514_string()) == normalise(registered)


def _unverified_jwt_claims(assertion: str) -> dict[str, Any]:
    try:
        payload = assertion.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _claimed_client(request: flask.Request) -> tuple[str | None, str | None]:
    """Who the request says it is and how it tries to authenticate, before any verification."""
    form = request.form
    if form.get("client_assertion"):
        claims = _unverified_jwt_claims(form["client_assertion"])
        sub = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        if form.get("client_id") and sub != form.get("client_id"):
            return form.get("client_id"), "federated_jwt"
        try:
            header = json.loads(base64.urlsafe_b64decode(form["client_assertion"].split(".")[0] + "=="))
        except (ValueError, binascii.Error):
            header = {}
        hmac_signed = isinstance(header, dict) and header.get("alg") in HMAC_ALGORITHMS
        return sub, "client_secret_jwt" if hmac_signed else "private_key_jwt"
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            user = base64.b64decode(authorization[6:].strip()).decode("utf-8").split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            user = None
        return (unquote(user) if user is not None else None), "client_secret_basic"
    if form.get("client_secret"):
        return form.get("client_id"), "client_secret_post"
    if request.environ.get("SSL_CLIENT_CERT"):
        return form.get("client_id"), "tls_client_auth"
    return form.get("client_id"), None


# --------------------------------------------------------------------------------------------------------------
# The server.


class AuthServer:
    """An Authlib authorization server on ``127.0.0.1``; see the module docstring.

    ``tls``: serve HTTPS with a certificate from this CA (``ca_pem`` is then what clients must trust).
    ``require_client_cert``: ask clients for a certificate from ``tls`` (``CERT_OPTIONAL``), enabling
    ``tls_client_auth``. ``issuer_path``: e.g. ``/realms/apps``; the issuer is ``url + issuer_path``.
    """

    TOKEN_PATH = "/oauth2/token"
    WHOAMI_PATH = "/api/whoami"

    def __init__(
        self,
        *,
        tls: TestCA | None = None,
        require_client_cert: bool = False,
        issuer_path: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        rfc8414: bool = True,
        oidc: bool = True,
    ) -> None:
        if require_client_cert and tls is None:
            raise ValueError("require_client_cert needs tls")
        if issuer_path and (not issuer_path.startswith("/") or issuer_path.endswith("/")):
            raise ValueError("issuer_path must start with '/' and not end with one, e.g. '/realms/apps'")
        self._tls = tls
        self._require_client_cert = require_client_cert
        self.issuer_path = issuer_path
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, _IssuedToken] = {}
        self._failures: list[_Failure] = []
        self._down: _Failure | None = None
        self._discovery = {"rfc8414": rfc8414, "oidc": oidc}
        self._metadata_overrides: dict[str, Any] = {}
        self._log = RequestLog()
        self._resource_calls: list[ResourceCall] = []
        self._signing_key = RSAKey.generate_key(2048, parameters={"kid": "authserver-1", "use": "sig"})
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self.ca_pem: str | None = tls.cert_pem if tls is not None else None
        self._federated = _FederatedJWTAuthentication()
        self.app = self._create_app()

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        if self._tls is not None:
            cert = self._tls.issue_server_cert(name=f"authserver-{uuid.uuid4().hex[:8]}")
            self._ssl_context = server_ssl_context(cert, client_ca=self._tls if self._require_client_cert else None)
        server = make_server(
            self._host,
            self._port,
            self.app,
            threaded=True,
            request_handler=_QuietRequestHandler,
            ssl_context=self._ssl_context,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"authserver-{server.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
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
        return int(self._server.port)

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.url + self.issuer_path

    @property
    def token_url(self) -> str:
        return self.issuer + self.TOKEN_PATH

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    @property
    def rfc8414_url(self) -> str:
        return cast(str, get_well_known_url(self.issuer, external=True))

    @property
    def oidc_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    # ---- clients --------------------------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        auth_method: AuthMethodName = "client_secret_basic",
        jwks: dict[str, Any] | None = None,
        tls_subject: str | None = None,
        federated: FederatedTrust | None = None,
        scopes: Sequence[str] = ("api:read", "api:write"),
        token_lifetime: int = 3600,
        jwt_tokens: bool = False,
        send_expires_in: bool = True,
    ) -> None:
        """Register a client. ``tls_subject`` defaults to ``CN=<client_id>`` for ``tls_client_auth``;
        ``send_expires_in=False`` leaves ``expires_in`` out of responses (the lifetime still applies)."""
        if auth_method not in AUTH_METHODS:
            raise ValueError(f"unknown auth_method {auth_method!r}")
        if auth_method in ("client_secret_basic", "client_secret_post", "client_secret_jwt") and not secret:
            raise ValueError(f"{auth_method} needs a secret")
        if auth_method == "private_key_jwt" and not jwks:
            raise ValueError("private_key_jwt needs a jwks")
        if auth_method == "federated_jwt" and federated is None:
            raise ValueError("federated_jwt needs a FederatedTrust")
        if auth_method == "tls_client_auth" and tls_subject is None:
            tls_subject = f"CN={client_id}"
        with self._lock:
            self._clients[client_id] = _Client(
                client_id=client_id,
                secret=secret,
                auth_method=auth_method,
                jwks=jwks,
                tls_subject=tls_subject,
                scopes=tuple(scopes),
                token_lifetime=token_lifetime,
                jwt_tokens=jwt_tokens,
                send_expires_in=send_expires_in,
                federated=federated,
            )

    def set_secret(self, client_id: str, secret: str) -> None:
        with self._lock:
            self._clients[client_id].secret = secret

    def set_jwks(self, client_id: str, jwks: dict[str, Any]) -> None:
        with self._lock:
            self._clients[client_id].jwks = jwks

    def set_token_lifetime(self, client_id: str, seconds: int) -> None:
        with self._lock:
            self._clients[client_id].token_lifetime = seconds

    def revoke(self, client_id: str) -> None:
        """The client no longer exists for the server (``invalid_client``), and its tokens stop working."""
        with self._lock:
            self._clients[client_id].revoked = True

    def reinstate(self, client_id: str) -> None:
        """Undo :meth:`revoke` (a portal re-approving an app)."""
        with self._lock:
            self._clients[client_id].revoked = False

    def received_assertion_signatures(self, client_id: str) -> list[str]:
        """The signature part of every federated assertion ``client_id`` sent (test canaries, never logged)."""
        return list(self._federated.signatures.get(client_id, []))

    @property
    def accepted_federated_claims(self) -> list[dict[str, Any]]:
        """The verified claims of every federated assertion accepted so far (no signatures: not replayable)."""
        return list(self._federated.accepted)

    # ---- discovery ------------------------------------------------------------------------------------------

    def set_discovery(
        self, *, rfc8414: bool | None = None, oidc: bool | None = None, overrides: Mapping[str, Any] | None = None
    ) -> None:
        """Switch either discovery document on or off; ``overrides`` replaces keys in both (e.g. a wrong
        ``issuer``, to test RFC 8414 §3.3 validation)."""
        with self._lock:
            if rfc8414 is not None:
                self._discovery["rfc8414"] = rfc8414
            if oidc is not None:
                self._discovery["oidc"] = oidc
            if overrides is not None:
                self._metadata_overrides = dict(overrides)

    def metadata(self, *, oidc: bool = False) -> dict[str, Any]:
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": self.jwks_url,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": list(JWS_ALGORITHMS + HMAC_ALGORITHMS),
            "response_types_supported": ["token"],
        }
        if self._tls is not None and self._require_client_cert:
            document["tls_client_certificate_bound_access_tokens"] = False
        if oidc:
            document.update(
                {
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )
        with self._lock:
            document.update(self._metadata_overrides)
        return document

    # ---- tokens ---------------------------------------------------------------------------------------------

    def accepts(self, token: str) -> bool:
        """Whether ``GET /api/whoami`` with this bearer token answers 200 (over HTTP, like a resource
        server would)."""
        return self.whoami(token) is not None

    def whoami(self, token: str) -> dict[str, Any] | None:
        """The ``/api/whoami`` JSON for this token, or None when the server answers 401."""
        request = urllib.request.Request(  # noqa: S310 - our own loopback http(s) URL
            self.url + self.WHOAMI_PATH, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with loopback_opener(self.ca_pem).open(request, timeout=10) as response:
                return cast(dict[str, Any], json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 401:
                return None
            raise

    def resource_calls(self, consumer: str | None = None) -> list[ResourceCall]:
        """Every call of the protected resource so far (all, or those labelled ``consumer``), oldest first."""
        with self._lock:
            return [c for c in self._resource_calls if consumer is None or c.consumer == consumer]

    def issued_tokens(self, client_id: str | None = None) -> list[str]:
        with self._lock:
            return [
                t.access_token for t in self._tokens.values() if client_id is None or t.client.client_id == client_id
            ]

    @property
    def jwks(self) -> dict[str, Any]:
        """The public keys that sign ``jwt_tokens``."""
        return {"keys": [self._signing_key.as_dict(private=False)]}

    # ---- failure injection and counting ---------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 503, retry_after: float | str | None = None, *, body: str | None = None
    ) -> None:
        """Answer the next ``n`` token requests with ``status`` (and ``Retry-After`` when given)."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, body) for _ in range(n))

    def set_down(
        self, down: bool = True, *, mode: Literal["503", "close"] = "503", retry_after: float | str | None = None
    ) -> None:
        """Every token request answers 503 (``mode="503"``) or has its connection closed without an answer
        (``mode="close"``) until ``set_down(False)``."""
        with self._lock:
            self._down = _Failure(503, retry_after, None, close_connection=mode == "close") if down else None

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every token request so far, oldest first (a snapshot)."""
        return self._log.snapshot()

    def token_request_count(self, client_id: str | None = None, *, granted: bool | None = None) -> int:
        return self._log.count(client_id, granted=granted)

    def reset_counts(self) -> None:
        self._log.clear()

    # ---- the Flask app --------------------------------------------------------------------------------------

    def _create_app(self) -> flask.Flask:
        app = flask.Flask(__name__)
        authorization = AuthorizationServer(app, query_client=self._query_client, save_token=self._save_token)
        authorization.register_token_generator("default", self._generate_token)
        authorization.register_grant(_ClientCredentialsGrant)
        authorization.register_client_auth_method("private_key_jwt", _PrivateKeyJWTAuthentication(self))
        authorization.register_client_auth_method("tls_client_auth", self._authenticate_tls_client)
        authorization.register_client_auth_method("client_secret_jwt", _ClientSecretJWTAuthentication(self))
        authorization.register_client_auth_method("federated_jwt", self._federated)
        protector = ResourceProtector()
        protector.register_token_validator(_BearerTokenValidator(self._find_token))

        def token_endpoint() -> flask.Response:
            return self._token_endpoint(authorization)

        def whoami() -> flask.Response:
            presented = self._judge_presented_token(flask.request)
            status = 401
            try:
                with protector.acquire() as token:
                    issued = cast(_IssuedToken, token)
                    status = 200
                    return flask.jsonify(
                        client_id=issued.client.client_id, scope=issued.scope, expires_at=int(issued.expires_at)
                    )
            finally:
                outcome, found = presented
                with self._lock:
                    self._resource_calls.append(ResourceCall(
                        time=time.time(), status=status, outcome=outcome,
                        consumer=flask.request.args.get("consumer"),
                        token_issued_at=found.issued_at if found else None,
                        token_expires_at=found.expires_at if found else None))

        def rfc8414() -> flask.Response:
            if not self._discovery["rfc8414"]:
                flask.abort(404)
            return flask.jsonify(self.metadata())

        def oidc() -> flask.Response:
            if not self._discovery["oidc"]:
                flask.abort(404)
            return flask.jsonify(self.metadata(oidc=True))

        def jwks() -> flask.Response:
            return flask.jsonify(self.jwks)

        prefix = self.issuer_path
        app.add_url_rule(prefix + self.TOKEN_PATH, "token", token_endpoint, methods=["POST"])
        app.add_url_rule(self.WHOAMI_PATH, "whoami", whoami, methods=["GET"])
        app.add_url_rule("/.well-known/oauth-authorization-server" + prefix, "rfc8414", rfc8414)
        app.add_url_rule(prefix + "/.well-known/openid-configuration", "oidc", oidc)
        app.add_url_rule(prefix + "/jwks", "jwks", jwks)
        return app

    def _token_endpoint(self, authorization: AuthorizationServer) -> flask.Response:
        request = flask.request
        claimed_id, claimed_method = _claimed_client(request)
        with self._lock:
            failure = self._down or (self._failures.pop(0) if self._failures else None)
        if failure is not None:
            response = self._failure_response(failure, request)
        else:
            response = cast(flask.Response, authorization.create_token_response())
        granted_as = cast(tuple[str, str] | None, flask.g.get("granted_as"))
        names, form = redact_form(request.form.items(multi=True))
        self._log.append(
            RecordedRequest(
                time=time.time(),
                method=request.method,
                path=request.path,
                status=0 if failure is not None and failure.close_connection else response.status_code,
                granted=granted_as is not None and response.status_code == 200,
                client_id=granted_as[0] if granted_as else claimed_id,
                auth_method=granted_as[1] if granted_as else claimed_method,
                form_names=names,
                form=form,
                headers=redact_headers(request.headers.items()),
                injected=failure is not None,
            )
        )
        return response

    @staticmethod
    def _failure_response(failure: _Failure, request: flask.Request) -> flask.Response:
        if failure.close_connection:
            connection = request.environ.get("werkzeug.socket")
            if isinstance(connection, socket.socket):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        headers: dict[str, str] = {"Cache-Control": "no-store"}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if failure.body is not None:
            return flask.Response(failure.body, status=failure.status, headers=headers)
        body = json.dumps(
            {
                "error": "temporarily_unavailable",
                "error_description": "The authorization server is unavailable (injected).",
            }
        )
        return flask.Response(body, status=failure.status, headers=headers, content_type="application/json")

    def _query_client(self, client_id: str) -> _Client | None:
        with self._lock:
            client = self._clients.get(client_id)
        return None if client is None or client.revoked else client

    def _find_token(self, access_token: str) -> _IssuedToken | None:
        with self._lock:
            return self._tokens.get(access_token)

    def _judge_presented_token(self, request: flask.Request) -> tuple[ResourceOutcome, _IssuedToken | None]:
        """What the validator will find about the request's bearer token (for :class:`ResourceCall`)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "missing", None
        found = self._find_token(value.strip())
        if found is None:
            return "unknown", None
        if found.is_revoked():
            return "revoked", found
        return ("expired" if found.is_expired() else "ok"), found

    def _authenticate_tls_client(self, query_client: Callable[[str], _Client | None], request: Any) -> Any:
        client_id = request.payload.data.get("client_id")
        peer_pem = flask.request.environ.get("SSL_CLIENT_CERT")
        if not client_id or not peer_pem:
            return None
        client = query_client(client_id)
        if client is None or client.auth_method != "tls_client_auth" or client.tls_subject is None:
            return None
        certificate = x509.load_pem_x509_certificate(peer_pem.encode("ascii"))
        return client if _subject_matches(certificate.subject, client.tls_subject) else None

    def _generate_token(
        self,
        grant_type: str,
        client: _Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        lifetime = expires_in or client.token_lifetime
        granted_scope = client.get_allowed_scope(scope)
        if client.jwt_tokens:
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "sub": client.client_id,
                "client_id": client.client_id,
                "aud": self.url + "/api",
                "iat": now,
                "nbf": now,
                "exp": now + lifetime,
                "jti": uuid.uuid4().hex,
                "scope": granted_scope,
            }
            header = {"alg": "RS256", "typ": "at+jwt", "kid": self._signing_key.kid}
            access_token = jose_jwt.encode(header, claims, self._signing_key)
        else:
            access_token = secrets.token_urlsafe(32)
        token: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
        if client.send_expires_in:
            token["expires_in"] = lifetime
        if granted_scope:
            token["scope"] = granted_scope
        return token

    def _save_token(self, token: dict[str, Any], request: Any) -> None:
        client = cast(_Client, request.client)
        now = time.time()
        lifetime = token.get("expires_in") or client.token_lifetime
        if "expires_in" not in token and request.payload.data.get("validity_period"):
            lifetime = int(request.payload.data["validity_period"])
        with self._lock:
            self._tokens[token["access_token"]] = _IssuedToken(
                access_token=token["access_token"],
                client=client,
                scope=token.get("scope", ""),
                issued_at=now,
                expires_at=now + lifetime,
            )
        flask.g.granted_as = (client.client_id, request.auth_method)


def loopback_opener(ca_pem: str | None) -> urllib.request.OpenerDirector:
    """urllib without proxies (loopback only), trusting ``ca_pem`` for https."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ca_pem is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cadata=ca_pem)))
    return urllib.request.build_opener(*handlers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.authserver",
        description="Serve a test OAuth 2.0 authorization server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument(
        "--client", action="append", default=[], metavar="ID:SECRET", help="register a client (repeatable)"
    )
    parser.add_argument(
        "--auth-method", choices=["client_secret_basic", "client_secret_post"], default="client_secret_basic"
    )
    parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds")
    parser.add_argument("--issuer-path", default="", help="e.g. /realms/apps")
    parser.add_argument("--jwt-tokens", action="store_true", help="issue signed JWT access tokens")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    server = AuthServer(port=args.port, issuer_path=args.issuer_path)
    for spec in args.client or ["demo-client:demo-secret"]:
        client_id, sep, secret = spec.partition(":")
        if not sep or not client_id or not secret:
            parser.error(f"--client wants ID:SECRET, got {spec.split(':', 1)[0]!r}:...")
        server.add_client(
            client_id,
            secret=secret,
            auth_method=args.auth_method,
            token_lifetime=args.lifetime,
            jwt_tokens=args.jwt_tokens,
        )

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(f"token URL: {server.token_url}", flush=True)
        print(f"issuer:    {server.issuer}", flush=True)
        print(f"whoami:    {server.url}{server.WHOAMI_PATH}", flush=True)
        while not stop.wait(0.2):  # a short timeout keeps the signal handlers responsive
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
