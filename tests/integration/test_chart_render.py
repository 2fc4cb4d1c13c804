"""The Helm chart renders what each mode needs (helm template, no cluster).

Uses the pinned helm from hack/tools.sh ($OTO_TOOLS_DIR/bin, default ~/.cache/oauth-token-operator/tools/bin).
Without it the tests skip, except under CI ($CI set), where a missing helm is a failure.
"""

from __future__ import annotations

import json
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


def operator_role(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    """The operator's own (Cluster)Role, not the aggregated ones for people."""
    (role,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == f"oto-oauth-token-operator{suffix}"]
    return role


def test_default_is_cluster_wide_standalone_and_restricted(helm: Path) -> None:
    docs = render(helm)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                     "Deployment", "Service", "ServiceAccount"]
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
    role = operator_role(docs, "ClusterRole")
    assert not any("kopf.dev" in rule["apiGroups"] for rule in role["rules"])
    # Least privilege by default: no workloads, and on ServiceAccounts only what token minting needs.
    assert not any("apps" in rule["apiGroups"] for rule in role["rules"])
    assert "OAUTH_TOKEN_OPERATOR_ENABLE_ROLLOUT_RESTARTS" not in {e["name"] for e in op["env"]}
    assert {r: rule["verbs"] for rule in role["rules"] for r in rule["resources"] if r.startswith("serviceaccounts")} \
        == {"serviceaccounts": ["get"], "serviceaccounts/token": ["create"]}
    assert not by_kind(docs, "NetworkPolicy") and not by_kind(docs, "ConfigMap")
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
    role = operator_role(docs, "ClusterRole")
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
    cluster_role = operator_role(docs, "ClusterRole", suffix="-crds")
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
    assert exprs["OAuthClientCredentialsExpiringSoon"] == (
        "oauth_token_operator_credentials_expiry_timestamp_seconds - time() < 604800 > 0")
    assert "{{ $labels.namespace }}" in rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]


def test_schema_rejects_unknown_values(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "template", "oto", str(CHART), "--set", "replicas=2"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    assert "additional properties 'replicas' not allowed" in result.stderr


def test_rbac_rules_come_from_the_one_definition(helm: Path) -> None:
    source = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())

    def rules(group: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in rule.items() if k != "why"} for rule in source[group]]

    assert operator_role(render(helm), "ClusterRole")["rules"] == rules("namespaced") + rules("cluster")
    (role,) = by_kind(render(helm, "--set", "watchNamespaces={team-a}"), "Role")
    assert role["rules"] == rules("namespaced")


def test_rollout_restart_is_opt_in_and_grants_workload_patching(helm: Path) -> None:
    for flags in ((), ("--set", "watchNamespaces={team-a}")):
        docs = render(helm, "--set", "rolloutRestart.enabled=true", *flags)
        role = operator_role(docs, "Role" if flags else "ClusterRole")
        assert {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
                "verbs": ["get", "patch"]} in role["rules"]
        assert {"name": "OAUTH_TOKEN_OPERATOR_ENABLE_ROLLOUT_RESTARTS", "value": "true"} in container(docs)["env"]
        if flags:  # namespaced: still nothing on workloads cluster-wide
            assert not any("apps" in rule["apiGroups"] for d in by_kind(docs, "ClusterRole") for rule in d["rules"])


def test_aggregated_cluster_roles_for_people(helm: Path) -> None:
    roles = {d["metadata"]["name"]: d for d in by_kind(render(helm), "ClusterRole")}
    view, edit = roles["oto-oauth-token-operator-view"], roles["oto-oauth-token-operator-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert view["rules"] == [{"apiGroups": ["oauth-token-operator.dev"], "resources": ["oauthclientcredentials"],
                              "verbs": ["get", "list", "watch"]}]
    labels = edit["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == labels[
        "rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in labels, "view must not create (it reads no Secrets)"
    assert "create" in edit["rules"][0]["verbs"]
    names = {d["metadata"]["name"] for d in by_kind(render(helm, "--set", "rbac.aggregateClusterRoles=false"),
                                                    "ClusterRole")}
    assert names == {"oto-oauth-token-operator"}


def test_network_policy_is_opt_in_and_limits_ingress(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, "--set", "networkPolicy.enabled=true",
                  "--set", "networkPolicy.metrics.namespaceSelector.matchLabels.name=monitoring")
    (policy,) = by_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "oto"
    assert spec["policyTypes"] == ["Ingress"], "egress stays the user's unless networkPolicy.egress is set"
    metrics, health = spec["ingress"]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}, "podSelector": {}}]
    assert health == {"ports": [{"port": "health", "protocol": "TCP"}]}
    egress = [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"networkPolicy": {"enabled": True, "egress": egress}}))
    (policy,) = by_kind(render(helm, "-f", str(values)), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == egress


def test_dashboard_config_map_for_the_grafana_sidecar(helm: Path) -> None:
    (cm,) = by_kind(render(helm, "--set", "metrics.dashboard.enabled=true"), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == NAMESPACE
    dashboard = json.loads(cm["data"]["oauth-token-operator.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboards" / "oauth-token-operator.json").read_text())
