"""Which addresses a token, issuer or discovered endpoint may not be: the pure half of :mod:`.egress`.

Parsing ``OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS`` and judging resolved addresses, with no network and no
I/O library (``.importlinter``'s pure-core contract), so that the settings can validate the value and the unit
tests can prove every refusal without sending anything anywhere. :mod:`.egress` resolves and connects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InvalidSpec

__all__ = [
    "DEFAULT_DENIED_NETWORKS",
    "DENIED_NETWORKS_SETTING",
    "METADATA_ADDRESSES",
    "DeniedNetworks",
    "IPAddress",
    "IPNetwork",
    "check_addresses",
    "denied_reason",
    "parse_networks",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED_NETWORKS_SETTING = "OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS"

DEFAULT_DENIED_NETWORKS = (
    "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128,fd00:ec2::254/128,100.100.100.200/32"
)
"""Loopback, link-local (which holds most clouds' metadata service, 169.254.169.254), unspecified, AWS's IPv6
metadata address and Alibaba Cloud's metadata address. The API server's addresses are added at start-up."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
"""Cloud instance metadata (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, ECS task metadata): named in messages."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class DeniedNetworks:
    """The networks endpoints may not be in, and which addresses are the API server's (for the message)."""

    networks: tuple[IPNetwork, ...] = ()
    api_server: frozenset[IPAddress] = frozenset()

    @classmethod
    def default(cls, api_server: Iterable[IPAddress] = ()) -> DeniedNetworks:
        return cls.build(DEFAULT_DENIED_NETWORKS, api_server=api_server)

    @classmethod
    def build(cls, text: str, *, api_server: Iterable[IPAddress] = ()) -> DeniedNetworks:
        """``text`` (comma-separated CIDRs) plus each API server address as a single-address network."""
        servers = frozenset(api_server)
        extra = tuple(ipaddress.ip_network(address) for address in sorted(servers, key=_sort_key))
        return cls(parse_networks(text) + extra, servers)

    def __bool__(self) -> bool:
        return bool(self.networks)


def _sort_key(address: IPAddress) -> tuple[int, int]:
    return address.version, int(address)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128); ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP network (CIDR such as 10.0.0.0/8 or fd00::/8)") from None
    return tuple(networks)


def _reached(address: IPAddress) -> tuple[IPAddress, ...]:
    """``address`` and the IPv4 address it really reaches when it is IPv4-mapped or NAT64."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(address.packed)  # drop a %scope for the comparisons
        if address.ipv4_mapped is not None:
            return address, address.ipv4_mapped
        if address in _NAT64:
            return address, ipaddress.IPv4Address(address.packed[-4:])
    return (address,)


def _address_class(address: IPAddress, denied: DeniedNetworks) -> str:
    if address in METADATA_ADDRESSES:
        kind = "a cloud metadata address"
    elif address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif address.is_unspecified:
        kind = "an unspecified address"
    else:
        kind = "an address"
    if address in denied.api_server:
        return "the Kubernetes API server's address" if kind == "an address" else f"{kind} (the API server's)"
    return kind


def denied_reason(address: IPAddress, denied: DeniedNetworks) -> str | None:
    """Why ``address`` may not be connected to (e.g. ``, a link-local address in 169.254.0.0/16``), or None."""
    for index, reached in enumerate(_reached(address)):
        for network in denied.networks:
            if reached.version == network.version and reached in network:
                via = f" (IPv4 {reached})" if index else ""
                return f"{via}, {_address_class(reached, denied)} in {network}"
    return None


def check_addresses(host: str, addresses: Sequence[IPAddress], denied: DeniedNetworks) -> None:
    """Raise InvalidSpec naming ``host`` and the first denied address; nothing when every address is allowed."""
    for address in addresses:
        reason = denied_reason(address, denied)
        if reason is not None:
            resolves = f"host {host} is" if host == str(address) else f"host {host} resolves to"
            raise InvalidSpec(
                f"endpoint {resolves} {address}{reason}, denied by {DENIED_NETWORKS_SETTING}; no request was "
                "sent. Use the authorization server's own address, or ask the cluster admin to change that "
                "setting"
            )
