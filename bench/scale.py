"""The scale benchmark (issue 7 item 4): one operator process, N resources, a real API server, a fast token endpoint.

Run from the repository root::

    .venv/bin/python bench/scale.py                 # N = 100, 1000, 10000 (about 20-25 min on 2 cores)
    .venv/bin/python bench/scale.py --sizes 100,1000

For each N, on a fresh envtest control plane (etcd + kube-apiserver on 127.0.0.1, no controller manager) and
against ``bench/tokenserver.py`` (HTTPS on 127.0.0.1, a CA bundle from one shared ConfigMap):

1. start the operator (``python -m oauth_token_operator run``, cluster-wide, default settings) as it runs when
   installed: as the ServiceAccount of ``deploy/`` with exactly the install's ClusterRole, authenticated by a
   bound token from the TokenRequest API (``--auth admin`` runs it with envtest's admin client certificate, as
   the benchmark did before; the API server verifies a certificate chain on every request, ~10 % of its CPU);
2. create N credentials Secrets and N OAuthClientCredentials (one Secret per resource, created just before its
   resource, 16 threads) and watch until every resource is Ready=True: "create -> all Ready";
3. list the resources once (each one's ``status.nextRefreshTime``), then measure a steady window of ``--window``
   seconds (longer than one refresh interval, so every resource refreshes at least once): API requests from the
   API server's own ``apiserver_request_total`` (everything the operator sends, its watches included), token requests
   from the token server, operator CPU from ``/proc/<pid>/stat``; the lateness of each resource's first refresh
   in the window against the ``nextRefreshTime`` listed before it;
4. stop the operator, list the schedules, start it again and count token requests for 60 s: "premature" are
   requests for resources whose listed ``nextRefreshTime`` had not come yet (target 0); "due" ones had;
5. tear everything down.

Only the benchmark touches the API server besides the operator, and it does nothing during the steady window but
read ``/metrics`` (not a resource request). The API server's own background requests (leases, APF, ...) are shown
apart as "apiserver-internal" and left out of the per-refresh figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.support.envtest import EnvTest, assets_dir  # noqa: E402
from tests.support.kube import Kube  # noqa: E402
from tests.support.manifests import Applier, service_account_token  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402

GROUP, VERSION, PLURAL = "oauth-token-operator.dev", "v1alpha1", "oauthclientcredentials"
NAMESPACE = "bench"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE", "APPLY"}
#: Resources the operator (or Kopf, for peering) uses; all else in apiserver_request_total is the API server itself.
OPERATOR_RESOURCES = {
    "secrets",
    "configmaps",
    "oauthclientcredentials",
    "events",
    "customresourcedefinitions",
    "kopfpeerings",
    "clusterkopfpeerings",
    "namespaces",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Every operator process started, so that a failing run stops them too (stop() is idempotent).
OPERATORS: list[OperatorProcess] = []


# ------------------------------------------------------------------------------------------- helpers

AUTH_LABELS = {
    "admin": "envtest admin (client certificate)",
    "service-account": "the install's ServiceAccount (bound token, the install's ClusterRole)",
}
#: The install's own ServiceAccount and cluster-wide RBAC (generated from the chart's one RBAC definition).
INSTALL_FILES = ("base/namespace.yaml", "base/serviceaccount.yaml", "rbac/cluster/clusterrole.yaml",
                 "rbac/cluster/clusterrolebinding.yaml")


def operator_kubeconfig(env: EnvTest, api: Any, workdir: Path, auth: str) -> Path:
    """The kubeconfig the operator runs with: envtest's admin, or the installed ServiceAccount's bound token
    (the e2e install tests' helpers; valid for longer than any size's run)."""
    if auth == "admin":
        return env.kubeconfig
    docs = [doc for name in INSTALL_FILES for doc in yaml.safe_load_all((REPO / "deploy" / name).read_text())]
    Applier(api, workdir).apply(docs)
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]
    token = service_account_token(Kube(env.kubeconfig), sa["namespace"], sa["name"], expiration_seconds=4 * 3600)
    return env.kubeconfig_for_token(token, workdir / "operator.kubeconfig")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def create_resource(core: Any, custom: Any, name: str, token_url: str, *, client_secret: str) -> None:
    """One credentials Secret and one OAuthClientCredential pointing at ``token_url`` over HTTPS (CA from the
    shared ``bench-ca`` ConfigMap). Each response is read: an unread urllib3 response keeps its connection out
    of the pool, and every next request would open a new TLS connection."""
    _ = core.create_namespaced_secret(
        NAMESPACE,
        {
            "metadata": {"name": f"{name}-client"},
            "type": "Opaque",
            "stringData": {"client_id": name, "client_secret": client_secret},
        },
        _preload_content=False,
    ).data
    _ = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "OAuthClientCredential",
            "metadata": {"name": name},
            "spec": {
                "tokenURL": token_url,
                "clientCredentialsSecretRef": {"name": f"{name}-client"},
                "tls": {"caBundleRef": {"kind": "ConfigMap", "name": "bench-ca"}},
                "target": {"secretName": f"{name}-token"},
            },
        },
        _preload_content=False,
    ).data


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a serving certificate for 127.0.0.1: (ca, cert, key), from the tests' PKI."""
    from tests.support.pki import TestCA

    ca = TestCA(directory, common_name="bench CA")
    server = ca.issue_server_cert(hosts=("127.0.0.1",))
    return ca.cert_path, server.cert_path, server.key_path


class TokenServer:
    def __init__(self, workdir: Path, expires_in: int, status: int = 200) -> None:
        self.ca, cert, key = make_tls(workdir)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "tokenserver.py"),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--expires-in",
                str(expires_in),
                "--status",
                str(status),
            ],
            stdout=subprocess.PIPE,
            stderr=(workdir / "tokenserver.log").open("wb"),
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"token server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"https://127.0.0.1:{self.port}/token"
        self._ctx = ssl.create_default_context(cafile=str(self.ca))

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stats(self, since: float = 0.0) -> dict[str, list[float]]:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{self.port}/_stats?since={since}", context=self._ctx, timeout=60
        ) as resp:
            data: dict[str, list[float]] = json.loads(resp.read())["requests"]
            return data

    def configure(self, **values: int) -> None:
        req = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/_config",
            data=json.dumps(values).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, context=self._ctx, timeout=10):  # noqa: S310 (a fixed https URL)
            pass

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class ProcSampler:
    """Samples VmRSS/VmHWM of a pid every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.peak_rss_kib = 0
        self.hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    def sample(self) -> None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
                elif line.startswith("VmHWM:"):
                    self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self.peak_rss_kib, self.hwm_kib) / 1024


def resources_under_watch(port: int) -> int:
    """Resources the operator has run a cycle for: the sum of its ``oauth_token_operator_resources`` gauge."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("oauth_token_operator_resources{")))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
        except (OSError, ValueError):
            pass
    return total


def apiserver_requests(api: Any) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource])."""
    resp = api.rest_client.pool_manager.request("GET", api.configuration.host + "/metrics", preload_content=True)
    text = resp.data.decode()
    out: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        series, _, value = line.rpartition(" ")
        labels = dict(part.split("=", 1) for part in _split_labels(series[series.index("{") + 1 : -1]))
        resource = labels.get("resource", "").strip('"')
        sub = labels.get("subresource", "").strip('"')
        if not resource:
            continue
        out[labels.get("verb", "").strip('"'), resource + (f"/{sub}" if sub else "")] += int(float(value))
    return out


def _split_labels(text: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def split_requests(delta: Counter[tuple[str, str]]) -> dict[str, float]:
    res: dict[str, float] = {"reads": 0, "writes": 0, "internal": 0}
    for (verb, resource), n in delta.items():
        if resource.split("/")[0] not in OPERATOR_RESOURCES:
            res["internal"] += n
        elif verb.upper() in WRITE_VERBS:
            res["writes"] += n
        else:
            res["reads"] += n
    return res


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def list_schedules(custom: Any) -> dict[str, tuple[float | None, bool]]:
    """client_id -> (nextRefreshTime, ready) for every resource in the benchmark namespace."""
    resp = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _preload_content=False)
    items = json.loads(resp.data)["items"]
    out = {}
    for item in items:
        status = item.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        out[item["metadata"]["name"]] = (parse_time(status.get("nextRefreshTime")), ready)
    return out


def refresh_clusters(times: list[float], gap: float = 5.0) -> int:
    """Requests closer together than ``gap`` seconds belong to the same refresh."""
    clusters, last = 0, None
    for t in sorted(times):
        if last is None or t - last > gap:
            clusters += 1
        last = t
    return clusters


# --------------------------------------------------------------------------------------------- one size


@dataclass
class Result:
    n: int
    ready_seconds: float | None = None
    ready_count: int = 0
    create_seconds: float = 0.0
    window: float = 0.0
    refreshes: int = 0
    token_requests: int = 0
    reads: float = 0
    writes: float = 0
    internal: float = 0
    by_verb: dict[str, int] = field(default_factory=dict)
    cpu_window: float = 0.0
    cpu_apiserver: float = 0.0
    cpu_foreign: float = 0.0
    peak_rss_mib: float = 0.0
    restart_peak_rss_mib: float = 0.0
    late_max: float | None = None
    late_median: float | None = None
    late_p99: float | None = None
    late_samples: int = 0
    missed: int = 0
    restart_requests: int = 0
    restart_premature: int = 0
    restart_due: int = 0
    restart_kube: dict[str, float] = field(default_factory=dict)
    restart_ready_seconds: float | None = None
    restart_watch_seconds: float | None = None
    restart_watched: int = 0
    cpu_startup: float = 0.0
    cpu_to_ready: float | None = None
    #: kube-apiserver + etcd over the same span (with --precreate: from the operator's start)
    cpu_servers_to_ready: float | None = None
    create_phase: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_size(n: int, args: argparse.Namespace, assets: Path, server: TokenServer, root: Path) -> Result:
    from kubernetes import client, watch

    result = Result(n=n)
    workdir = root / f"n{n}"
    workdir.mkdir()
    log(f"N={n}: starting envtest")
    with EnvTest(workdir / "envtest", assets, crd_dir=REPO / "crds", controller_manager=False) as env:
        api = env.api_client()
        api.configuration.connection_pool_maxsize = args.threads + 4
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = args.threads + 4
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": "bench-ca"}, "data": {"ca.crt": server.ca.read_text()}}
        )
        env_vars = {"OAUTH_TOKEN_OPERATOR_LOG_LEVEL": "WARNING", **dict(args.operator_env)}
        kubeconfig = operator_kubeconfig(env, api, workdir, args.auth)
        op = OperatorProcess(kubeconfig, workdir, env=env_vars, name="operator")
        OPERATORS.append(op)
        prefix = f"n{n}-"

        # -- create -> all Ready ---------------------------------------------------------------------
        ready: set[str] = set()
        all_ready = threading.Event()
        stop_watch = threading.Event()

        def watcher() -> None:
            w = watch.Watch()
            rv = None
            while not stop_watch.is_set():
                try:
                    for ev in w.stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        NAMESPACE,
                        PLURAL,
                        resource_version=rv,
                        timeout_seconds=5,
                    ):
                        obj = ev["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        conds = (obj.get("status") or {}).get("conditions") or []
                        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                            ready.add(obj["metadata"]["name"])
                            if len(ready) >= n:
                                all_ready.set()
                        if stop_watch.is_set():
                            w.stop()
                            break
                except Exception as exc:  # 410 Gone etc.: relist
                    log(f"watch restarted: {exc!r:.100}")
                    rv = None

        def create(i: int) -> None:
            name = f"{prefix}{i:05d}"
            create_resource(core, custom, name, server.url, client_secret="s3cret-" + name)

        def create_all() -> float:
            log(f"N={n}: creating {n} Secrets + {n} OAuthClientCredentials ({args.threads} threads)")
            started = time.time()
            with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(create, range(n)))
            return time.time() - started

        if args.precreate:
            result.create_seconds = create_all()
        m0 = apiserver_requests(api)
        servers = {p.name: p.popen.pid for p in env._procs}
        server_cpu0 = {name: cpu_seconds(p) for name, p in servers.items()}
        watch_thread = threading.Thread(target=watcher, daemon=True)
        watch_thread.start()
        time.sleep(0.5)
        t_start = time.time()
        op.start()
        pid = op._proc.pid  # type: ignore[union-attr]
        sampler = ProcSampler(pid)
        result.cpu_startup = cpu_seconds(pid)  # start-up until healthy: imports, login, first listings
        if not args.precreate:
            t_start = time.time()
            result.create_seconds = create_all()
        log(f"N={n}: created in {result.create_seconds:.1f}s; waiting for Ready")
        deadline = t_start + args.ready_timeout
        while not all_ready.wait(5):
            log(f"N={n}: {len(ready)}/{n} Ready, operator RSS {sampler.peak_rss_kib / 1024:.0f} MiB")
            if time.time() > deadline:
                result.notes.append(f"only {len(ready)}/{n} Ready after {args.ready_timeout:.0f}s")
                break
        result.ready_count = len(ready)
        if all_ready.is_set():
            result.ready_seconds = time.time() - t_start
            result.cpu_to_ready = cpu_seconds(pid) - result.cpu_startup
            result.cpu_servers_to_ready = sum(cpu_seconds(p) - server_cpu0[name] for name, p in servers.items())
        stop_watch.set()
        m1 = apiserver_requests(api)
        result.create_phase = split_requests(m1 - m0)
        log(f"N={n}: {len(ready)}/{n} Ready in {time.time() - t_start:.1f}s")
        watch_thread.join(timeout=10)
        time.sleep(args.settle)

        # -- steady window -----------------------------------------------------------------------------
        schedules = list_schedules(custom)
        t0 = time.time()
        ours = [pid, os.getpid(), server.pid, *(p.popen.pid for p in env._procs)]
        apiserver_pid = next(p.popen.pid for p in env._procs if p.name == "kube-apiserver")
        b0, o0, s0 = machine_busy_seconds(), tree_cpu_seconds(ours), cpu_seconds(apiserver_pid)
        a0, c0 = apiserver_requests(api), cpu_seconds(pid)
        log(f"N={n}: steady window of {args.window:.0f}s")
        time.sleep(args.window)
        a1, c1 = apiserver_requests(api), cpu_seconds(pid)
        t1 = time.time()
        b1, o1, s1 = machine_busy_seconds(), tree_cpu_seconds(ours), cpu_seconds(apiserver_pid)
        result.cpu_apiserver = s1 - s0
        result.cpu_foreign = max(0.0, (b1 - b0) - (o1 - o0))
        stats = server.stats(since=t0)
        stats = {c: [t for t in ts if t <= t1] for c, ts in stats.items() if c.startswith(prefix)}
        result.window = t1 - t0
        result.cpu_window = c1 - c0
        result.token_requests = sum(len(ts) for ts in stats.values())
        result.refreshes = sum(refresh_clusters(ts) for ts in stats.values())
        delta = a1 - a0
        for key, value in split_requests(delta).items():
            setattr(result, key, value)
        result.by_verb = {
            f"{v} {r}": c for (v, r), c in sorted(delta.items()) if c and r.split("/")[0] in OPERATOR_RESOURCES
        }
        lateness = []
        for name, (nrt, _) in schedules.items():
            if nrt is None or nrt < t0 or nrt > t1 - 10:
                continue
            after = [t for t in stats.get(name, []) if t >= nrt - 30]
            if after:
                lateness.append(min(after) - nrt)
            else:
                result.missed += 1
                lateness.append(t1 - nrt)
        if lateness:
            lateness.sort()
            result.late_max = lateness[-1]
            result.late_median = statistics.median(lateness)
            result.late_p99 = lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))]
            result.late_samples = len(lateness)
        sampler.sample()
        result.peak_rss_mib = sampler.peak_mib
        sampler.stop()
        log(
            f"N={n}: window: {result.token_requests} token requests, {result.refreshes} refreshes, "
            f"{result.writes:.0f} writes, {result.reads:.0f} reads, CPU {result.cpu_window:.1f}s"
        )

        # -- restart -----------------------------------------------------------------------------------
        op.stop()
        before = list_schedules(custom)
        a2 = apiserver_requests(api)
        op2 = OperatorProcess(kubeconfig, workdir, env=env_vars, name="operator-restart")
        OPERATORS.append(op2)
        t_restart = time.time()
        op2.start()
        sampler2 = ProcSampler(op2._proc.pid)  # type: ignore[union-attr]
        log(f"N={n}: operator restarted; counting token requests for {args.restart_window:.0f}s")
        # "back under watch": every resource has had its first cycle (it is in the operator's resources gauge)
        while time.time() < t_restart + args.restart_window:
            if result.restart_watch_seconds is None:
                result.restart_watched = resources_under_watch(op2.metrics_port)
                if result.restart_watched >= n:
                    result.restart_watch_seconds = time.time() - t_restart
            time.sleep(0.5)
        a3 = apiserver_requests(api)
        stats = {c: ts for c, ts in server.stats(since=t_restart).items() if c.startswith(prefix)}
        for name, ts in stats.items():
            for t in ts:
                if t > t_restart + args.restart_window:
                    continue
                result.restart_requests += 1
                nrt = before.get(name, (None, False))[0]
                if nrt is not None and t < nrt - 1:
                    result.restart_premature += 1
                else:
                    result.restart_due += 1
        result.restart_kube = split_requests(a3 - a2)
        sampler2.stop()
        result.restart_peak_rss_mib = sampler2.peak_mib
        op2.stop()
        api.close()
    shutil.rmtree(workdir / "envtest" / "etcd", ignore_errors=True)
    return result


# ---------------------------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def table(results: list[Result], args: argparse.Namespace) -> str:
    rows = [
        ("resources (N)", lambda r: f"{r.n:,}"),
        (
            "create -> all Ready [s] (target 10k < 120)",
            lambda r: fmt(r.ready_seconds) if r.ready_seconds is not None else f"{r.ready_count}/{r.n} ready",
        ),
        ("  of which creating 2N objects [s]", lambda r: fmt(r.create_seconds)),
        ("steady window [s]", lambda r: fmt(r.window, ".0f")),
        ("  refreshes in window", lambda r: f"{r.refreshes:,}"),
        (
            "  token requests / refresh (target <= 1)",
            lambda r: fmt(r.token_requests / r.refreshes if r.refreshes else None, ".2f"),
        ),
        (
            "  kube writes / refresh (target <= 2)",
            lambda r: fmt(r.writes / r.refreshes if r.refreshes else None, ".2f"),
        ),
        ("  kube reads / refresh", lambda r: fmt(r.reads / r.refreshes if r.refreshes else None, ".2f")),
        ("  kube requests in window: reads/writes", lambda r: f"{r.reads:.0f}/{r.writes:.0f}"),
        ("  apiserver-internal requests (excluded)", lambda r: f"{r.internal:.0f}"),
        ("  operator CPU / refresh [ms]", lambda r: fmt(1000 * r.cpu_window / r.refreshes if r.refreshes else None)),
        ("  operator CPU, share of 1 core [%]", lambda r: fmt(100 * r.cpu_window / r.window if r.window else None)),
        (
            "  kube-apiserver CPU, share of 1 core [%]",
            lambda r: fmt(100 * r.cpu_apiserver / r.window if r.window else None),
        ),
        (
            "  CPU used by processes outside the benchmark [cores]",
            lambda r: fmt(r.cpu_foreign / r.window if r.window else None, ".2f"),
        ),
        ("  refresh lateness median [s]", lambda r: fmt(r.late_median, ".2f")),
        ("  refresh lateness p99 / max [s]", lambda r: f"{fmt(r.late_p99, '.2f')} / {fmt(r.late_max, '.2f')}"),
        ("  lateness samples (missed)", lambda r: f"{r.late_samples:,} ({r.missed})"),
        (
            "operator CPU create -> all Ready [s] (excl. start-up)",
            lambda r: fmt(r.cpu_to_ready),
        ),
        (
            "  CPU per created resource [ms] (target <= 6.5)",
            lambda r: fmt(1000 * r.cpu_to_ready / r.n if r.cpu_to_ready is not None else None),
        ),
        ("  operator start-up until healthy [CPU s]", lambda r: fmt(r.cpu_startup)),
        ("kube-apiserver + etcd CPU create -> all Ready [s]", lambda r: fmt(r.cpu_servers_to_ready)),
        (
            "  per created resource [ms]",
            lambda r: fmt(1000 * r.cpu_servers_to_ready / r.n if r.cpu_servers_to_ready is not None else None),
        ),
        (
            # The machine's speed moves both alike (±30 % between runs of one commit): compare commits by this.
            "  operator CPU / kube-apiserver + etcd CPU",
            lambda r: fmt(
                r.cpu_to_ready / r.cpu_servers_to_ready if r.cpu_to_ready and r.cpu_servers_to_ready else None, ".2f"
            ),
        ),
        ("peak RSS, first run [MiB] (target 10k < 250)", lambda r: fmt(r.peak_rss_mib, ".0f")),
        (f"restart: token requests in {args.restart_window:.0f}s", lambda r: f"{r.restart_requests:,}"),
        ("  premature (target 0) / due", lambda r: f"{r.restart_premature:,} / {r.restart_due:,}"),
        (
            "  kube reads/writes in that minute",
            lambda r: f"{r.restart_kube.get('reads', 0):.0f}/{r.restart_kube.get('writes', 0):.0f}",
        ),
        (
            "  API reads per resource (target <= 1)",
            lambda r: fmt(r.restart_kube.get("reads", 0) / r.n, ".2f"),
        ),
        (
            "  time until every resource is back under watch [s]",
            lambda r: fmt(r.restart_watch_seconds)
            if r.restart_watch_seconds is not None
            else f"{r.restart_watched}/{r.n} in {args.restart_window:.0f}s",
        ),
        ("  peak RSS after restart [MiB]", lambda r: fmt(r.restart_peak_rss_mib, ".0f")),
        (
            "create phase kube reads/writes (incl. 2N bench creates)",
            lambda r: f"{r.create_phase.get('reads', 0):.0f}/{r.create_phase.get('writes', 0):.0f}",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    cols = [[get(r) for r in results] for _, get in rows]
    colw = max(12, *(len(c) for col in cols for c in col))
    lines = []
    for (label, _), col in zip(rows, cols, strict=True):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{c:>{colw}}" for c in col))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Scale benchmark of oauth-token-operator (see bench/README.md).")
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated N (default: %(default)s)")
    parser.add_argument(
        "--lifetime",
        type=int,
        default=240,
        help="expires_in of every token [s]; refresh after ~2/3 (default: %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=175.0,
        help="steady measurement window [s], > one refresh interval (default: %(default)s)",
    )
    parser.add_argument("--restart-window", type=float, default=60.0, help="count after restart [s]")
    parser.add_argument("--settle", type=float, default=3.0, help="pause between all Ready and the window [s]")
    parser.add_argument("--threads", type=int, default=16, help="threads creating objects (default: %(default)s)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="give up waiting for Ready [s]")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        type=lambda s: tuple(s.split("=", 1)),
        metavar="K=V",
        help="extra environment for the operator (e.g. OAUTH_TOKEN_OPERATOR_KUBE_CLIENT_THREADS=32); repeatable",
    )
    parser.add_argument(
        "--precreate",
        action="store_true",
        help="create all objects before starting the operator; 'create -> all Ready' then counts "
        "from the operator's start (its cold-start throughput, without the creation load)",
    )
    parser.add_argument(
        "--auth",
        choices=("service-account", "admin"),
        default="service-account",
        help="the operator runs as the install's ServiceAccount under its ClusterRole (default), or with envtest's "
        "admin client certificate",
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) for inspection")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    started = time.time()
    root = Path(tempfile.mkdtemp(prefix="oto-bench-"))
    assets = assets_dir()
    server = TokenServer(root, expires_in=args.lifetime)
    results = []
    try:
        for n in sizes:
            results.append(run_size(n, args, assets, server, root))
            log("results so far:\n" + table(results, args))
    finally:
        for op in OPERATORS:
            op.stop(kill=True)
        server.stop()
        if args.keep:
            log(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print(
        f"oauth-token-operator scale benchmark — nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"{platform.machine()}, token lifetime {args.lifetime}s (refresh at ~2/3), one operator process, "
        f"1 credentials Secret per resource{' (all created before the operator started)' if args.precreate else ''}, "
        "tokens over HTTPS (CA from one shared ConfigMap); "
        f"operator authenticated as {AUTH_LABELS[args.auth]}; "
        f"extra operator env: {dict(args.operator_env) or 'none'}"
    )
    print(table(results, args))
    for r in results:
        for note in r.notes:
            print(f"note N={r.n}: {note}")
        print(f"N={r.n} window requests by verb/resource: " + ", ".join(f"{k}={v}" for k, v in r.by_verb.items()))
    print(f"total run time {time.time() - started:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
