"""Where the operator may connect: no token, issuer or discovered endpoint inside a denied network.

A resource names a URL and the operator sends a Secret's values there, so without a check anyone who may create
an ``OAuthClientCredential`` can make the operator talk to the node's loopback, the cloud metadata service
(169.254.169.254, ``fd00:ec2::254``) or the Kubernetes API server, with the operator's own identity and network
position (server-side request forgery). The setting ``OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS`` lists the
networks refused; the default is :data:`DEFAULT_DENIED_NETWORKS` plus the API server's own addresses.

The check is made **on the address actually connected to**. :class:`GuardedBackend` is an httpcore network
backend: for each new connection it resolves the host once, refuses the connection if *any* resolved address is
denied (a name that resolves to a public and a metadata address is refused, whatever order the resolver
returns), and then connects to the checked address itself, so a DNS answer that changes between check and
connect (DNS rebinding) cannot slip through. TLS is started by httpcore afterwards with the URL's host name, so
SNI, the ``Host`` header and certificate verification are those of the original name. Nothing is sent on a
refused connection: the refusal happens before the socket exists.

IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) and NAT64 addresses (``64:ff9b::a9fe:a9fe``) are checked as
the IPv4 address they reach as well. The pure part (:func:`parse_networks`, :func:`denied_reason`,
:func:`check_addresses`) is unit-tested without any network.

With an HTTP(S) proxy configured (``HTTPS_PROXY`` & co.) the proxy resolves and connects, not us: the client
then checks the target's locally resolved addresses before the request (best effort, not rebinding-proof); the
proxy's own egress policy is the real boundary there (see SECURITY.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import select
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import httpcore
import httpx

from .networks import (
    DEFAULT_DENIED_NETWORKS,
    DENIED_NETWORKS_SETTING,
    METADATA_ADDRESSES,
    DeniedNetworks,
    IPAddress,
    check_addresses,
    denied_reason,
    parse_networks,
)

__all__ = [
    "DEFAULT_DENIED_NETWORKS",
    "DENIED_NETWORKS_SETTING",
    "METADATA_ADDRESSES",
    "DeniedNetworks",
    "GuardedBackend",
    "GuardedTransport",
    "Resolver",
    "api_server_addresses",
    "check_addresses",
    "denied_reason",
    "parse_networks",
    "proxy_configured",
    "resolve_host",
]

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""``(host, port) -> addresses``: every address the host resolves to (a literal IP resolves to itself)."""


async def resolve_host(host: str, port: int) -> Sequence[IPAddress]:
    """Every address of ``host`` from the system resolver, in its order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return list(addresses)


# -------------------------------------------------------------------------------------------- the network


class _Wrapping(httpcore.AsyncNetworkBackend):
    """A backend that connects through ``_inner``: what both of ours share (no Unix sockets, the inner sleep)."""

    _inner: httpcore.AsyncNetworkBackend

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - no Unix sockets for token endpoints
        raise httpcore.ConnectError("Unix domain sockets are not used for token endpoints")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedBackend(_Wrapping):
    """An httpcore network backend that resolves once, checks every address, and connects to a checked one."""

    def __init__(
        self, denied: DeniedNetworks, *, resolve: Resolver = resolve_host,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._denied = denied
        self._resolve = resolve
        self._inner = inner or PooledBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:  # socket.gaierror: classified as "cannot resolve host" further up
            raise httpcore.ConnectError(str(exc)) from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        check_addresses(host, addresses, self._denied)
        failure: Exception | None = None
        for address in addresses:  # connect to what was checked, never to the name again
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class PooledBackend(_Wrapping):
    """httpcore's anyio backend, its connections wrapped in :class:`PooledStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None, socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return PooledStream(await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                          socket_options=socket_options))


class PooledStream(httpcore.AsyncNetworkStream):
    """A connection as httpcore's pool sees it: anyio's stream, with a cheap answer to "is it readable?".

    Before every request and after every response, httpcore's pool asks each idle connection whether the server
    closed it (``get_extra_info("is_readable")``). anyio answers that by building a dict of every attribute of
    the stream, its TLS layer and its socket, calling ``getpeername()`` on the way: measured at 1,000 resources
    against one endpoint with 32 pooled connections, that was most of the token requests' CPU (and a third of
    the operator's). The socket is looked up once here; the readability check is the same ``poll`` httpcore
    makes."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:  # noqa: ASYNC109
        return PooledStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            return self._socket is not None and _readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket) -> bool:
    """Data or EOF waiting (for an idle connection: the server closed it). A closed socket counts as readable,
    as in httpcore (the connection is then discarded)."""
    if sock.fileno() == -1:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with its connection pool built on our backend: a :class:`GuardedBackend`, or (when
    no network is denied) a bare :class:`PooledBackend`.

    httpx 0.28 has no ``network_backend`` argument yet (encode/httpx discussion 3180, PR 3749), so the pool it
    builds is replaced by an equal one given the backend; everything else (request and response mapping,
    exception mapping) stays httpx's. The integration test that a loopback endpoint is refused by default fails
    if a future httpx stops using ``_pool``.
    """

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits, backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(verify=verify, limits=limits)
        if type(getattr(self, "_pool", None)) is not httpcore.AsyncConnectionPool:
            raise RuntimeError("this httpx builds its transport differently; the endpoint guard needs an update")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


# --------------------------------------------------------------------------------- the API server's address


def api_server_addresses(
    server_url: str | None,
    *,
    service_host: str | None = None,
    resolve: Callable[[str], Sequence[IPAddress]] | None = None,
) -> tuple[IPAddress, ...]:
    """The addresses of the cluster's API server: its kubeconfig/in-cluster URL's host (resolved) and
    ``KUBERNETES_SERVICE_HOST`` (the ``kubernetes.default`` service IP inside a pod). A name that does not
    resolve contributes nothing (the operator could not reach that API server either)."""
    resolve = resolve or _resolve_sync
    hosts = [h for h in (urlsplit(server_url).hostname if server_url else None, service_host) if h]
    found: dict[IPAddress, None] = {}
    for host in hosts:
        try:
            found[ipaddress.ip_address(host)] = None
            continue
        except ValueError:
            pass
        try:
            for address in resolve(host):
                found[address] = None
        except OSError:
            continue
    return tuple(found)


def _resolve_sync(host: str) -> Sequence[IPAddress]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def proxy_configured() -> bool:
    """Whether an HTTP(S) proxy from the environment may carry requests (httpx honours these variables)."""
    names = ("https_proxy", "http_proxy", "all_proxy")
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in names)
