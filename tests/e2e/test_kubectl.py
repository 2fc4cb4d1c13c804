"""The kubectl experience (issue 7 item 3): what ``get``, ``describe``, ``wait`` and ``explain`` show a user.

kubectl is the one ``hack/envtest-assets.sh`` builds at the cluster's own version, beside the control plane
(``tests.support.envtest.assets_dir()``), never whatever happens to be on the PATH.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.authserver import AuthServer
from tests.support.envtest import EnvTest, assets_dir, pinned_k8s_version
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

AGE = re.compile(r"^\d+[smhd]")  # kubectl's human durations: 5s, 3m2s, 59m, 2d3h


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path
    cache_dir: Path
    namespace: str

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir),
             "--namespace", self.namespace, *args],
            capture_output=True, text=True, timeout=timeout, check=False)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        return result.stdout


@dataclass(frozen=True)
class Scene:
    kubectl: Kubectl
    kube: Kube
    namespace: str


@pytest.fixture(scope="module")
def scene(kube_env: EnvTest, kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """One namespace with a resource that got its token ("good") and one with a wrong secret ("bad")."""
    binary = assets_dir(echo=False) / "kubectl"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: hack/envtest-assets.sh builds kubectl beside the control plane")
    version = subprocess.run([str(binary), "version", "--client"], capture_output=True, text=True, check=True)
    assert f"Client Version: {pinned_k8s_version()}" in version.stdout, "kubectl must match the cluster's version"

    workdir = tmp_path_factory.mktemp("kubectl")
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace)
    operator = OperatorProcess(kube_env.kubeconfig, workdir, args=["--namespace", namespace])
    with AuthServer() as auth:
        try:
            operator.start()
            auth.add_client("kubectl-client", secret="right")
            kube.apply_secret(namespace, "good-creds", {"client_id": "kubectl-client", "client_secret": "right"})
            kube.apply_secret(namespace, "bad-creds", {"client_id": "kubectl-client", "client_secret": "wrong"})
            for name in ("good", "bad"):
                kube.create_occ(namespace, name, {"tokenURL": auth.token_url,
                                                  "clientCredentialsSecretRef": {"name": f"{name}-creds"},
                                                  "target": {"secretName": f"{name}-token"}})
            wait_for(lambda: kube.ready(namespace, "good").get("reason") == "TokenIssued"
                     and kube.ready(namespace, "bad").get("reason") == "InvalidClient",
                     message="good Ready, bad InvalidClient")
            yield Scene(Kubectl(binary, kube_env.kubeconfig, workdir / "cache", namespace), kube, namespace)
        finally:
            operator.stop()
            kube.delete_namespace(namespace)


def table(output: str) -> dict[str, dict[str, str]]:
    """``kubectl get`` output as {NAME: {COLUMN: cell}}, cut at the header's column starts (cells may be
    empty, so splitting on whitespace would shift them)."""
    header, *rows = output.rstrip("\n").splitlines()
    starts = [match.start() for match in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
    parsed: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = [row[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        parsed[cells[0]] = dict(zip(names, cells, strict=True))
    return parsed


def test_get_shows_ready_reason_and_age(scene: Scene) -> None:
    output = scene.kubectl.ok("get", "occ")
    assert output.split("\n", 1)[0].split() == ["NAME", "READY", "REASON", "EXPIRES", "CREDENTIALS", "EXPIRE", "AGE"]
    rows = table(output)
    assert set(rows) == {"good", "bad"}
    assert (rows["good"]["READY"], rows["good"]["REASON"]) == ("True", "TokenIssued")
    assert (rows["bad"]["READY"], rows["bad"]["REASON"]) == ("False", "InvalidClient")
    assert rows["bad"]["EXPIRES"] == "", "no token, no expiry"
    assert rows["good"]["CREDENTIALS EXPIRE"] == "", "the credentials Secret does not say when they expire"
    for row in rows.values():
        assert AGE.match(row["AGE"]), row

    wide = table(scene.kubectl.ok("get", "occ", "-o", "wide"))
    assert wide["good"]["SECRET"] == "good-token"


def test_get_shows_when_the_token_expires(scene: Scene) -> None:
    expires_at = (scene.kube.get_occ(scene.namespace, "good") or {})["status"]["expiresAt"]
    cell = table(scene.kubectl.ok("get", "occ"))["good"]["EXPIRES"]
    assert cell == expires_at, f"EXPIRES shows {cell!r} for a token expiring at {expires_at}"
    assert datetime.fromisoformat(expires_at.replace("Z", "+00:00")) > datetime.now(UTC)


def test_describe_shows_the_events(scene: Scene) -> None:
    good = scene.kubectl.ok("describe", "occ", "good")
    events = good.split("\nEvents:", 1)[1]
    assert re.search(r"Normal\s+TokenIssued\s+.*oauth-token-operator\s+Token issued", events), events
    bad = scene.kubectl.ok("describe", "occ", "bad")
    events = bad.split("\nEvents:", 1)[1]
    assert re.search(r"Warning\s+InvalidClient\s+.*oauth-token-operator\s+token endpoint answered 401", events), events
    assert "Reason:                InvalidClient" in bad.split("\nEvents:", 1)[0], "the condition is shown too"


def test_wait_for_ready(scene: Scene) -> None:
    out = scene.kubectl.ok("wait", "--for=condition=Ready", "occ/good", "--timeout=30s")
    assert "oauthclientcredential.oauth-token-operator.dev/good condition met" in out
    # A resource that is not Ready makes `kubectl wait` fail, as scripts that gate on it expect.
    refused = scene.kubectl.run("wait", "--for=condition=Ready", "occ/bad", "--timeout=1s")
    assert refused.returncode != 0
    assert "timed out" in refused.stderr


def test_explain_teaches_the_api(scene: Scene) -> None:
    # The API server publishes the CRD's OpenAPI a moment after it is established; poll rather than sleep.
    def explained() -> str:
        result = scene.kubectl.run("explain", "occ.spec")
        return result.stdout if result.returncode == 0 else ""

    spec = wait_for(explained, message="kubectl explain occ.spec")
    assert "KIND:       OAuthClientCredential" in spec
    assert "Where and how to request a client_credentials token, and where to keep it." in spec
    for field in ("tokenURL", "issuerURL", "clientCredentialsSecretRef", "authMethod", "target"):
        assert re.search(rf"^\s+{field}\s+<", spec, re.MULTILINE), f"{field} missing from explain occ.spec"
    token_url = scene.kubectl.ok("explain", "occ.spec.tokenURL")
    assert "FIELD: tokenURL <string>" in token_url
    assert "The token endpoint (e.g. https://idp.example.com/oauth2/token)." in " ".join(token_url.split())
