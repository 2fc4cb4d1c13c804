"""SSL contexts from PEM material, checked by real TLS handshakes on localhost (no HTTP involved)."""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from tokens_testkit import PKI, ec_key, make_pki, private_pem, rsa_key, write_pair

from oauth_token_operator.errors import InvalidSpec
from oauth_token_operator.tokens.model import TLSMaterial
from oauth_token_operator.tokens.tls import build_ssl_context, tls_material_key


def _server_context(pki: PKI, tmp_path: Path, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*write_pair(str(tmp_path), pki.server))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pki.ca.cert_pem)
    return context


@asynccontextmanager
async def _tls_server(context: ssl.SSLContext, seen: list[object]) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _handshake(port: int, context: ssl.SSLContext, host: str = "localhost") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=host)
    try:
        return await reader.read(5)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


async def test_ca_bundle_is_trusted_in_addition_to_system_roots(pki: PKI, tmp_path: Path) -> None:
    context = build_ssl_context(TLSMaterial(ca_bundle_pem=pki.ca.cert_pem))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    system_roots = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert context.cert_store_stats()["x509_ca"] == system_roots + 1
    async with _tls_server(_server_context(pki, tmp_path), []) as port:
        assert await _handshake(port, context) == b"hello"


async def test_without_the_ca_the_server_is_not_trusted(pki: PKI, tmp_path: Path) -> None:
    async with _tls_server(_server_context(pki, tmp_path), []) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(port, build_ssl_context(TLSMaterial()))


async def test_hostname_is_still_checked_with_a_ca_bundle(pki: PKI, tmp_path: Path) -> None:
    context = build_ssl_context(TLSMaterial(ca_bundle_pem=pki.ca.cert_pem))
    async with _tls_server(_server_context(pki, tmp_path), []) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(port, context, host="idp.example.com")


async def test_insecure_skip_verify_accepts_anything(pki: PKI, tmp_path: Path) -> None:
    context = build_ssl_context(TLSMaterial(insecure_skip_verify=True))
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
    async with _tls_server(_server_context(pki, tmp_path), []) as port:
        assert await _handshake(port, context, host="idp.example.com") == b"hello"


async def test_client_certificate_is_presented(pki: PKI, tmp_path: Path) -> None:
    material = TLSMaterial(
        ca_bundle_pem=pki.ca.cert_pem, client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr(pki.client.key_pem)
    )
    seen: list[object] = []
    async with _tls_server(_server_context(pki, tmp_path, require_client_cert=True), seen) as port:
        assert await _handshake(port, build_ssl_context(material)) == b"hello"
    assert seen and "torch-client" in repr(seen[0])


def test_client_key_files_are_private_and_removed(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    modes: dict[str, int] = {}
    real_mkdtemp = tempfile.mkdtemp
    real_load = ssl.SSLContext.load_cert_chain

    def mkdtemp(*args: object, **kwargs: object) -> str:
        made.append(real_mkdtemp(*args, **kwargs))  # type: ignore[call-overload]
        return made[-1]

    def load_cert_chain(self: ssl.SSLContext, certfile: str, keyfile: str, password: Callable[[], bytes]) -> None:
        modes.update({"dir": os.stat(made[-1]).st_mode & 0o777, "key": os.stat(keyfile).st_mode & 0o777})
        real_load(self, certfile, keyfile, password)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", load_cert_chain)
    build_ssl_context(TLSMaterial(client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr(pki.client.key_pem)))
    assert modes == {"dir": 0o700, "key": 0o600}
    assert made and not os.path.exists(made[0])


def _fails(material: TLSMaterial, needle: str) -> str:
    with pytest.raises(InvalidSpec, match=needle) as caught:
        build_ssl_context(material)
    message = caught.value.message
    assert "PRIVATE KEY" not in message and "CERTIFICATE-----" not in message
    assert caught.value.__cause__ is None
    return message


def test_bad_ca_bundle() -> None:
    _fails(TLSMaterial(ca_bundle_pem="not a certificate"), "caBundleRef")
    _fails(TLSMaterial(ca_bundle_pem="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "caBundleRef")


def test_client_key_not_matching_certificate(pki: PKI) -> None:
    other = private_pem(ec_key("P-256"))
    message = _fails(
        TLSMaterial(client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr(other)), "does not match"
    )
    for line in other.splitlines():
        assert line not in message


def test_encrypted_or_garbage_client_key(pki: PKI) -> None:
    encrypted = private_pem(rsa_key(), password=b"pw")
    _fails(TLSMaterial(client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr(encrypted)), "encrypted")
    _fails(
        TLSMaterial(client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr("CANARY-s3cr3t-9f2c")),
        "could not be read",
    )


def test_half_a_client_certificate(pki: PKI) -> None:
    _fails(TLSMaterial(client_cert_pem=pki.client.cert_pem), "tls.key")
    _fails(TLSMaterial(client_key_pem=SecretStr(pki.client.key_pem)), "tls.crt")
    _fails(TLSMaterial(client_cert_pem="garbage", client_key_pem=SecretStr(pki.client.key_pem)), "tls.crt")


def test_material_key_is_stable_distinct_and_opaque(pki: PKI) -> None:
    base = TLSMaterial(
        ca_bundle_pem=pki.ca.cert_pem, client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr(pki.client.key_pem)
    )
    same = TLSMaterial(
        ca_bundle_pem=pki.ca.cert_pem, client_cert_pem=pki.client.cert_pem, client_key_pem=SecretStr(pki.client.key_pem)
    )
    assert tls_material_key(base) == tls_material_key(same)
    variants = [
        TLSMaterial(),
        TLSMaterial(insecure_skip_verify=True),
        TLSMaterial(ca_bundle_pem=pki.ca.cert_pem),
        TLSMaterial(client_cert_pem=pki.ca.cert_pem),  # same text in another field is another configuration
        TLSMaterial(
            ca_bundle_pem=make_pki().ca.cert_pem,
            client_cert_pem=pki.client.cert_pem,
            client_key_pem=SecretStr(pki.client.key_pem),
        ),
        base,
    ]
    assert len({tls_material_key(v) for v in variants}) == len(variants)
    key = tls_material_key(base)
    assert len(key) == 64 and all(line not in key for line in pki.client.key_pem.splitlines())
