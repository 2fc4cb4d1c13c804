"""The operator's event loop is uvloop's on Linux (the image and every e2e operator run on it)."""

from __future__ import annotations

import asyncio

from oauth_token_operator.kopf_edge.run import event_loop_factory


def test_the_operator_runs_on_uvloop_on_linux() -> None:
    factory = event_loop_factory()
    assert factory is not None, "asyncio's own loop: a third more CPU per refresh (bench/README.md)"
    loop = factory()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert type(loop).__module__.split(".")[0] == "uvloop"
    finally:
        loop.close()
