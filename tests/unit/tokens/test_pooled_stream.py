"""egress.PooledStream: the pool's "did the server close this idle connection?" answered from the socket."""

from __future__ import annotations

import socket
from typing import Any

import httpcore

from oauth_token_operator.tokens.egress import PooledStream


class Inner(httpcore.AsyncNetworkStream):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.asked: list[str] = []

    def get_extra_info(self, info: str) -> Any:
        self.asked.append(info)
        return self.sock if info == "socket" else "other"


def test_an_idle_connection_turns_readable_when_the_server_closes_it() -> None:
    ours, server = socket.socketpair()
    inner = Inner(ours)
    stream = PooledStream(inner)
    try:
        assert stream.get_extra_info("is_readable") is False
        server.close()
        assert stream.get_extra_info("is_readable") is True, "EOF waiting: the pool must discard it"
        assert inner.asked == ["socket"], "the socket is looked up once, not per question"
        assert stream.get_extra_info("ssl_object") == "other"
    finally:
        ours.close()
    assert stream.get_extra_info("is_readable") is True, "a closed socket is not reused either"
