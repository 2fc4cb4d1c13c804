"""A fast, counting OAuth 2.0 token endpoint for the benchmarks (aiohttp, HTTPS, 127.0.0.1 only).

Run as its own process so that its CPU is not charged to the benchmark driver and it never waits on the driver's
GIL: ``python bench/tokenserver.py --cert C --key K [--expires-in 240] [--status 200]``. It prints one line,
``PORT <n>``, once it listens.

* ``POST /token`` answers ``grant_type=client_credentials`` with a random token and the configured ``expires_in``
  (or the configured error status, e.g. 503 for a dead endpoint). The client is taken from HTTP Basic
  (``client_secret_basic``, the operator's default) or from the ``client_id`` form field. Each request's receive
  time (``time.time()``, before any parsing) is recorded per client.
* ``GET /_stats?since=<unix time>`` returns ``{"requests": {client_id: [t, ...]}, "total": n}`` (times >= since).
* ``POST /_config`` with JSON ``{"expires_in": s, "status": code}`` changes the answers.

Nothing secret is kept: the client secret is not even checked (the benchmark measures the operator, not the
server).
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import ssl
import sys
import time
from collections import defaultdict
from urllib.parse import parse_qs, unquote

from aiohttp import web

__all__ = ["main"]


def build_app(expires_in: int, status: int) -> web.Application:
    state = {"expires_in": expires_in, "status": status}
    received: defaultdict[str, list[float]] = defaultdict(list)

    async def token(request: web.Request) -> web.Response:
        now = time.time()
        body = (await request.read()).decode("ascii", "replace")
        form = parse_qs(body)
        client = ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                client = unquote(base64.b64decode(auth[6:]).decode().split(":", 1)[0])
            except ValueError:
                client = ""
        if not client:
            client = (form.get("client_id") or ["?"])[0]
        received[client].append(now)
        if state["status"] != 200:
            return web.json_response({"error": "temporarily_unavailable"}, status=state["status"])
        if form.get("grant_type") != ["client_credentials"]:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        return web.json_response(
            {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": state["expires_in"]},
            headers={"Cache-Control": "no-store"},
        )

    async def stats(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        out = {client: [t for t in times if t >= since] for client, times in received.items()}
        out = {client: times for client, times in out.items() if times}
        return web.Response(
            text=json.dumps({"requests": out, "total": sum(map(len, out.values()))}), content_type="application/json"
        )

    async def config(request: web.Request) -> web.Response:
        state.update({k: int(v) for k, v in (await request.json()).items() if k in state})
        return web.json_response(state)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_config", config)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--expires-in", type=int, default=240)
    parser.add_argument("--status", type=int, default=200)
    args = parser.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)

    async def start() -> web.AppRunner:
        runner = web.AppRunner(build_app(args.expires_in, args.status), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=ctx, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        print(f"PORT {port}", flush=True)
        return runner

    import asyncio

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
