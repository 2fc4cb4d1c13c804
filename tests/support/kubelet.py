"""A real kubelet on containerd beside the test API server (:mod:`tests.support.envtest`): real pods, no registry.

Why: the product exists so that pods read a fresh token from a mounted Secret. What a consumer sees (how long a
Secret change takes to reach the file, that ``subPath`` mounts and environment variables never change) is the
kubelet's behaviour, so the real-pod tier (``tests/pods/``) runs the real kubelet instead of assuming it.

How it stays off the host (measured on Debian 12, 2 cores, root; see issue 15):

* containerd and the kubelet run in a private mount namespace and their own PID namespace
  (``unshare --mount --pid --fork --mount-proc --kill-child``, under ``setpriv --pdeathsig KILL``): when the
  node stops, or the test process dies however it dies, every process of the node dies with it, and every
  mount it made (Secret tmpfs, container root filesystems, overlays) vanishes with the namespace.
* Inside, overlays on ``/var`` and ``/run`` (upper layers in the node's temporary directory) catch the paths
  both hard-code (``/run/containerd/s/...`` shim sockets, ``/var/log/pods``, ...), and bind-mounted stand-in
  files cover the sysctls the kubelet sets at start (:data:`KUBELET_SYSCTLS`: ``vm.overcommit_memory``,
  ``kernel.panic``, ``kernel.panic_on_oops``, ...), which it would otherwise rewrite on the host (or, with
  ``protectKernelDefaults``, refuse to start).
* ``PATH`` has no ``sbin``, so the kubelet finds no ``iptables`` and adds no rules.
* Kubelet: ``cgroupfs`` driver, ``cgroupsPerQOS: false``, ``enforceNodeAllocatable: []``, ``failSwapOn:
  false``, ``failCgroupV1: false`` (hybrid cgroup hosts), ``maxOpenFiles: 20000``, ``oomScoreAdj: 0``, every
  listener on 127.0.0.1, root, certificate and volume-plugin directories in the temporary directory; its
  identity is a ServiceAccount bound to ``system:node``. containerd: ``restrict_oom_score_adj``,
  ``disable_apparmor``, ``SystemdCgroup = false``, sockets and state in the temporary directory, CNI
  directories pointing there too (hostNetwork pods need no CNI).
* Images: one layer holding Debian's static ``/bin/busybox`` (written here as a docker-save tar), imported with
  ``ctr -n k8s.io images import``; it is both the sandbox ("pause") image and the pods' image
  (``imagePullPolicy: Never``, see :func:`busybox_container`).
* Stopping: the kubelet first (so it restarts nothing), then every container task is killed and deleted
  through containerd (``runc delete`` removes its cgroups), then containerd, then the namespace; the pods'
  parent cgroup (``/k8s.io``, when the node created it) is removed and the temporary directory deleted.
  :func:`host_state` records what a user would call "the host" (sysctls, iptables rules, mounts, cgroups,
  the well-known runtime paths; :mod:`tests.support.hoststate`) so a test can prove that before equals after.

Pods on this node must name it (``spec.nodeName``: no scheduler), set ``automountServiceAccountToken: false``,
and their namespace needs a ``default`` ServiceAccount (:meth:`KubeletNode.prepare_namespace`).

Binaries come from ``hack/kubelet.sh`` (apt-get for containerd, runc, busybox-static; the kubelet built at the
API server's version). :class:`KubeletUnavailable` says what is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from .envtest import EnvTest
from .hoststate import cgroup_dirs
from .kube import Kube

__all__ = [
    "IMAGE",
    "KUBELET_SYSCTLS",
    "KubeletError",
    "KubeletNode",
    "KubeletUnavailable",
    "busybox_container",
    "busybox_image_tar",
    "kubelet_dir",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBELET_SCRIPT = REPO_ROOT / "hack" / "kubelet.sh"
_EXIT_UNAVAILABLE = 3

#: The image every pod (and every sandbox) of the node runs: only /bin/busybox and its applets.
IMAGE = "oto.local/busybox:1"
BUSYBOX = Path("/bin/busybox")
#: What the node's processes find on PATH: no sbin, so no iptables (the kubelet then adds no rules).
NODE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The sysctls the kubelet sets at start (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables);
#: each gets a stand-in file inside the node's mount namespace.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
class KubeletUnavailable(RuntimeError):
    """The node cannot run on this machine (not Linux, not root, no apt-get or Go); ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KubeletError(RuntimeError):
    """Building, starting or stopping the node failed."""


# ---------------------------------------------------------------------------------------------------------------
# binaries


def kubelet_dir(*, timeout: float = 3600.0) -> Path:
    """The directory holding ``kubelet`` (``hack/kubelet.sh``: installs containerd, runc and busybox-static,
    builds the kubelet on first use). Raises :class:`KubeletUnavailable` when it cannot be had here."""
    if os.name != "posix" or not Path("/proc/self/ns/mnt").exists():
        raise KubeletUnavailable("a kubelet needs Linux")
    if os.geteuid() != 0:
        raise KubeletUnavailable("the kubelet tier runs as root (mount namespaces, containers)")
    for tool in ("unshare", "setpriv", "bash", "flock"):
        if shutil.which(tool) is None:
            raise KubeletUnavailable(f"the kubelet tier needs {tool} (util-linux)")
    proc = subprocess.run(["bash", str(KUBELET_SCRIPT)], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode == _EXIT_UNAVAILABLE:
        reason = [line for line in proc.stderr.splitlines() if "UNAVAILABLE: " in line]
        raise KubeletUnavailable(reason[-1].split("UNAVAILABLE: ", 1)[1] if reason else proc.stderr[-2000:])
    if proc.returncode != 0:
        raise KubeletError(f"{KUBELET_SCRIPT} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    directory = Path(proc.stdout.strip().splitlines()[-1])
    if not (directory / "kubelet").exists():
        raise KubeletError(f"{KUBELET_SCRIPT} reported {directory}, which holds no kubelet")
    for binary in ("containerd", "ctr", "containerd-shim-runc-v2", "runc"):
        if shutil.which(binary, path=NODE_PATH) is None:
            raise KubeletError(f"{binary} is not on {NODE_PATH} after {KUBELET_SCRIPT}")
    return directory


def busybox_image_tar(path: Path, *, busybox: Path = BUSYBOX, reference: str = IMAGE) -> Path:
    """Write a docker-save tar of a one-layer image: ``/bin/busybox`` and a symlink per applet, ``/tmp``.

    Its entrypoint sleeps until SIGTERM, which is what a sandbox ("pause") container must do; pods give their
    own ``command``."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", target: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, 0, len(data), target
            tar.addfile(info, io.BytesIO(data) if data else None)

        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o555),
                                ("sys", 0o555), ("dev", 0o755)):
            add(directory, tarfile.DIRTYPE, mode)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox")
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"],
                   "Entrypoint": ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "tests/support/kubelet.py busybox_image_tar"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    with tarfile.open(path, mode="w") as tar:
        for name, data in ((f"{diff_id}/layer.tar", layer_bytes), (config_name, config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return path


def busybox_container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container of :data:`IMAGE` running ``script`` with ``/bin/sh -c``."""
    return {"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", script],
            **extra}


# ---------------------------------------------------------------------------------------------------------------
# the node


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_running: weakref.WeakSet[KubeletNode] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # a test run that forgets stop() still leaves no node behind
    for node in list(_running):
        with contextlib.suppress(Exception):
            node.stop()


# The node's init (PID 1 of its PID namespace, in its own mount namespace). $1 is the node's directory.
_NODE_SCRIPT = r"""
set -u
T="$1"
. "$T/node.env"
log() { printf '%s node: %s\n' "$(date +%T.%N)" "$*"; }
for d in var run; do
  mkdir -p "$T/overlay/$d/upper" "$T/overlay/$d/work"
  mount -t overlay "oto-node-$d" -o "lowerdir=/$d,upperdir=$T/overlay/$d/upper,workdir=$T/overlay/$d/work" "/$d" \
    || { log "overlay on /$d failed"; exit 1; }
done
mkdir -p "$T/sysctl"
for k in $KUBELET_SYSCTLS; do
  [ -e "/proc/sys/$k" ] || continue
  f="$T/sysctl/$(echo "$k" | tr / .)"
  cat "/proc/sys/$k" >"$f"
  mount --bind "$f" "/proc/sys/$k" || { log "stand-in for $k failed"; exit 1; }
done
containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 &
containerd_pid=$!
ctr() { command ctr --address "$T/containerd/containerd.sock" -n k8s.io "$@"; }
for _ in $(seq 300); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr images import "$T/image.tar" >"$T/import.log" 2>&1 || { log "image import failed"; cat "$T/import.log"; exit 1; }
"$KUBELET" $KUBELET_ARGS >"$T/kubelet.log" 2>&1 &
kubelet_pid=$!
log "containerd $containerd_pid, kubelet $kubelet_pid"
touch "$T/started"
while [ ! -e "$T/stop" ]; do
  kill -0 "$kubelet_pid" 2>/dev/null || { log "kubelet exited"; break; }
  kill -0 "$containerd_pid" 2>/dev/null || { log "containerd exited"; break; }
  sleep 0.2
done
log "stopping"
kill -TERM "$kubelet_pid" 2>/dev/null; wait "$kubelet_pid" 2>/dev/null
for id in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
for _ in $(seq 100); do
  left=$(ctr tasks ls -q 2>/dev/null | while read -r id; do ctr tasks delete "$id" >/dev/null 2>&1 || echo "$id"; done)
  [ -z "$left" ] && break
  sleep 0.1
done
log "tasks left: $(ctr tasks ls -q 2>/dev/null | wc -l)"
kill -TERM "$containerd_pid" 2>/dev/null; wait "$containerd_pid" 2>/dev/null
log "stopped"
"""


@dataclass(eq=False)
class KubeletNode:
    """containerd + kubelet registered with ``env`` as node ``name``; see the module docstring.

    ``sync_frequency`` is the kubelet's ``syncFrequency`` (how often each pod is re-synced, which is also when
    its Secret volumes are refreshed; the kubelet adds up to 50 % jitter).
    """

    env: EnvTest
    kubelet: Path
    sync_frequency: str = "1m"
    name: str = field(default_factory=lambda: f"oto-node-{uuid.uuid4().hex[:8]}")
    start_timeout: float = 120.0
    workdir: Path | None = None
    healthz_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _cgroups_before: frozenset[str] = field(default_factory=frozenset, repr=False)

    def __enter__(self) -> KubeletNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, component: str = "kubelet", tail: int = 8000) -> str:
        """Tail of ``kubelet``, ``containerd`` or ``node`` (the init script's) log."""
        if self.workdir is None:
            return ""
        path = self.workdir / f"{component}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else f"<no {path}>"

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            raise KubeletError("node already started")
        _running.add(self)
        try:
            # Not under /var or /run (overlaid inside the node), and not a pytest tmp dir: stop() deletes it.
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir="/tmp"))
            self._cgroups_before = cgroup_dirs()
            self._write_files(self._identity_kubeconfig())
            log = (self.workdir / "node.log").open("wb")
            try:
                self._proc = subprocess.Popen(
                    ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--mount", "--propagation", "private",
                     "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL",
                     "bash", "-c", _NODE_SCRIPT, "node", str(self.workdir)],
                    env={"PATH": NODE_PATH, "HOME": str(self.workdir), "LANG": "C.UTF-8"},
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                log.close()
            self._wait_registered()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 60.0) -> None:
        """Stop everything and delete the node's directory and API objects. Idempotent."""
        proc, workdir = self._proc, self.workdir
        if proc is not None:
            assert workdir is not None
            (workdir / "stop").touch()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()  # --kill-child: the namespace's init dies, and with it every process in it
                proc.wait(10)
            self._proc = None
        self._remove_leftover_cgroups()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            self.workdir = None
        self._delete_api_objects()
        _running.discard(self)

    # -- pods ----------------------------------------------------------------------------------------------

    def prepare_namespace(self, namespace: str) -> None:
        """Make ``namespace`` ready for pods on this node: its ``default`` ServiceAccount (normally made by a
        controller; created here when missing)."""
        kube = Kube(self.env.kubeconfig)
        try:
            kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        finally:
            kube.close()

    def pod_spec(self, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """A pod ``spec`` for this node: named node, host network, no ServiceAccount token, quick to stop."""
        return {"nodeName": self.name, "hostNetwork": True, "dnsPolicy": "Default",
                "automountServiceAccountToken": False, "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 1, "restartPolicy": "Never", "containers": containers, **extra}

    # -- internals -----------------------------------------------------------------------------------------

    def _identity_kubeconfig(self) -> Path:
        """A kubeconfig for ServiceAccount kube-system/<name>, bound to the ``system:node`` ClusterRole."""
        assert self.workdir is not None
        kube = Kube(self.env.kubeconfig)
        try:
            kube.core.create_namespaced_service_account("kube-system", {"metadata": {"name": self.name}})
            kube.rbac.create_cluster_role_binding({
                "metadata": {"name": self.name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
                "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": "kube-system"}]})
            token: str = kube.core.create_namespaced_service_account_token(
                self.name, "kube-system", {"spec": {"expirationSeconds": 86400}}).status.token
        finally:
            kube.close()
        return self.env.kubeconfig_for_token(token, self.workdir / "kubelet.kubeconfig")

    def _write_files(self, kubeconfig: Path) -> None:
        t = self.workdir
        assert t is not None
        for directory in ("containerd", "cni/bin", "cni/conf", "kubelet", "kubelet-certs", "volume-plugins"):
            (t / directory).mkdir(parents=True, exist_ok=True)
        busybox_image_tar(t / "image.tar")
        (t / "containerd.toml").write_text(textwrap.dedent(f"""\
            version = 2
            root = "{t}/containerd/root"
            state = "{t}/containerd/state"
            oom_score = 0
            # opt would create /opt/containerd; the others are snapshotters and tracing nobody here needs.
            disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
                                "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                                "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                                "io.containerd.internal.v1.tracing"]
            [grpc]
              address = "{t}/containerd/containerd.sock"
            [ttrpc]
              address = "{t}/containerd/containerd.sock.ttrpc"
            [debug]
              address = ""
            [metrics]
              address = ""
            [plugins."io.containerd.grpc.v1.cri"]
              sandbox_image = "{IMAGE}"
              restrict_oom_score_adj = true
              disable_apparmor = true
              enable_selinux = false
              stream_server_address = "127.0.0.1"
              stream_server_port = "0"
              [plugins."io.containerd.grpc.v1.cri".containerd]
                snapshotter = "overlayfs"
                default_runtime_name = "runc"
                [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
                  runtime_type = "io.containerd.runc.v2"
                  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                    SystemdCgroup = false
              [plugins."io.containerd.grpc.v1.cri".cni]
                bin_dir = "{t}/cni/bin"
                conf_dir = "{t}/cni/conf"
            """))
        self.healthz_port = _free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": _free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},  # with no authenticator, nobody gets that far
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "failCgroupV1": False,
            "maxOpenFiles": 20000,
            "oomScoreAdj": 0,
            "syncFrequency": self.sync_frequency,
            "containerRuntimeEndpoint": f"unix://{t}/containerd/containerd.sock",
            "volumePluginDir": str(t / "volume-plugins"),
            "imageGCHighThresholdPercent": 100,  # never collect the only image there is
            "imageGCLowThresholdPercent": 95,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "registerNode": True,
        }
        (t / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        args = [f"--config={t / 'kubelet.yaml'}", f"--kubeconfig={kubeconfig}", f"--root-dir={t / 'kubelet'}",
                f"--cert-dir={t / 'kubelet-certs'}", f"--hostname-override={self.name}", "--v=2"]
        (t / "node.env").write_text(f"KUBELET='{self.kubelet}'\nKUBELET_ARGS='{' '.join(args)}'\n"
                                    f"KUBELET_SYSCTLS='{' '.join(KUBELET_SYSCTLS)}'\n")

    def _wait_registered(self) -> None:
        assert self.workdir is not None and self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        kube = Kube(self.env.kubeconfig)
        try:
            while True:
                if self._proc.poll() is not None:
                    raise KubeletError(f"node {self.name} exited ({self._proc.returncode}):\n{self.logs('node')}\n"
                                       f"--- kubelet ---\n{self.logs()}\n--- containerd ---\n"
                                       f"{self.logs('containerd')}")
                if (self.workdir / "started").exists() and self._healthy():
                    try:
                        node = kube.core.read_node(self.name)
                        if node.status and node.status.node_info and node.status.node_info.kubelet_version:
                            return
                    except ApiException as exc:
                        if exc.status != 404:
                            raise
                if time.monotonic() > deadline:
                    raise KubeletError(f"node {self.name} not registered after {self.start_timeout:.0f}s:\n"
                                       f"{self.logs('node')}\n--- kubelet ---\n{self.logs()}")
                time.sleep(0.2)
        finally:
            kube.close()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.healthz_port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _remove_leftover_cgroups(self) -> None:
        """Remove the pods' parent cgroup, ``/k8s.io`` (containerd's namespace; with ``cgroupsPerQOS: false``
        the kubelet names no parent), in every hierarchy where the node created it: runc deletes each
        container's own cgroup, not that parent. rmdir only succeeds on an empty cgroup."""
        for path in sorted(cgroup_dirs() - self._cgroups_before):
            if os.path.basename(path) == "k8s.io":
                with contextlib.suppress(OSError):
                    os.rmdir(path)

    def _delete_api_objects(self) -> None:
        kube = Kube(self.env.kubeconfig)
        try:
            deletions: list[tuple[Callable[..., Any], tuple[str, ...]]] = [
                (kube.core.delete_node, (self.name,)),
                (kube.rbac.delete_cluster_role_binding, (self.name,)),
                (kube.core.delete_namespaced_service_account, (self.name, "kube-system"))]
            for delete, args in deletions:
                try:
                    delete(*args)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        finally:
            kube.close()
