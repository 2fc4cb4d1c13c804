"""Install manifests as users get them: rendered by the pinned ``helm``/``kustomize`` and applied to a test API server.

``hack/tools.sh`` builds the pinned tools once (Go module proxy) into ``$OTO_TOOLS_DIR/bin``; :func:`tools_bin`
runs it and reports the directory. :func:`apply_objects` server-side applies any list of manifests through
``kubernetes.dynamic`` (so CRDs, RBAC, peering objects and custom resources all go through one path), waiting
for new CRDs to be Established and served before objects of their kinds.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from .kube import Kube
from .operator_process import OperatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "oauth-token-operator"
TOOLS_SCRIPT = REPO_ROOT / "hack" / "tools.sh"
FIELD_MANAGER = "oto-e2e"

Manifest = dict[str, Any]


class ToolsUnavailable(RuntimeError):
    """``hack/tools.sh`` could not provide the tools (typically: no Go toolchain); the message says why."""


def tools_bin(*tools: str, timeout: float = 1800.0) -> Path:
    """Build (once) and return the directory of the pinned ``tools`` (``helm``, ``kustomize``, ...)."""
    try:
        result = subprocess.run(["bash", str(TOOLS_SCRIPT), *tools], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolsUnavailable(f"{TOOLS_SCRIPT} {' '.join(tools)} failed: {exc}") from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ToolsUnavailable(f"{TOOLS_SCRIPT} {' '.join(tools)} exited with {result.returncode}:\n{tail}")
    path = Path(lines[-1])
    missing = [t for t in tools if not os.access(path / t, os.X_OK)]
    if missing:
        raise ToolsUnavailable(f"{TOOLS_SCRIPT} reported {path}, which lacks {', '.join(missing)}")
    return path


def tools_or_skip(*tools: str) -> Path:
    """:func:`tools_bin` for a test: missing tools skip it with the reason, except under CI (``$CI`` set), where
    they fail it (CI never skips silently)."""
    import pytest

    try:
        return tools_bin(*tools)
    except ToolsUnavailable as exc:
        message = f"{'/'.join(tools)} unavailable (hack/tools.sh builds them with Go, ~2 min cold): {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def helm_template(bin_dir: Path, release: str, namespace: str, *flags: str) -> list[Manifest]:
    """``helm template RELEASE charts/oauth-token-operator --namespace NAMESPACE FLAGS...``, parsed."""
    return _documents(_run([str(bin_dir / "helm"), "template", release, str(CHART), "--namespace", namespace,
                            *flags]))


def kustomize_build(bin_dir: Path, directory: Path) -> list[Manifest]:
    """``kustomize build DIRECTORY``, parsed."""
    return _documents(_run([str(bin_dir / "kustomize"), "build", str(directory)]))


def by_kind(docs: Iterable[Manifest], *kinds: str) -> list[Manifest]:
    return [doc for doc in docs if doc.get("kind") in kinds]


class Applier:
    """Server-side apply of arbitrary manifests (``kubectl apply --server-side --force-conflicts``)."""

    def __init__(self, api_client: ApiClient, cache_dir: Path) -> None:
        self.dynamic = DynamicClient(api_client, cache_file=str(cache_dir / "discovery.json"))  # type: ignore[no-untyped-call]

    def resource(self, doc: Manifest, *, timeout: float = 30.0) -> Resource:
        """The API resource of ``doc``'s kind; waits (rediscovering) while a just-created CRD is not served yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found: Resource = self.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                return found
            except ResourceNotFoundError:
                if time.monotonic() > deadline:
                    raise
                self.dynamic.resources.invalidate_cache()
                time.sleep(0.2)

    def apply(self, docs: Iterable[Manifest]) -> None:
        for doc in docs:
            resource = self.resource(doc)
            namespace = doc["metadata"].get("namespace") if resource.namespaced else None
            self.dynamic.server_side_apply(resource, body=doc, namespace=namespace, field_manager=FIELD_MANAGER,  # type: ignore[no-untyped-call]
                                           force_conflicts=True)
            if doc["kind"] == "CustomResourceDefinition":
                self._wait_established(resource, doc["metadata"]["name"])

    def delete(self, docs: Iterable[Manifest]) -> None:
        """Delete ``docs`` (missing ones are fine), last first."""
        for doc in reversed(list(docs)):
            resource = self.resource(doc)
            namespace = doc["metadata"].get("namespace") if resource.namespaced else None
            try:
                resource.delete(name=doc["metadata"]["name"], namespace=namespace)
            except (NotFoundError, ApiException) as exc:
                if getattr(exc, "status", None) != 404:
                    raise

    def _wait_established(self, resource: Resource, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            crd = resource.get(name=name).to_dict()
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            time.sleep(0.1)
        raise AssertionError(f"CRD {name} not Established after {timeout}s")


def deployment_container(docs: list[Manifest]) -> tuple[Manifest, Manifest]:
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def operator_command(container: Manifest, pod_name: str, process: OperatorProcess) -> tuple[list[str], dict[str, str]]:
    """The rendered container's args and env, as the kubelet would give them, with only the ports changed to
    the free ones ``process`` picked, plain http allowed and loopback endpoints not denied (the test token
    endpoint is http on 127.0.0.1)."""
    args = list(container.get("args") or [])
    assert args[:1] == ["run"], f"the container must run `oauth-token-operator run`, not {args}"
    port_flags = ("--metrics-port", "--health-port")
    args = [a for a in args[1:] if not a.startswith(port_flags)]  # OperatorProcess passes the free ports
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod_name
        else:
            raise AssertionError(f"cannot emulate env var {var} without a kubelet")
    env.update({
        "OAUTH_TOKEN_OPERATOR_METRICS_PORT": str(process.metrics_port),
        "OAUTH_TOKEN_OPERATOR_HEALTH_PORT": str(process.health_port),
        "OAUTH_TOKEN_OPERATOR_ALLOW_INSECURE_HTTP": "true",
        "OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS": "",
    })
    return args, env


def service_account_token(kube: Kube, namespace: str, name: str, *, expiration_seconds: int = 3600) -> str:
    """A bound token for the ServiceAccount from the TokenRequest API (what the kubelet mounts into the pod)."""
    request = kube.core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": expiration_seconds}})
    token: str = request.status.token
    return token
