"""A real Kubernetes control plane for tests ("envtest"): etcd + kube-apiserver
(+ kube-controller-manager) as local processes on 127.0.0.1.

Binaries come from ``hack/envtest-assets.sh`` (``KUBEBUILDER_ASSETS``, a cache,
or a build from source with Go). Typical use::

    with EnvTest(workdir, assets_dir()) as env:
        env.apply_crds(REPO_ROOT / "crds")
        client = env.api_client()
        ...

The API server runs with RBAC authorization, a self-generated CA, a serving
certificate, an admin client certificate (``O=system:masters``) and a service
account signing key, so the TokenRequest API works and a test can act as a
ServiceAccount via :meth:`EnvTest.kubeconfig_for_token`.

Run ``python -m tests.support.envtest`` from the repository root to start a
cluster for manual poking; it prints the kubeconfig path and runs until Ctrl-C.

Dependencies: the standard library, ``cryptography`` and ``PyYAML``; the
``kubernetes`` client is imported lazily by the helpers that need it.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import collections
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .versions import pinned

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS_SCRIPT = REPO_ROOT / "hack" / "envtest-assets.sh"

#: Controllers run by kube-controller-manager: enough for ownerReference garbage
#: collection, namespace deletion and ServiceAccounts (+ their legacy tokens).
#: (Kubernetes >= 1.27 names; the old short names are accepted aliases.)
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt ConfigMaps, as Pods expect
    "clusterrole-aggregation-controller",  # view/edit/admin pick up aggregated ClusterRoles (the chart ships two)
)

_EXIT_UNAVAILABLE = 3  # envtest-assets.sh: no assets and no way to build them


class EnvTestUnavailable(RuntimeError):
    """The control-plane binaries cannot be had on this machine (no
    ``KUBEBUILDER_ASSETS`` and no Go toolchain). ``message`` says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EnvTestError(RuntimeError):
    """Building the binaries or starting the control plane failed."""


# ---------------------------------------------------------------------------
# binaries
# ---------------------------------------------------------------------------


def pinned_k8s_version() -> str:
    """The Kubernetes version ``hack/envtest-assets.sh`` builds (``hack/versions.env``; honours ``$K8S_VERSION``)."""
    return pinned("K8S_VERSION")


def assets_dir(*, timeout: float = 3600.0, echo: bool = True) -> Path:
    """Return the directory holding ``etcd``, ``kube-apiserver`` and
    ``kube-controller-manager``, building them on first use (~5 min on 2 cores).

    Build progress is streamed to ``sys.stderr`` when ``echo`` is true.
    Raises :class:`EnvTestUnavailable` when neither ``KUBEBUILDER_ASSETS`` nor
    Go is available, :class:`EnvTestError` when the build fails.
    """
    kb = os.environ.get("KUBEBUILDER_ASSETS")
    if shutil.which("bash") is None:
        raise EnvTestUnavailable("envtest needs bash to run hack/envtest-assets.sh")
    if not (kb and (Path(kb) / "kube-apiserver").exists()) and shutil.which("go") is None:
        # The script would say the same; checking here avoids a confusing cache miss message.
        cache = os.environ.get("OTO_ENVTEST_CACHE", "~/.cache/oauth-token-operator/envtest")
        cached = Path(cache).expanduser() / f"k8s-{pinned_k8s_version()}" / ".envtest-complete"
        if not cached.exists():
            raise EnvTestUnavailable(
                "envtest needs etcd + kube-apiserver (+ kube-controller-manager) binaries, and this machine "
                "has neither KUBEBUILDER_ASSETS nor a Go toolchain to build them. Either install Go >= 1.25 "
                "(https://go.dev/dl/) and re-run (hack/envtest-assets.sh then builds them once, ~5 min), "
                "or set KUBEBUILDER_ASSETS to a directory holding etcd and kube-apiserver "
                "(e.g. KUBEBUILDER_ASSETS=$(setup-envtest use -p path 1.35.x))."
            )

    proc = subprocess.Popen(
        ["bash", str(ASSETS_SCRIPT)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=40)
    unavailable: list[str] = []

    def pump(stream: IO[str]) -> None:
        for line in stream:
            tail.append(line.rstrip("\n"))
            if line.startswith("envtest-assets: UNAVAILABLE: "):
                unavailable.append(line.removeprefix("envtest-assets: UNAVAILABLE: ").strip())
            if echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    pumper = threading.Thread(target=pump, args=(proc.stderr,), daemon=True)
    pumper.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise EnvTestError(
            f"{ASSETS_SCRIPT} did not finish within {timeout:.0f}s; last output:\n" + "\n".join(tail)
        ) from None
    finally:
        pumper.join(timeout=5)
        proc.stderr.close()
    if proc.returncode == _EXIT_UNAVAILABLE:
        raise EnvTestUnavailable(unavailable[0] if unavailable else "\n".join(tail))
    if proc.returncode != 0:
        raise EnvTestError(f"{ASSETS_SCRIPT} failed with exit code {proc.returncode}; last output:\n" + "\n".join(tail))
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise EnvTestError(f"{ASSETS_SCRIPT} printed no directory")
    path = Path(lines[-1].strip())
    missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager") if not (path / b).exists()]
    if missing:
        raise EnvTestError(f"{ASSETS_SCRIPT} reported {path}, which lacks {', '.join(missing)}")
    return path


# ---------------------------------------------------------------------------
# PKI
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path  # RSA private key: signs ServiceAccount tokens
    sa_pub: Path  # its public key: verifies them


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _generate_pki(directory: Path) -> _Pki:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauth-token-operator envtest CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    serving, serving_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
        ],
    )
    admin, admin_key = leaf(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "envtest-admin"),
            ]
        ),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pem = serialization.Encoding.PEM
    return _Pki(
        ca_cert=_write(directory / "ca.crt", ca_cert.public_bytes(pem), 0o644),
        serving_cert=_write(directory / "apiserver.crt", serving.public_bytes(pem), 0o644),
        serving_key=_write(directory / "apiserver.key", _pem_key(serving_key)),
        admin_cert=_write(directory / "admin.crt", admin.public_bytes(pem), 0o644),
        admin_key=_write(directory / "admin.key", _pem_key(admin_key)),
        sa_key=_write(directory / "sa.key", _pem_key(sa_key)),
        sa_pub=_write(
            directory / "sa.pub",
            sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
            0o644,
        ),
    )


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            data = collections.deque(f, maxlen=lines)
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return b"".join(data).decode(errors="replace")


def _die_with_parent_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies
    (Linux ``PR_SET_PDEATHSIG``), so even a SIGKILLed test run leaves no orphans.

    The signal fires when the *thread* that forked the child exits, so this is
    only used from the main thread."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # parent already gone
            os._exit(1)

    return preexec


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait()
        self.log_file.close()


_running: weakref.WeakSet[EnvTest] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # safety net: no orphaned control planes
    for env in list(_running):
        with contextlib.suppress(Exception):
            env.stop()


# ---------------------------------------------------------------------------
# EnvTest
# ---------------------------------------------------------------------------


class EnvTest:
    """etcd + kube-apiserver (+ kube-controller-manager) on free 127.0.0.1 ports,
    with all state, certificates, kubeconfigs and logs in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        assets: Path,
        *,
        controller_manager: bool = True,
        crd_dir: Path | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.assets = Path(assets)
        self.controller_manager = controller_manager
        # CRDs installed before the controller manager starts are in its first discovery, so garbage
        # collection of their dependents works at once (otherwise only after its 30 s rediscovery).
        self.crd_dir = crd_dir
        self.start_timeout = start_timeout
        self._procs: list[_Process] = []
        self._pki: _Pki | None = None
        self._started = False
        self.etcd_port = 0
        self.apiserver_port = 0
        self.controller_manager_port = 0
        #: seconds ``start()`` took, once started
        self.startup_seconds: float | None = None

    # -- public properties -------------------------------------------------

    @property
    def server(self) -> str:
        """The API server's URL, e.g. ``https://127.0.0.1:40123``."""
        self._require_started()
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        """PEM file of the CA that signed the API server's serving certificate."""
        return self._require_pki().ca_cert

    @property
    def kubeconfig(self) -> Path:
        """An admin (``system:masters``) kubeconfig file."""
        self._require_started()
        return self.workdir / "admin.kubeconfig"

    @property
    def service_account_issuer(self) -> str:
        """The ``iss`` of ServiceAccount tokens; also the API server's default token audience."""
        return self.server

    def log_path(self, component: str) -> Path:
        """Log file of ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return self.workdir / f"{component}.log"

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> EnvTest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            raise EnvTestError("EnvTest already started")
        needed = ["etcd", "kube-apiserver"] + (["kube-controller-manager"] if self.controller_manager else [])
        missing = [b for b in needed if not (self.assets / b).exists()]
        if missing:
            raise EnvTestError(f"{self.assets} lacks {', '.join(missing)}")
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 4):
            _running.add(self)
            self._started = True
            try:
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
                self._pki = _generate_pki(self.workdir / "pki")
                self._start_etcd(deadline)
                self._start_apiserver(deadline)
                if self.crd_dir is not None:
                    self.apply_crds(self.crd_dir)
                if self.controller_manager:
                    self._start_controller_manager(deadline)
                break
            except EnvTestError as exc:
                self.stop()
                # A free port picked here can be taken by someone else before the component
                # binds it (parallel test runs): try again with new ports.
                if attempt < 3 and "address already in use" in str(exc):
                    continue
                raise
            except BaseException:
                self.stop()
                raise
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Stop all components (controller manager, API server, then etcd). Idempotent."""
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        self._started = False
        _running.discard(self)

    def stop_apiserver(self) -> None:
        """Stop only the kube-apiserver (an outage: etcd and its data stay); :meth:`start_apiserver` brings it
        back on the same port, as a restarted or upgraded control plane comes back at the same address."""
        for proc in [p for p in self._procs if p.name == "kube-apiserver"]:
            proc.stop()
            self._procs.remove(proc)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        self._start_apiserver(time.monotonic() + timeout, port=self.apiserver_port)

    # -- clients --------------------------------------------------------------

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """Write a kubeconfig that authenticates to this API server with a bearer
        token (e.g. a ServiceAccount token from the TokenRequest API)."""
        self._write_kubeconfig(path, "token-user", {"token": token})
        return path

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` for ``kubeconfig`` (default: admin).
        Call ``.close()`` on it when done."""
        from kubernetes import config

        load: Callable[..., ApiClient] = config.new_client_from_config  # untyped upstream
        return load(config_file=str(kubeconfig or self.kubeconfig))

    def apply_crds(self, crd_dir: Path, *, timeout: float = 60.0) -> list[str]:
        """Create or replace every CustomResourceDefinition in ``crd_dir/*.y*ml``
        and wait until each is Established. Returns the CRD names. A missing or
        empty directory is fine (nothing to apply)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        crd_dir = Path(crd_dir)
        if not crd_dir.is_dir():
            return []
        docs: list[dict[str, Any]] = []
        for path in sorted([*crd_dir.glob("*.yaml"), *crd_dir.glob("*.yml")]):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc:
                    continue
                if doc.get("kind") != "CustomResourceDefinition":
                    kind = doc.get("kind")
                    raise EnvTestError(f"{path}: expected only CustomResourceDefinitions, got {kind}")
                docs.append(doc)
        if not docs:
            return []

        with self.api_client() as api_client:
            # Any: the manifests go to the API as plain dicts, not as generated model objects.
            ext: Any = client.ApiextensionsV1Api(api_client)
            names: list[str] = []
            for doc in docs:
                name = doc["metadata"]["name"]
                try:
                    ext.create_custom_resource_definition(body=doc)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    existing = ext.read_custom_resource_definition(name)
                    body = json.loads(json.dumps(doc))
                    body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                    ext.replace_custom_resource_definition(name, body=body)
                names.append(name)

            deadline = time.monotonic() + timeout
            pending = set(names)
            while pending:
                for name in sorted(pending):
                    crd = ext.read_custom_resource_definition(name)
                    conditions = (crd.status.conditions if crd.status else None) or []
                    if any(c.type == "Established" and c.status == "True" for c in conditions):
                        pending.discard(name)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    waiting = ", ".join(sorted(pending))
                    raise EnvTestError(f"CRDs not Established after {timeout:.0f}s: {waiting}")
                time.sleep(0.1)
            return names

    # -- internals ------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started or self.apiserver_port == 0:
            raise EnvTestError("EnvTest is not started")

    def _require_pki(self) -> _Pki:
        if self._pki is None:
            raise EnvTestError("EnvTest is not started")
        return self._pki

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log_path = self.log_path(name)
        log_file = log_path.open("ab")
        log_file.write(f"# {' '.join(args)}\n".encode())
        log_file.flush()
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        try:
            popen = subprocess.Popen(
                args,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to us; we stop children in order
                preexec_fn=_die_with_parent_preexec(),
            )
        except BaseException:
            log_file.close()
            raise
        proc = _Process(name, popen, log_path, log_file)
        self._procs.append(proc)
        return proc

    def _wait(self, proc: _Process, deadline: float, check: Callable[[], bool], what: str) -> None:
        last_error = ""
        while True:
            if not proc.alive():
                raise EnvTestError(
                    f"{proc.name} exited with code {proc.popen.returncode} while waiting for {what}; "
                    f"tail of {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise EnvTestError(
                    f"timed out after {self.start_timeout:.0f}s waiting for {what}"
                    f"{f' (last error: {last_error})' if last_error else ''}; "
                    f"tail of {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            time.sleep(0.1)

    def _get(self, url: str, ctx: ssl.SSLContext | None = None) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:  # noqa: S310
                return int(resp.status), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), exc.read().decode(errors="replace")

    def _admin_ssl_context(self) -> ssl.SSLContext:
        pki = self._require_pki()
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return ctx

    def _start_etcd(self, deadline: float) -> None:
        self.etcd_port, peer_port = _free_port(), _free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer_port}"
        proc = self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                "--name=envtest",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=envtest={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",  # throwaway data: trade durability for speed
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            status, body = self._get(f"{client_url}/health")
            return status == 200 and '"health":"true"' in body.replace(" ", "")

        self._wait(proc, deadline, healthy, f"etcd health on {client_url}")

    def _start_apiserver(self, deadline: float, port: int | None = None) -> None:
        pki = self._require_pki()
        self.apiserver_port = port or _free_port()
        server = f"https://127.0.0.1:{self.apiserver_port}"
        args = [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={server}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",  # allocation only; nothing listens there
            "--allow-privileged=true",
            "--profiling=false",
            # The default reconciler keeps failing to write a loopback address into the
            # 'kubernetes' Endpoints (and logging it); nothing here needs those endpoints.
            "--endpoint-reconciler-type=none",
        ]
        if not self.controller_manager:
            # Without the ServiceAccount controller no 'default' SA is created; let Pods in anyway.
            args.append("--disable-admission-plugins=ServiceAccount")
        proc = self._spawn("kube-apiserver", args)
        # Write the kubeconfig now so it exists (for debugging) even if start-up fails.
        self._write_kubeconfig(
            self.workdir / "admin.kubeconfig",
            "envtest-admin",
            {
                "client-certificate-data": base64.b64encode(pki.admin_cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(pki.admin_key.read_bytes()).decode(),
            },
        )
        ctx = self._admin_ssl_context()

        def ready() -> bool:
            status, _ = self._get(f"{server}/readyz", ctx)
            return status == 200

        self._wait(proc, deadline, ready, f"kube-apiserver /readyz on {server}")

    def _start_controller_manager(self, deadline: float) -> None:
        pki = self._require_pki()
        self.controller_manager_port = _free_port()
        kubeconfig = str(self.workdir / "admin.kubeconfig")
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.assets / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        ctx = self._admin_ssl_context()
        url = f"https://127.0.0.1:{self.controller_manager_port}/healthz"

        def healthy() -> bool:
            status, _ = self._get(url, ctx)
            return status == 200

        self._wait(proc, deadline, healthy, f"kube-controller-manager {url}")

    def _write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str]) -> None:
        pki = self._require_pki()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.apiserver_port}",
                        "certificate-authority-data": base64.b64encode(pki.ca_cert.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user}}],
            "current-context": "envtest",
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, yaml.safe_dump(config, sort_keys=False).encode())


# ---------------------------------------------------------------------------
# python -m tests.support.envtest
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="oto-envtest-"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.envtest",
        description="Start a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) "
        "with this repo's CRDs applied, print its kubeconfig and run until Ctrl-C.",
    )
    parser.add_argument("--workdir", help="keep state, certs and logs here (default: a temp dir, removed on exit)")
    parser.add_argument("--crds", default=str(REPO_ROOT / "crds"), help="CRD directory to apply (default: %(default)s)")
    parser.add_argument("--no-controller-manager", action="store_true", help="run only etcd + kube-apiserver")
    args = parser.parse_args(argv)

    try:
        assets = assets_dir()
    except EnvTestUnavailable as exc:
        print(f"envtest unavailable: {exc.message}", file=sys.stderr)
        return 2

    def on_sigterm(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    with (
        _workdir(args.workdir) as workdir,
        EnvTest(workdir, assets, controller_manager=not args.no_controller_manager) as env,
    ):
        crds = env.apply_crds(Path(args.crds))
        print(f"envtest: API server {env.server} ready in {env.startup_seconds:.1f}s")
        print(f"envtest: CRDs applied: {', '.join(crds) or 'none'}")
        print(f"envtest: logs in {workdir}")
        print(f"export KUBECONFIG={env.kubeconfig}", flush=True)
        try:
            while all(p.alive() for p in env._procs):
                time.sleep(1)
            dead = [p for p in env._procs if not p.alive()]
            for p in dead:
                print(f"envtest: {p.name} died; tail of {p.log_path}:\n{_tail(p.log_path)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nenvtest: stopping", file=sys.stderr)
            return 0


if __name__ == "__main__":
    sys.exit(main())
