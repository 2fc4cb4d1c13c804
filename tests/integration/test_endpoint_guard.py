"""The endpoint guard against real servers on loopback: refused endpoints get no connection at all.

The default denied networks refuse loopback, so the servers here (all on 127.0.0.x) stand in for the metadata
service or the API server. Names are resolved by injected resolvers (no DNS lookups); if the guard were broken,
the traffic would still only go to loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from pydantic import SecretStr
from tests.support.authserver import AuthServer
from tests.support.pki import TestCA

from oauth_token_operator.app import token_client
from oauth_token_operator.errors import EndpointUnavailable, InvalidSpec
from oauth_token_operator.settings import OperatorSettings
from oauth_token_operator.tokens.client import TokenClient
from oauth_token_operator.tokens.egress import DeniedNetworks, IPAddress, Resolver
from oauth_token_operator.tokens.model import ClientConfig, TLSMaterial

SECRET = "guard-secret-7c1e"


class ConnectionCounter:
    """A TCP listener that counts the connections it accepts and closes them (a stand-in for a target)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionCounter:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self._server = await asyncio.start_server(accept, self.host, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port


def config(*, token_url: str | None = None, issuer_url: str | None = None, tls: TLSMaterial | None = None,
           ) -> ClientConfig:
    return ClientConfig(client_id="guarded", token_url=token_url, issuer_url=issuer_url,
                        client_secret=SecretStr(SECRET), tls=tls or TLSMaterial())


def resolving(table: dict[str, str]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address(table.get(host, host))]

    return resolve


@pytest.fixture
def authserver() -> Iterator[AuthServer]:
    with AuthServer() as server:
        server.add_client("guarded", secret=SECRET)
        yield server


@pytest.fixture
async def default_client() -> AsyncIterator[TokenClient]:
    """The client exactly as the operator builds it from default settings (plain http allowed for loopback)."""
    client = token_client(OperatorSettings(allow_insecure_http=True, denied_endpoint_networks=None))
    yield client
    await client.aclose()


async def test_default_setting_refuses_a_loopback_token_url_and_sends_nothing(
        authserver: AuthServer, default_client: TokenClient) -> None:
    with pytest.raises(InvalidSpec) as caught:
        await default_client.fetch_token(config(token_url=authserver.token_url))

    assert caught.value.message.startswith("endpoint host 127.0.0.1 is 127.0.0.1, a loopback address in 127.0.0.0/8")
    assert "OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS" in caught.value.message
    assert SECRET not in caught.value.message
    assert authserver.token_request_count() == 0


async def test_empty_setting_allows_the_same_endpoint(authserver: AuthServer) -> None:
    client = token_client(OperatorSettings(allow_insecure_http=True, denied_endpoint_networks=""))
    try:
        result = await client.fetch_token(config(token_url=authserver.token_url))
    finally:
        await client.aclose()

    assert authserver.accepts(result.token.access_token.get_secret_value())
    assert authserver.token_request_count() == 1


async def test_default_setting_refuses_a_loopback_issuer_without_a_connection(default_client: TokenClient) -> None:
    async with ConnectionCounter() as issuer:
        with pytest.raises(InvalidSpec, match="a loopback address"):
            await default_client.fetch_token(config(issuer_url=f"http://127.0.0.1:{issuer.port}/realms/apps"))

    assert issuer.accepted == 0


async def test_a_discovered_token_endpoint_in_a_denied_network_is_refused(authserver: AuthServer) -> None:
    # The issuer (127.0.0.1) is allowed; its document announces a token endpoint on 127.0.0.2, which is denied.
    async with ConnectionCounter("127.0.0.2") as internal:
        authserver.set_discovery(overrides={"token_endpoint": f"http://127.0.0.2:{internal.port}/token"})
        client = TokenClient(allow_insecure_http=True, timeout=5.0, denied_networks=DeniedNetworks.build("127.0.0.2"))
        try:
            expected = re.escape("127.0.0.2 is 127.0.0.2, a loopback address in 127.0.0.2/32")
            with pytest.raises(InvalidSpec, match=expected):
                await client.fetch_token(config(issuer_url=authserver.issuer))
        finally:
            await client.aclose()

    assert internal.accepted == 0
    assert authserver.token_request_count() == 0


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"])
async def test_other_spellings_of_loopback_are_refused(default_client: TokenClient, spelling: str) -> None:
    # The system resolver turns these into 127.0.0.1 (no DNS query: they are numeric); the check sees that.
    async with ConnectionCounter() as target:
        with pytest.raises(InvalidSpec, match="a loopback address"):
            await default_client.fetch_token(config(token_url=f"http://{spelling}:{target.port}/token"))
    assert target.accepted == 0


async def test_a_name_resolving_into_a_denied_network_is_refused(authserver: AuthServer) -> None:
    client = TokenClient(allow_insecure_http=True, timeout=5.0, resolve=resolving({"idp.test": "127.0.0.1"}))
    url = authserver.token_url.replace("127.0.0.1", "idp.test")
    try:
        with pytest.raises(InvalidSpec, match=r"^endpoint host idp\.test resolves to 127\.0\.0\.1, a loopback"):
            await client.fetch_token(config(token_url=url))
    finally:
        await client.aclose()
    assert authserver.token_request_count() == 0


async def test_guarded_https_keeps_verifying_the_certificate_for_the_host_name(tmp_path_factory: pytest.TempPathFactory,
                                                                              ) -> None:
    # Through the guard the socket goes to the checked IP, while SNI and certificate checks use the URL's name:
    # the certificate is valid for "localhost" (and 127.0.0.1) only, so a wrong name must still fail.
    ca = TestCA(tmp_path_factory.mktemp("ca"))
    with AuthServer(tls=ca) as server:
        server.add_client("guarded", secret=SECRET)
        table = {"localhost": "127.0.0.1", "other.test": "127.0.0.1"}
        client = TokenClient(timeout=5.0, denied_networks=DeniedNetworks.build("169.254.0.0/16"),
                             resolve=resolving(table))
        tls = TLSMaterial(ca_bundle_pem=server.ca_pem)
        try:
            result = await client.fetch_token(config(token_url=server.token_url.replace("127.0.0.1", "localhost"),
                                                     tls=tls))
            assert server.accepts(result.token.access_token.get_secret_value())
            with pytest.raises(EndpointUnavailable, match=re.escape("certificate verification failed for other.test")):
                await client.fetch_token(config(token_url=server.token_url.replace("127.0.0.1", "other.test"),
                                                tls=tls))
        finally:
            await client.aclose()
        assert server.token_request_count() == 1


async def test_behind_a_proxy_the_target_is_checked_before_the_proxy_is_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with ConnectionCounter() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "")
        client = TokenClient(timeout=5.0, resolve=resolving({"metadata.test": "169.254.169.254"}))
        try:
            with pytest.raises(InvalidSpec, match=re.escape("metadata.test resolves to 169.254.169.254, a cloud")):
                await client.fetch_token(config(token_url="https://metadata.test/token"))
        finally:
            await client.aclose()

    assert proxy.accepted == 0
