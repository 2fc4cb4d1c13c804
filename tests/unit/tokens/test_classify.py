"""Error classification helpers: redaction, Retry-After, and transport failures provoked on real sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import pytest
from tokens_testkit import CANARY, PKI, private_pem, rsa_key, write_pair

from oauth_token_operator.errors import EndpointUnavailable
from oauth_token_operator.reasons import Reason
from oauth_token_operator.tokens.classify import (
    clean_server_text,
    config_secrets,
    is_invalid_client_answer,
    parse_retry_after,
    redact,
    without_userinfo,
)
from oauth_token_operator.tokens.egress import DeniedNetworks, GuardedTransport
from oauth_token_operator.tokens.model import ClientConfig, TLSMaterial
from oauth_token_operator.tokens.tls import build_ssl_context
from oauth_token_operator.tokens.transport_errors import classify_transport_error

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "echo",
    [
        CANARY,
        "CANARY%2Ds3cr3t%2D9f2c".replace("%2D", "-"),  # unreserved chars stay as they are
        "p%40ss%3Aw%2Brd",  # percent-encoded
        "p%40ss%3Aw%2Brd".replace("%3A", ":"),  # partially encoded is not a secret form we know...
    ],
)
def test_redact_plain_and_encoded_forms(echo: str) -> None:
    secrets = [CANARY, "p@ss:w+rd"]
    text = redact(f"server said: {echo}!", secrets)
    if echo in (CANARY, "p%40ss%3Aw%2Brd"):
        assert text == "server said: [REDACTED]!"
    else:  # ...and is left alone rather than guessed at
        assert "p%40ss:w%2Brd" in text


def test_redact_json_escaped_and_form_plus_forms() -> None:
    secret = 'a "quoted" secret/with\\slash'
    echoed = '{"client_secret": "a \\"quoted\\" secret/with\\\\slash"}'
    assert "quoted" not in redact(echoed, [secret])
    assert redact("client_secret=a+%22quoted%22+secret%2Fwith%5Cslash", [secret]) == "client_secret=[REDACTED]"


def test_redact_private_keys_whole_or_in_part() -> None:
    pem = private_pem(rsa_key())
    body_line = pem.splitlines()[5]
    assert redact(f"echo: {pem.strip()} end", []) == "echo: [REDACTED private key] end"
    assert body_line not in redact(f"fragment {body_line}", [pem])
    assert redact("x -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE (truncated", []) == "x [REDACTED private key]"


def test_redact_ignores_trivially_short_secrets() -> None:
    assert redact("a b c", ["a", ""]) == "a b c"


def test_config_secrets_collects_every_secret_field() -> None:
    from pydantic import SecretStr

    config = ClientConfig(
        client_id="torch",
        client_secret=SecretStr(CANARY),
        private_key_pem=SecretStr("PEMKEY"),
        tls=TLSMaterial(client_key_pem=SecretStr("TLSKEY")),
    )
    assert set(config_secrets(config, "assertion")) == {CANARY, "PEMKEY", "TLSKEY", "assertion"}
    assert "torch" not in config_secrets(config)


def test_clean_server_text() -> None:
    assert clean_server_text("a\r\n\tb\x00c\u202ed") == "a b c d"
    long = clean_server_text("x" * 500)
    assert len(long) == 200 and long.endswith("…")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 01 Mar 2026 12:02:00 GMT", 120.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: retry now, never negative
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b"", True),
        (403, b"", True),
        (400, b'{"error": "invalid_client"}', True),
        (400, b'{"ErrorCode": "invalid_client"}', True),
        (400, b'{"error": "unauthorized_client"}', False),  # authenticated, just not allowed: encoding is fine
        (400, b'{"error": "invalid_scope"}', False),
        (500, b'{"error": "invalid_client"}', False),
    ],
)
def test_is_invalid_client_answer(status: int, body: bytes, expected: bool) -> None:
    assert is_invalid_client_answer(status, {"Content-Type": "application/json"}, body) is expected


# ------------------------------------------------------------------------ real transport failures


@pytest.fixture(params=["aiohttp", "httpcore"])
def via(request: pytest.FixtureRequest) -> str:
    """Which pool sends: the token pools' (aiohttp under httpx) or httpx's own (used through a proxy)."""
    return str(request.param)


async def _get(url: str, via: str, context: ssl.SSLContext | None = None, read_timeout: float = 2.0,
               ) -> BaseException:
    context = context or ssl.create_default_context()
    transport = (GuardedTransport(verify=context, limits=httpx.Limits(), denied=DeniedNetworks())
                 if via == "aiohttp" else None)
    async with httpx.AsyncClient(verify=context, timeout=read_timeout, transport=transport) as client:
        try:
            await client.get(url)
        except (httpx.HTTPError, aiohttp.ClientError) as exc:  # what TokenClient._send hands to the classifier
            return exc
    raise AssertionError("the request unexpectedly succeeded")


@asynccontextmanager
async def _server(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check(error: EndpointUnavailable, *needles: str) -> None:
    assert isinstance(error, EndpointUnavailable)
    assert error.reason is Reason.ENDPOINT_UNAVAILABLE and error.transient
    for needle in needles:
        assert needle in error.message, error.message


async def test_connection_refused(via: str) -> None:
    url = f"http://127.0.0.1:{_unused_port()}/token"
    _check(classify_transport_error(await _get(url, via), url=url), "refused", "127.0.0.1")


async def test_tls_verification_failure_points_at_ca_bundle(pki: PKI, tmp_path: Path, via: str) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*write_pair(str(tmp_path), pki.server))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with _server(handler, server_context) as port:
        url = f"https://localhost:{port}/token"
        error = classify_transport_error(await _get(url, via, build_ssl_context(TLSMaterial())), url=url)
    _check(error, "TLS certificate verification failed", f"localhost:{port}", "tls.caBundleRef")


async def test_read_timeout(via: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answer; returns when the client gives up and closes

    async with _server(handler) as port:
        url = f"http://127.0.0.1:{port}/token"
        error = classify_transport_error(await _get(url, via, read_timeout=0.2), url=url)
    _check(error, "timed out waiting for the answer")


async def test_protocol_error_never_quotes_what_the_peer_sent(via: str) -> None:
    # A tokenURL pointed at a non-HTTP internal service (Redis, SSH, ...) must not read its banner back.
    banner = b"SSH-2.0-InternalBanner-7f3a2c"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(banner + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    async with _server(handler) as port:
        url = f"http://127.0.0.1:{port}/token"
        failure = await _get(url, via)
        error = classify_transport_error(failure, url=url)
    assert "InternalBanner" in repr(failure) + repr(failure.__cause__)  # both parsers quote it: we must not
    _check(error, "broke the HTTP protocol", "port right")
    assert "InternalBanner" not in error.message


async def test_a_server_that_closes_without_answering_is_not_called_a_timeout(via: str) -> None:
    # httpx-aiohttp maps aiohttp's ServerDisconnectedError to httpx.ConnectTimeout: the message must still say
    # what happened.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    async with _server(handler) as port:
        url = f"http://127.0.0.1:{port}/token"
        error = classify_transport_error(await _get(url, via), url=url)
    _check(error, "broke the HTTP protocol")
    assert "timed out" not in error.message


def test_dns_failure_and_userinfo_never_shown() -> None:
    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    exc = httpx.ConnectError("[Errno -2] Name or service not known")
    exc.__cause__ = cause
    error = classify_transport_error(exc, url=f"https://user:{CANARY}@idp.invalid/token")
    _check(error, "cannot resolve host idp.invalid")
    assert CANARY not in error.message


def test_transport_text_is_redacted() -> None:
    error = classify_transport_error(httpx.ReadError(f"connection reset {CANARY}"), secrets=[CANARY])
    assert CANARY not in error.message and "[REDACTED]" in error.message


def test_unexpected_exception_still_classified_without_its_text() -> None:
    error = classify_transport_error(RuntimeError("boom from somewhere"), url="https://h/t")
    _check(error, "RuntimeError")
    assert "boom" not in error.message


def test_retry_after_is_relative_to_now() -> None:
    later = NOW + timedelta(seconds=30)
    assert parse_retry_after("Sun, 01 Mar 2026 12:02:00 GMT", now=later) == 90.0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://client:{CANARY}@idp.example.com/token", "https://idp.example.com/token"),
        ("https://client@idp.example.com:8443/t?x=1", "https://idp.example.com:8443/t?x=1"),
        ("https://a@b@idp.example.com", "https://idp.example.com"),
        ("https://idp.example.com/u/me@corp?q=a@b", "https://idp.example.com/u/me@corp?q=a@b"),  # not userinfo
        ("http://[::1]:80/token", "http://[::1]:80/token"),
        ("not a url", "not a url"),
    ],
)
def test_without_userinfo_is_what_status_shows(url: str, shown: str) -> None:
    assert without_userinfo(url) == shown
