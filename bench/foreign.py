"""The rest of the cluster (issue 10): what other people's Secrets and ConfigMaps cost the operator.

Run from the repository root::

    .venv/bin/python bench/foreign.py                        # 3,000 Secrets + 1,000 ConfigMaps of 64 KiB
    .venv/bin/python bench/foreign.py --secrets 1000 --configmaps 0 --size-kib 200

Two runs in one invocation, each on a fresh envtest control plane with the same 10 ``OAuthClientCredential``s
(``--resources``) against ``bench/tokenserver.py``, the operator cluster-wide with default settings:

* **baseline**: nothing else in the cluster;
* **foreign**: first ``--secrets`` Helm-release-shaped Secrets (type ``helm.sh/release.v1``, labels
  ``owner=helm``, ``--size-kib`` of random data each) and ``--configmaps`` ConfigMaps of the same size, spread
  over ``--namespaces`` other namespaces; then the same resources.

For each: seconds from the operator's start until every resource is Ready, the operator's peak RSS (VmHWM and
0.5 s samples), its RSS after ``--settle`` seconds, and its CPU seconds over the first minute. Printed side by
side with the ratios; numbers only, nothing is asserted (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.support.envtest import EnvTest, assets_dir  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402

from bench.scale import (  # noqa: E402
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    ProcSampler,
    TokenServer,
    cpu_seconds,
    create_resource,
    log,
)


@dataclass
class Run:
    label: str
    foreign_secrets: int = 0
    foreign_configmaps: int = 0
    ready_seconds: float | None = None
    peak_rss_mib: float = 0.0
    settled_rss_mib: float = 0.0
    cpu_first_minute: float = 0.0


def create_foreign(core: Any, secrets: int, configmaps: int, size_kib: int, namespaces: int, threads: int) -> None:
    blob = base64.b64encode(os.urandom(size_kib * 1024 * 3 // 4)).decode()  # base64 of ~size_kib KiB
    for i in range(namespaces):
        core.create_namespace({"metadata": {"name": f"tenant-{i}"}}, _preload_content=False).data  # noqa: B018

    def secret(i: int) -> None:
        _ = core.create_namespaced_secret(f"tenant-{i % namespaces}", {
            "metadata": {"name": f"sh.helm.release.v1.app-{i}.v{i % 7 + 1}",
                         "labels": {"owner": "helm", "name": f"app-{i}", "status": "deployed"}},
            "type": "helm.sh/release.v1", "data": {"release": blob}}, _preload_content=False).data

    def configmap(i: int) -> None:
        _ = core.create_namespaced_config_map(f"tenant-{i % namespaces}", {
            "metadata": {"name": f"dashboard-{i}"}, "data": {"dashboard.json": blob}}, _preload_content=False).data

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(secret, range(secrets)))
        list(pool.map(configmap, range(configmaps)))


def all_ready(custom: Any, n: int) -> bool:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    ready = sum(1 for obj in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                          for c in (obj.get("status") or {}).get("conditions") or []))
    return ready >= n


def run(label: str, args: argparse.Namespace, root: Path, server: TokenServer, *, foreign: bool) -> Run:
    from kubernetes import client

    result = Run(label, args.secrets if foreign else 0, args.configmaps if foreign else 0)
    workdir = root / label
    workdir.mkdir()
    with EnvTest(workdir / "envtest", assets_dir(), crd_dir=REPO / "crds", controller_manager=False) as env:
        api = env.api_client()
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "bench-ca"},
                                                      "data": {"ca.crt": server.ca.read_text()}})
        if foreign:
            log(f"{label}: creating {args.secrets} Secrets and {args.configmaps} ConfigMaps of {args.size_kib} KiB")
            create_foreign(core, args.secrets, args.configmaps, args.size_kib, args.namespaces, args.threads)
        for i in range(args.resources):
            create_resource(core, custom, f"r{i:03d}", server.url, client_secret=f"s3cret-{i}")
        op = OperatorProcess(env.kubeconfig, workdir, env={"OAUTH_TOKEN_OPERATOR_LOG_LEVEL": "WARNING"})
        started = time.monotonic()
        op.start(wait=False)
        assert op.pid is not None
        sampler = ProcSampler(op.pid)
        try:
            deadline = started + 300
            while time.monotonic() < deadline:
                if all_ready(custom, args.resources):
                    result.ready_seconds = time.monotonic() - started
                    break
                time.sleep(0.2)
            time.sleep(max(0.0, started + 60 - time.monotonic()))
            result.cpu_first_minute = cpu_seconds(op.pid)
            time.sleep(max(0.0, started + args.settle - time.monotonic()))
            sampler.sample()
            result.settled_rss_mib = current_rss_mib(op.pid)
        finally:
            sampler.stop()
            result.peak_rss_mib = sampler.peak_mib
            op.stop()
        api.close()
    log(f"{label}: {result}")
    return result


def current_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def table(base: Run, other: Run) -> str:
    def ratio(a: float | None, b: float | None) -> str:
        return f"{b / a:.2f}x" if a and b is not None else "-"

    rows = [
        ("foreign Secrets / ConfigMaps", f"{base.foreign_secrets} / {base.foreign_configmaps}",
         f"{other.foreign_secrets} / {other.foreign_configmaps}", ""),
        ("resources Ready after start (s)", f"{base.ready_seconds or 0:.1f}", f"{other.ready_seconds or 0:.1f}",
         ratio(base.ready_seconds, other.ready_seconds)),
        ("operator peak RSS (MiB)", f"{base.peak_rss_mib:.0f}", f"{other.peak_rss_mib:.0f}",
         ratio(base.peak_rss_mib, other.peak_rss_mib)),
        ("operator RSS after settling (MiB)", f"{base.settled_rss_mib:.0f}", f"{other.settled_rss_mib:.0f}",
         ratio(base.settled_rss_mib, other.settled_rss_mib)),
        ("operator CPU, first minute (s)", f"{base.cpu_first_minute:.2f}", f"{other.cpu_first_minute:.2f}",
         ratio(base.cpu_first_minute, other.cpu_first_minute)),
    ]
    lines = ["| | baseline | with foreign objects | ratio |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=3000)
    parser.add_argument("--configmaps", type=int, default=1000)
    parser.add_argument("--size-kib", type=int, default=64)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--resources", type=int, default=10)
    parser.add_argument("--settle", type=float, default=90.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oto-foreign-") as tmp:
        root = Path(tmp)
        server = TokenServer(root, expires_in=3600)
        try:
            base = run("baseline", args, root, server, foreign=False)
            other = run("foreign", args, root, server, foreign=True)
        finally:
            server.stop()
    print(table(base, other))
    if args.json:
        args.json.write_text(json.dumps([asdict(base), asdict(other)], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
