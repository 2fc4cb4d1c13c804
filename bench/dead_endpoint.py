"""Requests per hour that reach a dead token endpoint shared by N resources.

Run from the repository root::

    .venv/bin/python bench/dead_endpoint.py            # simulation only (instant)
    .venv/bin/python bench/dead_endpoint.py --real     # + 100 resources against a real 503 endpoint (~4 min)

The simulation is ``simulate_dead_endpoint`` from ``tests/support/simulation.py``: the operator's own
``EndpointHealth`` circuit breaker and ``schedule.retry_delay`` driven by a virtual clock, 30-minute tokens at
evenly spread points of their lives when the endpoint dies.

``--real`` runs the real operator on envtest with ``--real-n`` resources (default 100) whose endpoint
(``bench/tokenserver.py``) first issues tokens, then answers 503 for ``--real-seconds`` (default 180 s), and
prints the requests that reached it per minute and extrapolated per hour.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))


def simulation(sizes: list[int], hours: int) -> None:
    from tests.support.simulation import simulate_dead_endpoint

    print(f"simulation: requests reaching a dead endpoint per hour, {hours} h outage, 30 min tokens")
    print(f"{'N':>6}  " + "  ".join(f"{f'h{h + 1}':>6}" for h in range(hours)) + "  per resource-hour (h1)")
    for n in sizes:
        counts = simulate_dead_endpoint(n, hours)
        print(f"{n:>6}  " + "  ".join(f"{c:>6}" for c in counts) + f"  {counts[0] / n:>10.2f}")


def real(n: int, seconds: float, lifetime: int) -> None:
    import shutil

    from kubernetes import client
    from tests.support.envtest import EnvTest, assets_dir
    from tests.support.operator_process import OperatorProcess

    from bench.scale import NAMESPACE, TokenServer, create_resource, list_schedules, log

    root = Path(tempfile.mkdtemp(prefix="oto-dead-"))
    server = TokenServer(root, expires_in=lifetime)
    try:
        with EnvTest(root / "envtest", assets_dir(), crd_dir=REPO / "crds", controller_manager=False) as env:
            api = env.api_client()
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            core.create_namespaced_config_map(
                NAMESPACE, {"metadata": {"name": "bench-ca"}, "data": {"ca.crt": server.ca.read_text()}}
            )
            op = OperatorProcess(env.kubeconfig, root, env={"OAUTH_TOKEN_OPERATOR_LOG_LEVEL": "ERROR"})
            op.start()

            def create(i: int) -> None:
                name = f"dead-{i:04d}"
                create_resource(core, custom, name, server.url, client_secret="x")

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(n)))
            deadline = time.time() + 120
            while sum(ready for _, ready in list_schedules(custom).values()) < n and time.time() < deadline:
                time.sleep(2)
            server.configure(status=503)
            t0 = time.time()
            log(f"{n} resources Ready; endpoint answers 503 for {seconds:.0f}s")
            time.sleep(seconds)
            stats = server.stats(since=t0)
            times = sorted(t for ts in stats.values() for t in ts if t <= t0 + seconds)
            per_minute = [sum(1 for t in times if m * 60 <= t - t0 < (m + 1) * 60) for m in range(int(seconds // 60))]
            op.stop()
            api.close()
        print(
            f"real: {n} resources, {lifetime}s tokens, endpoint answering 503 for {seconds:.0f}s: "
            f"{len(times)} requests ({len(times) * 3600 / seconds:.0f}/hour extrapolated); per minute "
            f"{per_minute}; clients that sent any: {len(stats)}"
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--hours", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="also measure the real operator against a 503 endpoint")
    parser.add_argument("--real-n", type=int, default=100)
    parser.add_argument("--real-seconds", type=float, default=180.0)
    parser.add_argument(
        "--real-lifetime",
        type=int,
        default=1800,
        help="token lifetime before the endpoint dies [s] (default: %(default)s)",
    )
    args = parser.parse_args()
    simulation([int(s) for s in args.sizes.split(",")], args.hours)
    if args.real:
        real(args.real_n, args.real_seconds, args.real_lifetime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
