"""The image a user deploys, built by hack/image.sh from the committed Dockerfile and run the way the Deployment
runs it: read-only root filesystem, UID/GID 65532, only /tmp writable, the kubeconfig mounted read-only. It gets a
token into a Secret from a real authorization server, serves /healthz and /metrics, and stops cleanly on SIGTERM
within the Deployment's grace period. Its filesystem holds nothing a build leaves behind: no compiler, no pip, no
shell history, none of our tests, and not the build machine's CA bundle that pip used during the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest
from tests.support.image import Container, ImageUnavailable, built_image, exported_image, image_inspect, podman
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import free_port

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
#: terminationGracePeriodSeconds of the chart's and deploy/'s Deployment.
GRACE_PERIOD = 30
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # where hack/image.sh bind-mounts the host's bundle during the build


@pytest.fixture(scope="session")
def operator_image() -> str:
    try:
        return built_image()
    except ImageUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the image cannot be built in CI: {exc.message}", pytrace=False)
        pytest.skip(exc.message)


@pytest.fixture
def container(operator_image: str, kube_env: EnvTest, namespace: str, tmp_path: Path) -> Iterator[Container]:
    # The container's user is not the file's owner: give it a readable copy (in a 0700 temporary directory).
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(kube_env.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)
    for attempt in range(3):
        metrics_port, health_port = free_port(), free_port()
        running = Container(
            operator_image,
            args=["run", "--namespace", namespace,
                  "--metrics-port", str(metrics_port), "--health-port", str(health_port)],
            env={
                "KUBECONFIG": "/etc/oauth-token-operator/kubeconfig",
                # The test token endpoint is plain http on loopback.
                "OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_HTTP": "true",
                "OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS": "",
            },
            mounts=[f"{kubeconfig}:/etc/oauth-token-operator/kubeconfig:ro"],
            metrics_port=metrics_port,
            health_port=health_port,
        )
        try:
            running.start()
            running.wait_healthy()
            break
        except RuntimeError:
            logs = running.logs()
            running.remove()
            # On the host network another process may take a port between free_port() and the bind.
            if "Address already in use" not in logs or attempt == 2:
                raise
    try:
        yield running
    finally:
        print(f"--- container log ---\n{running.logs()[-20000:]}")
        running.remove()


def exec_python(container: Container, code: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", container.name, "python", "-c", code, check=False)


def sample_total(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def test_the_image_issues_a_token_read_only_as_non_root_and_stops_on_sigterm(
        kube: Kube, auth_server: AuthServer, container: Container, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="image-secret", scopes=["api:read"])
    kube.apply_secret(namespace, "creds", {"client_id": client_id, "client_secret": "image-secret"})
    kube.create_occ(namespace, "boxed", {"tokenURL": auth_server.token_url, "scopes": ["api:read"],
                                         "clientCredentialsSecretRef": {"name": "creds"},
                                         "target": {"secretName": "boxed-token"}})

    wait_for(lambda: kube.ready(namespace, "boxed").get("status") == "True", timeout=60,
             message="Ready=True from the container")
    assert kube.ready(namespace, "boxed")["reason"] == "TokenIssued"
    data = kube.secret_data(namespace, "boxed-token")
    assert data is not None and auth_server.accepts(data["access_token"]), "the stored token is a real one"

    status, _ = container.get(container.health_port, "/healthz")
    assert status == 200
    status, metrics = container.get(container.metrics_port, "/metrics")
    assert status == 200
    assert sample_total(metrics, "oauth_token_operator_token_requests_total",
                        host=f"127.0.0.1:{auth_server.port}") >= 1, metrics[-3000:]

    # The settings it ran under were the hardened ones: not root, nothing writable but /tmp.
    identity = exec_python(container, "import os; print(os.getuid(), os.getgid())")
    assert identity.stdout.split() == ["65532", "65532"], identity
    for path in ("/opt/venv/probe", "/probe", "/etc/probe"):
        attempt = exec_python(container, f"open({path!r}, 'w')")
        assert attempt.returncode != 0 and ("Read-only file system" in attempt.stderr
                                            or "Permission denied" in attempt.stderr), attempt
    assert exec_python(container, "open('/tmp/probe', 'w').write('x')").returncode == 0

    elapsed, code = container.stop(GRACE_PERIOD)
    print(f"SIGTERM to exit: {elapsed:.2f} s, exit code {code}")
    assert code == 0, f"a clean exit on SIGTERM, not a SIGKILL after the grace period (exit code {code})"
    assert elapsed < GRACE_PERIOD


# --- what the image holds -----------------------------------------------------------------------------------------

COMPILER = re.compile(r"(x86_64-linux-gnu-|aarch64-linux-gnu-)?(gcc|g\+\+|cc|c\+\+|clang|clang\+\+|cc1|cc1plus|tcc)"
                      r"(-[0-9.]+)?")
HISTORY = {".bash_history", ".sh_history", ".ash_history", ".zsh_history", ".python_history", ".history",
           ".lesshst", ".viminfo", ".wget-hsts"}


@dataclass
class Inventory:
    files: dict[str, int] = field(default_factory=dict)  # path -> size, regular files and symlinks
    dirs: set[str] = field(default_factory=set)
    bundle: bytes = b""
    needles_found: dict[str, str] = field(default_factory=dict)  # needle -> first file holding it


def pem_certificates(text: str) -> set[str]:
    return {m.group(0).strip() for m in re.finditer(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                                                    text, re.DOTALL)}


def needle(pem: str) -> str:
    """A line from the middle of a certificate's base64 body: unique to it, and how any bundle would hold it."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return body[len(body) // 2]


def take_inventory(tar: tarfile.TarFile, needles: list[str]) -> Inventory:
    inventory = Inventory()
    encoded = [n.encode() for n in needles]
    for member in tar:
        path = "/" + member.name.lstrip("./")
        if member.isdir():
            inventory.dirs.add(path)
            continue
        inventory.files[path] = member.size
        if not member.isfile():
            continue
        stream = tar.extractfile(member)
        assert stream is not None
        content = stream.read()
        if path == BUNDLE:
            inventory.bundle = content
        for text, raw in zip(needles, encoded, strict=True):
            if text not in inventory.needles_found and raw in content:
                inventory.needles_found[text] = path
    return inventory


@pytest.fixture(scope="module")
def host_bundle() -> str:
    return Path(BUNDLE).read_text()


@pytest.fixture(scope="module")
def inventory(operator_image: str, host_bundle: str) -> Inventory:
    with exported_image(operator_image) as tar:
        return take_inventory(tar, [needle(pem) for pem in pem_certificates(host_bundle)])


def base_image() -> str:
    froms = set(re.findall(r"^FROM\s+(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert len(froms) == 1, froms
    return str(froms.pop())


def test_the_image_holds_no_compiler_no_pip_and_no_shell_history(inventory: Inventory) -> None:
    assert len(inventory.files) > 1000, "the inventory read the whole image"
    assert "/opt/venv/bin/oauth-token-operator" in inventory.files, "the inventory sees the venv"
    # Compiler drivers on any bin directory, and the compilers proper wherever GCC keeps them.
    compilers = [p for p in inventory.files if ("/bin/" in p and COMPILER.fullmatch(Path(p).name))
                 or Path(p).name in {"cc1", "cc1plus", "collect2", "lto1"}]
    assert not compilers, compilers
    pips = [p for p in inventory.files
            if re.search(r"/bin/pip[0-9.]*$|/(site|dist)-packages/pip/|/pip-[^/]+\.whl$", p)]
    pips += [p for p in inventory.dirs if re.search(r"/(site|dist)-packages/pip$", p)]
    assert not pips, pips[:20]
    histories = [p for p in inventory.files if Path(p).name in HISTORY]
    assert not histories, histories


def test_the_image_holds_exactly_the_operator_package_and_none_of_the_tests(inventory: Inventory) -> None:
    package = "/opt/venv/lib/python3.11/site-packages/oauth_token_operator/"
    shipped = {p.removeprefix(package) for p in inventory.files
               if p.startswith(package) and p.endswith(".py")}
    source = REPO_ROOT / "operator" / "oauth_token_operator"
    assert shipped == {str(p.relative_to(source)) for p in source.rglob("*.py")}
    ours = [p for p in inventory.files
            if "/tests/support/" in p or "/tests/e2e/" in p or p.startswith("/src/") or Path(p).name == "conftest.py"]
    assert not ours, ours
    assert "/src" not in inventory.dirs, "the builder's work tree stays in the builder"


def test_the_build_machines_ca_bundle_did_not_end_up_in_the_image(
        inventory: Inventory, host_bundle: str) -> None:
    # The bundle hack/image.sh mounted over this path for pip is gone: the image has the base image's own.
    base_bundle = podman("run", "--rm", "--network", "none", "--entrypoint", "cat", base_image(), BUNDLE).stdout
    assert inventory.bundle.decode() == base_bundle
    # The CAs this machine adds to its bundle (what pip needed to reach the index here) are in no file at all.
    extra = pem_certificates(host_bundle) - pem_certificates(base_bundle)
    leaked = {needle(pem): inventory.needles_found.get(needle(pem)) for pem in extra}
    assert not {n: p for n, p in leaked.items() if p}, leaked
    if host_bundle != base_bundle:
        assert extra, "a differing host bundle must add certificates this test looks for"


def test_the_image_config_carries_nothing_of_the_build_machine(operator_image: str) -> None:
    inspected = image_inspect(operator_image)
    config: dict[str, Any] = inspected["Config"]
    assert config.get("User") == "65532:65532"
    assert config.get("Entrypoint") == ["oauth-token-operator"] and config.get("Cmd") == ["run"]
    assert "docker" in inspected["ManifestType"], "built with --format docker, which keeps the HEALTHCHECK"
    assert "/healthz" in " ".join((inspected.get("Healthcheck") or {}).get("Test", [])), inspected.get("Healthcheck")
    env = config.get("Env") or []
    assert not [e for e in env if re.search(r"cert|ssl|pip_|proxy|containers_conf", e, re.IGNORECASE)], env
    assert not config.get("Volumes"), "no anonymous volumes"
    print(f"image size: {inspected['Size'] / 1e6:.0f} MB")
