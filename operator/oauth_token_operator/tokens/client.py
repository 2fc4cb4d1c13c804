"""The httpx edge: send what :mod:`.request` builds, hand what comes back to :mod:`.response` / :mod:`.classify`.

Everything that decides lives in the pure modules; this one owns the sockets and the few bits of state that
make a fleet of resources cheap to serve:

* One ``httpx.AsyncClient`` (connection pool) per distinct TLS configuration, keyed by a digest of the TLS
  material, so thousands of resources sharing an endpoint share warm connections. Pools idle for a while are
  closed, so rotated CA bundles and client certificates do not pile up.
* Discovered token endpoints, cached for an hour per (issuer, TLS material), and dropped as soon as a request
  to the endpoint finds it unavailable so that a moved endpoint is rediscovered.
* The HTTP Basic encoding that worked per (token URL, client ID); see :mod:`.request` for why there are two.

Rules kept here: redirects are never followed (credentials go to the configured host or nowhere); no cookie is
kept or sent (a pool serves every tenant whose resources share its TLS material, and a cookie one tenant's
answer set must not travel with another's request); plain
``http://`` and ``tls.insecureSkipVerify`` are refused unless the operator allows them; no connection is made
to an address in the denied networks (:mod:`.egress`: checked on the address actually connected to); a
response is streamed and refused beyond ``max_response_bytes``; each request has an overall deadline of
``timeout`` seconds (waiting for a pool slot does not count); and only
:class:`~oauth_token_operator.errors.OperatorError` subclasses escape. Nothing is logged: the caller reports
what happened, from one place.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.cookiejar
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit
from urllib.request import Request

import aiohttp
import httpx

from .. import USER_AGENT
from ..errors import (
    EndpointUnavailable,
    InvalidSpec,
    InvalidTokenResponse,
    OperatorError,
    TokenError,
)
from .classify import (
    classify_error_response,
    config_secrets,
    is_invalid_client_answer,
    parse_retry_after,
    without_userinfo,
)
from .clientauth import strategy_for
from .discovery import ServerMetadata, metadata_urls, parse_metadata
from .egress import (
    DeniedNetworks,
    GuardedTransport,
    Resolver,
    check_addresses,
    proxy_configured,
    resolve_host,
)
from .model import ClientConfig, Token
from .request import BasicEncoding, basic_encoding_matters, build_token_request
from .response import parse_token_response
from .tls import build_ssl_context, tls_material_key
from .transport_errors import classify_transport_error

__all__ = ["DEFAULT_USER_AGENT", "TokenClient", "TokenResult"]

DEFAULT_USER_AGENT = USER_AGENT
DISCOVERY_TTL_SECONDS = 3600.0
POOL_IDLE_SECONDS = 900.0
#: Requests in flight per pool (the rest wait for a slot, outside their deadline), and the connections kept
#: open. Measured at 1,000-10,000 resources against one endpoint: with 100 slots but 20 kept-alive connections,
#: connections beyond 20 were re-opened (TLS handshakes), and on a busy event loop requests exceeded their 10 s
#: deadline and opened the endpoint's circuit. 32, all kept alive, still fills a fast endpoint and keeps 100+
#: requests per second for one with 200 ms latency.
MAX_CONCURRENT_REQUESTS_PER_POOL = 32

INSECURE_TLS_WARNING = "TLS certificate verification is disabled (tls.insecureSkipVerify)"
INSECURE_HTTP_WARNING = "plain http:// allowed by --allow-insecure-http"
INSECURE_SKIP_VERIFY_SETTING = "OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_SKIP_VERIFY"


@dataclass(frozen=True)
class TokenResult:
    """A token, where it came from, and what the user should be told about how it was obtained."""

    token: Token
    endpoint: str
    """The token URL actually used (``tokenURL``, or the discovered endpoint), without any userinfo."""
    warnings: tuple[str, ...] = ()
    """Things to flag in the Ready message and as Warning Events (insecure TLS, plain HTTP, ...)."""


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Refuses to store any cookie and to send any: token endpoints authenticate clients by their credentials,
    never by a session, and the pool's cookie jar would be shared across tenants (Entra ID, for one, answers
    token requests with Set-Cookie)."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Request) -> bool:
        return False


@dataclass
class _Pool:
    client: httpx.AsyncClient
    gate: asyncio.Semaphore
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    too_large: bool


@dataclass(frozen=True)
class _Discovered:
    metadata: ServerMetadata
    fetched_at: float


class TokenClient:
    """Requests client_credentials tokens. One instance per operator process; safe for concurrent use."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = 262_144,
        allow_insecure_http: bool = False,
        default_lifetime: float = 3600.0,
        user_agent: str = DEFAULT_USER_AGENT,
        transport_factory: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport] | None = None,
        denied_networks: DeniedNetworks | None = None,
        resolve: Resolver = resolve_host,
        allow_insecure_skip_verify: bool = False,
    ) -> None:
        """``denied_networks``: where no connection may go (None: :meth:`DeniedNetworks.default`, an empty
        ``DeniedNetworks()`` denies nothing). ``resolve`` is the resolver the guard uses (tests inject one).
        ``transport_factory`` replaces the network, and with it the guard, for tests."""
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._allow_insecure_http = allow_insecure_http
        self._default_lifetime = default_lifetime
        self._user_agent = user_agent
        self._transport_factory = transport_factory
        self._denied = DeniedNetworks.default() if denied_networks is None else denied_networks
        self._resolve = resolve
        self._allow_insecure_skip_verify = allow_insecure_skip_verify
        self._pools: dict[str, _Pool] = {}
        self._discovered: dict[tuple[str, str], _Discovered] = {}
        self._discovery_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._basic_encodings: dict[tuple[str, str], BasicEncoding] = {}
        # (token URL, client ID) -> digest of a secret refused in both encodings. Kept in memory only, so that
        # a wrong or revoked secret costs one request per attempt, not two (gateways that lock a client after
        # N failures count each one); a new secret gets both encodings again.
        self._refused_both: dict[tuple[str, str], bytes] = {}

    # ------------------------------------------------------------------------------------------ public

    async def fetch_token(self, config: ClientConfig, *, default_lifetime: float | None = None) -> TokenResult:
        """Request one token. Raises only :class:`~oauth_token_operator.errors.OperatorError` subclasses."""
        try:
            return await self._fetch_token(config, default_lifetime or self._default_lifetime)
        except OperatorError:
            raise
        except Exception as exc:  # a bug or an httpx corner we did not map: still a reportable failure
            raise EndpointUnavailable(f"token request failed unexpectedly ({type(exc).__name__})") from exc

    async def token_endpoint(self, config: ClientConfig) -> str:
        """The token URL: ``tokenURL`` as given, or the one discovery finds from ``issuerURL`` (cached), without
        any userinfo (it is shown in status)."""
        try:
            pool, _ = self._prepare(config)
            endpoint, _ = await self._endpoint(config, pool)
            if config.issuer_url:
                self._check_url(endpoint, "the discovered token endpoint")
            return without_userinfo(endpoint)
        except OperatorError:
            raise
        except Exception as exc:
            raise EndpointUnavailable(f"discovery failed unexpectedly ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        """Close every connection pool."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.client.aclose()

    # ----------------------------------------------------------------------------------------- fetching

    async def _fetch_token(self, config: ClientConfig, default_lifetime: float) -> TokenResult:
        pool, warnings = self._prepare(config)
        endpoint, discovery_warnings = await self._endpoint(config, pool)
        warnings += discovery_warnings
        if config.issuer_url:
            warnings += self._check_url(endpoint, "the discovered token endpoint")
        remembered = (endpoint, config.client_id)
        encoding = self._basic_encodings.get(remembered, "form")
        outcome = await self._attempt(pool, config, endpoint, encoding, default_lifetime)
        secret_digest = _secret_digest(config)
        if isinstance(outcome, Token):
            self._refused_both.pop(remembered, None)
        elif outcome.other_encoding_may_help and self._refused_both.get(remembered) == secret_digest:
            outcome = _Failure(
                _with_note(outcome.error, "the other HTTP Basic encoding was refused for this secret before"),
                outcome.status)
        elif outcome.other_encoding_may_help:
            other: BasicEncoding = "raw" if encoding == "form" else "form"
            second = await self._attempt(pool, config, endpoint, other, default_lifetime)
            if isinstance(second, Token):
                self._basic_encodings[remembered] = other
                outcome = second
            elif second.other_encoding_may_help:  # refused both ways: report the first, say we tried
                self._refused_both[remembered] = secret_digest
                how = "unencoded" if other == "raw" else "form-encoded"
                outcome = _Failure(
                    _with_note(outcome.error, f"also tried HTTP Basic with the credentials {how}"), outcome.status
                )
        if isinstance(outcome, _Failure):
            if config.issuer_url and (isinstance(outcome.error, EndpointUnavailable) or outcome.status == 404):
                # the endpoint may have moved: ask the issuer again next time
                self._discovered.pop((config.issuer_url, tls_material_key(config.tls)), None)
            raise outcome.error
        return TokenResult(token=outcome, endpoint=without_userinfo(endpoint), warnings=_unique(warnings))

    async def _attempt(
        self, pool: _Pool, config: ClientConfig, endpoint: str, encoding: BasicEncoding, default_lifetime: float
    ) -> Token | _Failure:
        """One token request: the token, or why not (input errors such as a bad key are raised)."""
        prepared = build_token_request(
            config, endpoint, now=datetime.now(UTC), jti=uuid.uuid4().hex, basic_encoding=encoding
        )
        secrets = config_secrets(config, *prepared.secret_values())
        try:
            answer = await self._send(pool, "POST", prepared.url, prepared.headers, prepared.body(), secrets)
        except EndpointUnavailable as exc:
            return _Failure(exc, None)
        received = datetime.now(UTC)
        try:
            if not 200 <= answer.status < 300:
                raise classify_error_response(
                    answer.status,
                    answer.headers,
                    answer.body,
                    now=received,
                    secrets=secrets,
                    auth_method=config.auth_method,
                    credentials_source=config.credentials_source,
                )
            if answer.too_large:
                raise InvalidTokenResponse(
                    f"token endpoint answered {answer.status} with more than "
                    f"{self._max_response_bytes} bytes; refused unread"
                )
            return parse_token_response(
                answer.status,
                answer.headers,
                answer.body,
                now=received,
                default_lifetime=default_lifetime,
                secrets=secrets,
                auth_method=config.auth_method,
                credentials_source=config.credentials_source,
            )
        except TokenError as exc:
            return _Failure(exc, answer.status, _may_retry_other_encoding(config, answer))

    # ---------------------------------------------------------------------------------------- discovery

    async def _endpoint(self, config: ClientConfig, pool: _Pool) -> tuple[str, tuple[str, ...]]:
        if config.token_url:
            return config.token_url, ()
        assert config.issuer_url is not None  # _prepare checked that exactly one is set
        key = (config.issuer_url, tls_material_key(config.tls))
        lock = self._discovery_locks.setdefault(key, asyncio.Lock())
        async with lock:  # a thousand resources on one issuer discover it once
            cached = self._discovered.get(key)
            if cached is None or time.monotonic() - cached.fetched_at > DISCOVERY_TTL_SECONDS:
                metadata = await self._discover(config.issuer_url, pool)
                cached = self._discovered[key] = _Discovered(metadata, time.monotonic())
        return cached.metadata.token_endpoint, cached.metadata.warnings

    async def _discover(self, issuer: str, pool: _Pool) -> ServerMetadata:
        failures: list[str] = []
        for url in metadata_urls(issuer):
            answer = await self._send(pool, "GET", url, {"Accept": "application/json"}, None, ())
            if answer.status == 429 or answer.status >= 500:
                retry_after = parse_retry_after(answer.headers.get("retry-after"), now=datetime.now(UTC))
                raise EndpointUnavailable(
                    f"discovery document {url} answered {answer.status}; the issuer is unavailable or overloaded",
                    retry_after=retry_after,
                )
            if answer.status != 200 or answer.too_large:
                shown = without_userinfo(url)
                failures.append(f"{shown} answered {answer.status}" + (" (too large)" if answer.too_large else ""))
                continue
            try:
                return parse_metadata(answer.body, issuer=issuer, metadata_url=url)
            except InvalidSpec as exc:
                failures.append(exc.message)
        raise InvalidSpec(
            f"no usable discovery document for issuerURL {without_userinfo(issuer)} ({'; '.join(failures)}); "
            "check issuerURL, or set tokenURL instead"
        )

    # ---------------------------------------------------------------------------------------- transport

    def _prepare(self, config: ClientConfig) -> tuple[_Pool, list[str]]:
        """Validate the URLs and get the pool for ``config``'s TLS material; the warnings so far."""
        if bool(config.token_url) == bool(config.issuer_url):
            raise InvalidSpec("set exactly one of tokenURL and issuerURL")
        warnings: list[str] = []
        if config.token_url:
            warnings += self._check_url(config.token_url, "tokenURL")
        else:
            assert config.issuer_url is not None
            warnings += self._check_url(config.issuer_url, "issuerURL")
        if config.tls.insecure_skip_verify:
            if not self._allow_insecure_skip_verify:
                raise InvalidSpec(
                    "tls.insecureSkipVerify is set, but this operator does not allow it: without certificate "
                    "verification the credentials could go to any server on the path; add the server's CA with "
                    f"tls.caBundleRef instead (the cluster admin can allow it with {INSECURE_SKIP_VERIFY_SETTING}=true)"
                )
            warnings.append(INSECURE_TLS_WARNING)
        return self._pool(config), warnings

    def _check_url(self, url: str, what: str) -> list[str]:
        scheme = urlsplit(url).scheme.lower()
        url = without_userinfo(url)  # for the messages below
        if scheme == "https":
            return []
        if scheme == "http":
            if self._allow_insecure_http:
                return [INSECURE_HTTP_WARNING]
            raise InvalidSpec(
                f"{what} {url} uses plain http://, which would send the credentials and the "
                "token unencrypted; use https:// (--allow-insecure-http exists for local "
                "development only)"
            )
        raise InvalidSpec(f"{what} {url} is not an http(s) URL")

    def _pool(self, config: ClientConfig) -> _Pool:
        self._close_idle_pools()
        key = tls_material_key(config.tls)
        pool = self._pools.get(key)
        if pool is None:
            context = build_ssl_context(config.tls)
            limits = httpx.Limits(
                max_connections=MAX_CONCURRENT_REQUESTS_PER_POOL,
                max_keepalive_connections=MAX_CONCURRENT_REQUESTS_PER_POOL, keepalive_expiry=30.0,
            )
            transport: httpx.AsyncBaseTransport | None = None
            if self._transport_factory:
                transport = self._transport_factory(context)
            else:
                transport = GuardedTransport(verify=context, limits=limits, denied=self._denied, resolve=self._resolve)
            client = httpx.AsyncClient(
                verify=context,  # also used by proxy transports created from HTTPS_PROXY & co.
                transport=transport,
                timeout=httpx.Timeout(self._timeout),
                limits=limits,
                follow_redirects=False,
                cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                headers={"User-Agent": self._user_agent},
            )
            pool = self._pools[key] = _Pool(client, asyncio.Semaphore(MAX_CONCURRENT_REQUESTS_PER_POOL))
        pool.last_used = time.monotonic()
        return pool

    def _close_idle_pools(self) -> None:
        now = time.monotonic()
        for key, pool in list(self._pools.items()):
            if pool.in_flight == 0 and now - pool.last_used > POOL_IDLE_SECONDS:
                del self._pools[key]
                _close_later(pool.client)

    async def _send(
        self,
        pool: _Pool,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        secrets: tuple[str, ...],
    ) -> _Answer:
        pool.in_flight += 1
        try:
            async with pool.gate:  # waiting for a slot is not part of the request's deadline
                async with asyncio.timeout(self._timeout):
                    if self._denied and proxy_configured():
                        await self._check_proxied(url)
                    async with pool.client.stream(method, url, headers=headers, content=content) as response:
                        body, too_large = await self._read_limited(response)
                        return _Answer(response.status_code, response.headers, body, too_large)
        except TimeoutError:
            raise EndpointUnavailable(
                f"no complete answer from {urlsplit(url).hostname} within "
                f"{self._timeout:g}s; the server is slow or unreachable"
            ) from None
        except httpx.InvalidURL:
            raise InvalidSpec(f"{without_userinfo(url)} is not a valid URL") from None
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as exc:  # aiohttp's: those httpx-aiohttp passes on
            raise classify_transport_error(exc, url=url, secrets=secrets) from None
        finally:
            pool.in_flight -= 1
            pool.last_used = time.monotonic()

    async def _check_proxied(self, url: str) -> None:
        """Behind a proxy the proxy connects, not the guard: check the target's own addresses first."""
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = await self._resolve(parts.hostname, port)
            except OSError:
                return  # the proxy may know names we do not; it resolves them itself
            check_addresses(parts.hostname, addresses, self._denied)

    async def _read_limited(self, response: httpx.Response) -> tuple[bytes, bool]:
        limit = self._max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return b"", True
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                return b"", True
            chunks.append(chunk)
        return b"".join(chunks), False


# ------------------------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class _Failure:
    error: TokenError
    status: int | None  # None: no HTTP answer at all
    other_encoding_may_help: bool = False


def _secret_digest(config: ClientConfig) -> bytes:
    """Identifies the client secret in memory without keeping it (never stored, logged or sent)."""
    secret = config.client_secret.get_secret_value() if config.client_secret else ""
    return hashlib.sha256(secret.encode()).digest()


def _may_retry_other_encoding(config: ClientConfig, answer: _Answer) -> bool:
    """Retry with the other Basic encoding only when it can matter and cannot send anything new anywhere."""
    if not strategy_for(config.auth_method).retries_basic_encoding or config.client_secret is None:
        return False
    if not is_invalid_client_answer(answer.status, answer.headers, answer.body):
        return False
    return basic_encoding_matters(config.client_id, config.client_secret.get_secret_value())


def _with_note(error: TokenError, note: str) -> TokenError:
    return type(error)(f"{error.message} ({note})", retry_after=error.retry_after)


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


_closing: set[asyncio.Task[None]] = set()


def _close_later(client: httpx.AsyncClient) -> None:
    task = asyncio.get_running_loop().create_task(client.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)
