"""Where the operator may connect: no token, issuer or discovered endpoint inside a denied network.

A resource names a URL and the operator sends a Secret's values there, so without a check anyone who may create
an ``OAuthClientCredential`` can make the operator talk to the node's loopback, the cloud metadata service
(169.254.169.254, ``fd00:ec2::254``) or the Kubernetes API server, with the operator's own identity and network
position (server-side request forgery). The setting ``OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS`` lists the
networks refused; the default is :data:`DEFAULT_DENIED_NETWORKS` plus the API server's own addresses.

The check is made **on the address actually connected to**. The token pools are aiohttp connection pools under
httpx (:class:`GuardedTransport`, the ``httpx-aiohttp`` transport): :class:`GuardedResolver` is their resolver.
For each new connection it resolves the host once, refuses it if *any* resolved address is denied (a name that
resolves to a public and a metadata address is refused, whatever order the resolver returns), and hands aiohttp
exactly the checked addresses to connect to, so a DNS answer that changes between check and connect (DNS
rebinding) cannot slip through. aiohttp starts TLS with the URL's host name, so SNI, the ``Host`` header and
certificate verification are those of the original name. A literal IP in the URL never reaches a resolver in
aiohttp; the transport checks it before the request. Nothing is sent on a refused connection: the refusal
happens before the socket exists.

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
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from ..errors import InvalidSpec
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
    "GuardedResolver",
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


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for the token pools: resolve once, check every address, connect to a checked one.

    aiohttp connects to the addresses a resolver returns, in order, and never resolves the name again for that
    connection; its DNS cache keeps only answers that passed here."""

    def __init__(self, denied: DeniedNetworks, *, resolve: Resolver = resolve_host) -> None:
        self._denied = denied
        self._resolve = resolve

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        addresses = await self._resolve(host, port)  # OSError (gaierror): aiohttp's "cannot resolve"
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        check_addresses(host, addresses, self._denied)
        return [ResolveResult(hostname=host, host=str(address), port=port,
                              family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for address in addresses]

    async def close(self) -> None:
        pass


class GuardedTransport(AiohttpTransport):
    """httpx's requests over one aiohttp connection pool, every connection through :class:`GuardedResolver`.

    Why aiohttp under httpx: measured on one endpoint (bench/README.md), httpcore's pool cost 0.8 ms of CPU per
    request with one connection and ~3 ms with 32 (its per-request checks visit every pooled connection), aiohttp's
    ~0.3 ms at any size; httpx stays the client everything else is written against."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits, denied: DeniedNetworks,
                 resolve: Resolver = resolve_host) -> None:
        self._denied = denied

        def session() -> aiohttp.ClientSession:  # made on first use, on the loop that uses it
            connector = aiohttp.TCPConnector(
                ssl=verify, limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry or 0,
                resolver=GuardedResolver(denied, resolve=resolve))
            # No cookie jar: the pool serves every tenant that shares its TLS material (see tokens/client.py).
            return aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

        super().__init__(verify=verify, limits=limits, trust_env=False, client=session)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            legacy = _legacy_ipv4(host)
            if legacy is not None:
                # "127.1", "2130706433", "0x7f.1": the system resolver reads them as IPv4 (so did httpx's own pool);
                # aiohttp refuses them. Denied or not, say what the user wrote.
                check_addresses(host, [legacy], self._denied)
                raise InvalidSpec(f"endpoint host {host} is IPv4 address {legacy} in a legacy spelling; "
                                  f"write it as {legacy}") from None
        else:
            check_addresses(host, [literal], self._denied)
        return await super().handle_async_request(request)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address inet_aton(3) reads in ``host`` (shortened, decimal, octal or hex forms), if it is one."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


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
