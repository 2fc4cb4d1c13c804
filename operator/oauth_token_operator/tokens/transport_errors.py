"""Transport failures (no HTTP answer at all) as :class:`~oauth_token_operator.errors.EndpointUnavailable`.

Apart from :mod:`.classify` because it inspects httpx's, aiohttp's (the pools under httpx), ssl's and socket's
exceptions; the messages follow the
same rules (one line, server text cleaned and redacted, never userinfo from the URL).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
import httpx

from ..errors import EndpointUnavailable
from .classify import clean_server_text

__all__ = ["classify_transport_error"]


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
    # httpx-aiohttp maps aiohttp's errors to httpx's coarsely (a reset or a closed connection becomes a
    # ConnectTimeout), so when aiohttp's is in the chain, it says what happened.
    aio = next((e for e in chain if isinstance(e, aiohttp.ClientError)), None)
    if isinstance(aio, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return _broken_protocol(host, aio)
    timed_out = (isinstance(aio, aiohttp.ServerTimeoutError) if aio is not None
                 else isinstance(exc, httpx.TimeoutException | TimeoutError))
    if timed_out:
        phase: dict[type[BaseException], str] = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the answer",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a connection",
        }
        doing = phase.get(type(exc), "waiting")
        if isinstance(aio, aiohttp.ConnectionTimeoutError):
            doing = "connecting"
        elif isinstance(aio, aiohttp.SocketTimeoutError):
            doing = "waiting for the answer"
        return EndpointUnavailable(f"timed out {doing} ({host}); the server is slow or unreachable")
    if any(isinstance(e, socket.gaierror) for e in chain) or re.search(
        r"name or service not known|nodename nor servname|name resolution|getaddrinfo", detail(), re.I
    ):
        return EndpointUnavailable(f"cannot resolve host {host}: {detail()}; check the URL's host name and cluster DNS")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in detail().lower():
        return EndpointUnavailable(f"connection to {host} refused; is the server running and is the port right?")
    if isinstance(exc, httpx.ProtocolError):
        return _broken_protocol(host, exc)
    if isinstance(exc, httpx.NetworkError | OSError):
        return EndpointUnavailable(f"network error talking to {host}: {detail()}")
    return EndpointUnavailable(f"request to {host} failed ({type(exc).__name__})")


def _broken_protocol(host: str, exc: BaseException) -> EndpointUnavailable:
    # Both parsers (h11, aiohttp's) quote what the peer sent, e.g. an SSH or Redis banner: never shown.
    return EndpointUnavailable(
        f"the connection to {host} broke the HTTP protocol ({type(exc).__name__}); is it an HTTP(S) server, "
        "and is the port right?"
    )
