"""The Helm chart renders what each mode needs (helm template, no cluster).

Uses the pinned helm from hack/tools.sh ($OTO_TOOLS_DIR/bin, default ~/.cache/oauth-token-operator/tools/bin).
Without it the tests skip, except under CI ($CI set), where a missing helm is a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "oauth-token-operator"
TOOLS_BIN = Path(os.environ.get("OTO_TOOLS_DIR", "~/.cache/oauth-token-operator/tools")).expanduser() / "bin"
NAMESPACE = "oauth-token-operator"


@pytest.fixture(scope="module")
def helm() -> Path:
    binary = TOOLS_BIN / "helm"
    if not os.access(binary, os.X_OK):
        message = f"no helm at {binary}: run hack/tools.sh helm (builds the pinned helm with Go, ~1-4 min)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


def render(helm: Path, *flags: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(helm), "template", "oto", str(CHART), "--namespace", NAMESPACE, *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def test_default_is_cluster_wide_standalone_and_restricted(helm: Path) -> None:
    docs = render(helm)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Service",
                     "ServiceAccount"]
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    op = container(docs)
    assert op["image"] == "ghcr.io/oauth-token-operator/oauth-token-operator:0.1.0"
    assert not any(a.startswith(("--peering", "--namespace")) for a in op["args"])
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in op["ports"]} == {"metrics": 8080, "health": 8081}
    sc = op["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in op["volumeMounts"]
    (role,) = by_kind(docs, "ClusterRole")
    assert not any("kopf.dev" in rule["apiGroups"] for rule in role["rules"])
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "oauth-token-operator"
        assert labels["app.kubernetes.io/instance"] == "oto"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_crd_is_templated_with_keep_policy_and_equals_the_source(helm: Path) -> None:
    (crd,) = by_kind(render(helm), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    source = yaml.safe_load((REPO_ROOT / "crds" / "oauth-token-operator.dev_oauthclientcredentials.yaml").read_text())
    assert crd["spec"] == source["spec"]
    assert not by_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")[0]["metadata"].get(
        "annotations")
    assert not by_kind(render(helm, "--set", "crds.enabled=false"), "CustomResourceDefinition")


def test_replicas_turn_on_kopf_peering(helm: Path) -> None:
    docs = render(helm, "--set", "replicaCount=2")
    assert "--peering=oto-oauth-token-operator" in container(docs)["args"]
    crds = {doc["metadata"]["name"] for doc in by_kind(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "oto-oauth-token-operator"
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]
    (role,) = by_kind(docs, "ClusterRole")
    assert {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
            "verbs": ["get", "list", "watch", "patch"]} in role["rules"]
    assert by_kind(docs, "PodDisruptionBudget")


def test_watch_namespaces_gives_roles_and_flags(helm: Path) -> None:
    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}", "--set", "replicaCount=2")
    args = container(docs)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["team-a", "team-b"]
    for role in roles:
        assert any(rule["resources"] == ["kopfpeerings"] for rule in role["rules"])
    # Only Kopf's read-only watch of CRDs and namespaces stays cluster-wide.
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert cluster_role["rules"] == [{"apiGroups": ["apiextensions.k8s.io"],
                                      "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
                                     {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]
    assert sorted(p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")) == ["team-a", "team-b"]


def test_monitoring_objects_are_opt_in(helm: Path) -> None:
    assert not by_kind(render(helm), "ServiceMonitor")
    docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true")
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    (rule,) = by_kind(docs, "PrometheusRule")
    exprs = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    assert exprs["OAuthTokenExpiringSoon"] == "oauth_token_operator_token_expiry_timestamp_seconds - time() < 300"
    assert 'oauth_token_operator_resources{ready="false"}' in exprs["OAuthClientCredentialNotReady"]
    assert exprs["OAuthClientCredentialsExpiring"] == (
        "oauth_token_operator_credentials_expiry_timestamp_seconds - time() < 604800")
    assert "{{ $labels.namespace }}" in rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]


def test_schema_rejects_unknown_values(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "template", "oto", str(CHART), "--set", "replicas=2"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    assert "additional properties 'replicas' not allowed" in result.stderr
