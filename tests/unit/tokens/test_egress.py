"""The endpoint guard's decisions, with injected resolvers: no test here sends traffic or asks a DNS server.

The resolver the token pools connect through must refuse a denied name before any socket exists, and hand the
pool exactly the addresses it checked. That the pool then connects there (with the original host name for TLS
and ``Host``) is proven against real servers in ``tests/integration/test_endpoint_guard.py``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Sequence

import httpx
import pytest

from oauth_token_operator.errors import InvalidSpec
from oauth_token_operator.settings import OperatorSettings
from oauth_token_operator.tokens.egress import (
    DEFAULT_DENIED_NETWORKS,
    DeniedNetworks,
    GuardedResolver,
    GuardedTransport,
    IPAddress,
    Resolver,
    api_server_addresses,
    check_addresses,
    denied_reason,
    parse_networks,
)

DEFAULT = DeniedNetworks.default()
API_SERVER = ipaddress.ip_address("10.96.0.1")


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("169.254.169.254", "a cloud metadata address in 169.254.0.0/16"),  # AWS, GCP, Azure, OpenStack
        ("169.254.170.2", "a cloud metadata address in 169.254.0.0/16"),  # ECS task metadata
        ("fd00:ec2::254", "a cloud metadata address in fd00:ec2::254/128"),  # AWS over IPv6
        ("100.100.100.200", "a cloud metadata address in 100.100.100.200/32"),  # Alibaba Cloud
        ("169.254.1.1", "a link-local address in 169.254.0.0/16"),
        ("fe80::1", "a link-local address in fe80::/10"),
        ("127.0.0.1", "a loopback address in 127.0.0.0/8"),
        ("127.255.0.9", "a loopback address in 127.0.0.0/8"),
        ("::1", "a loopback address in ::1/128"),
        ("0.0.0.0", "an unspecified address in 0.0.0.0/8"),  # "connecting to 0.0.0.0" reaches the node
        ("::", "an unspecified address in ::/128"),
    ],
)
def test_default_refuses_loopback_link_local_metadata_unspecified(address: str, what: str) -> None:
    assert denied_reason(ip(address), DEFAULT) == f", {what}"


@pytest.mark.parametrize(
    ("address", "reached"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped IPv6: the kernel connects to 127.0.0.1
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
    ],
)
def test_ipv4_mapped_and_nat64_addresses_are_checked_as_the_ipv4_they_reach(address: str, reached: str) -> None:
    reason = denied_reason(ip(address), DEFAULT)
    assert reason is not None and reason.startswith(f" (IPv4 {reached}), ")


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700::6810:84e5", "10.0.0.5", "192.168.1.10", "::ffff:93.184.215.14",
     "100.100.100.201", "fd00:ec2::253"],
)
def test_public_and_private_network_addresses_are_allowed_by_default(address: str) -> None:
    # private networks stay allowed: in-cluster identity providers (Keycloak in the cluster) live there
    assert denied_reason(ip(address), DEFAULT) is None


def test_the_api_server_address_is_denied_and_named() -> None:
    denied = DeniedNetworks.default(api_server=[API_SERVER])
    assert denied_reason(API_SERVER, denied) == ", the Kubernetes API server's address in 10.96.0.1/32"
    assert denied_reason(ip("10.96.0.2"), denied) is None
    on_loopback = DeniedNetworks.default(api_server=[ip("127.0.0.1")])
    assert denied_reason(ip("127.0.0.1"), on_loopback) == ", a loopback address (the API server's) in 127.0.0.0/8"


def test_empty_setting_denies_nothing() -> None:
    nothing = DeniedNetworks.build("")
    assert not nothing
    assert denied_reason(ip("127.0.0.1"), nothing) is None
    assert denied_reason(ip("169.254.169.254"), nothing) is None


def test_explicit_setting_replaces_the_default() -> None:
    custom = DeniedNetworks.build("10.0.0.0/8, 2001:db8::/32")
    assert denied_reason(ip("10.1.2.3"), custom) == ", an address in 10.0.0.0/8"
    assert denied_reason(ip("2001:db8::1"), custom) == ", an address in 2001:db8::/32"
    assert denied_reason(ip("127.0.0.1"), custom) is None


def test_parse_networks_accepts_bare_addresses_and_names_a_bad_entry() -> None:
    assert parse_networks("192.0.2.7, ::1,,") == (ipaddress.ip_network("192.0.2.7/32"), ipaddress.ip_network("::1/128"))
    assert len(parse_networks(DEFAULT_DENIED_NETWORKS)) == 8
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        parse_networks("127.0.0.0/8,10.0.0.0/33")


def test_setting_is_validated_and_empty_is_not_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS", "")
    assert OperatorSettings().denied_endpoint_networks == ""
    monkeypatch.delenv("OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS")
    assert OperatorSettings().denied_endpoint_networks is None
    with pytest.raises(ValueError, match="not-a-network"):
        OperatorSettings(denied_endpoint_networks="127.0.0.0/8,not-a-network")


def test_check_addresses_refuses_when_any_address_is_denied_and_says_why() -> None:
    public, metadata = ip("93.184.215.14"), ip("169.254.169.254")
    check_addresses("idp.example.com", [public], DEFAULT)  # allowed: no exception
    with pytest.raises(InvalidSpec) as caught:
        check_addresses("idp.example.com", [public, metadata], DEFAULT)  # order does not matter
    assert caught.value.message.startswith(
        "endpoint host idp.example.com resolves to 169.254.169.254, a cloud metadata address in 169.254.0.0/16, "
        "denied by OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS; no request was sent")
    with pytest.raises(InvalidSpec, match=r"^endpoint host 127\.0\.0\.1 is 127\.0\.0\.1, a loopback address"):
        check_addresses("127.0.0.1", [ip("127.0.0.1")], DEFAULT)


def test_api_server_addresses_from_url_and_service_host() -> None:
    asked: list[str] = []

    def resolve(host: str) -> Sequence[IPAddress]:
        asked.append(host)
        return [ip("192.0.2.10"), ip("2001:db8::10")]

    found = api_server_addresses("https://api.cluster.internal:6443", service_host="10.96.0.1", resolve=resolve)
    assert found == (ip("192.0.2.10"), ip("2001:db8::10"), ip("10.96.0.1"))
    assert asked == ["api.cluster.internal"]  # a literal IP is not looked up
    assert api_server_addresses("https://[2001:db8::1]:443", resolve=resolve) == (ip("2001:db8::1"),)

    def unresolvable(host: str) -> Sequence[IPAddress]:
        raise OSError("no such host")

    assert api_server_addresses("https://gone.invalid", resolve=unresolvable) == ()
    assert api_server_addresses(None) == ()


# ------------------------------------------------------------------------------------------- the resolver


def resolver(table: dict[str, list[str]], calls: list[str]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        calls.append(host)
        return [ip(a) for a in table[host]]

    return resolve


async def test_resolver_refuses_a_denied_name_so_no_connection_is_made() -> None:
    calls: list[str] = []
    guard = GuardedResolver(DEFAULT, resolve=resolver({"metadata.internal": ["203.0.113.7", "169.254.169.254"]},
                                                      calls))
    with pytest.raises(InvalidSpec, match=re.escape("metadata.internal resolves to 169.254.169.254, a cloud")):
        await guard.resolve("metadata.internal", 80)
    assert calls == ["metadata.internal"], "one public address among them does not make it acceptable"


async def test_resolver_hands_the_pool_exactly_the_checked_addresses() -> None:
    # DNS rebinding: the name is resolved once; the pool connects to these, never to the name again.
    calls: list[str] = []
    guard = GuardedResolver(DEFAULT, resolve=resolver({"idp.example.com": ["203.0.113.7", "2001:db8::7"]}, calls))
    results = await guard.resolve("idp.example.com", 443)
    assert calls == ["idp.example.com"]
    assert [(r["host"], r["port"], r["family"], r["hostname"]) for r in results] == [
        ("203.0.113.7", 443, socket.AF_INET, "idp.example.com"),
        ("2001:db8::7", 443, socket.AF_INET6, "idp.example.com"),
    ]
    assert all(r["flags"] == socket.AI_NUMERICHOST for r in results), "aiohttp must not resolve them again"


async def test_resolver_unresolvable_host_is_an_os_error() -> None:
    # aiohttp reports an OSError from its resolver as "cannot connect"/DNS; classified as "cannot resolve host".
    async def fail(host: str, port: int) -> Sequence[IPAddress]:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(OSError, match="Name or service not known"):
        await GuardedResolver(DEFAULT, resolve=fail).resolve("nowhere.invalid", 443)

    async def nothing(host: str, port: int) -> Sequence[IPAddress]:
        return []

    with pytest.raises(OSError, match="resolves to no address"):
        await GuardedResolver(DEFAULT, resolve=nothing).resolve("empty.invalid", 443)


async def test_a_legacy_ipv4_spelling_is_checked_and_named_before_any_connection() -> None:
    # The system resolver reads "3405803783" as 203.0.113.7 (and "127.1" as loopback); aiohttp refuses such URLs.
    transport = GuardedTransport(verify=ssl.create_default_context(), limits=httpx.Limits(), denied=DEFAULT)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(InvalidSpec, match=re.escape("3405803783 is IPv4 address 203.0.113.7 in a legacy")):
            await client.get("http://3405803783/token")
        with pytest.raises(InvalidSpec, match=re.escape("127.1 resolves to 127.0.0.1, a loopback address")):
            await client.get("http://127.1/token")
