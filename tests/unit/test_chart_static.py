"""Static checks of the Helm chart and the kustomize tree that need no helm binary.

- every value in values.yaml has a comment, a row in the chart README and a place in values.schema.json;
- every generated file (CRD copies, deploy/ RBAC, docs, the README tables) is what hack/generate.sh makes of its
  source, and the one RBAC definition (files/rbac.yaml) grants the operator no delete and no wildcard.
Rendering with helm is tested in tests/integration/test_chart_render.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "oauth-token-operator"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?:\s|$)")


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every leaf value (an empty map counts as a leaf: it is a value users set)."""
    paths: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths.extend(value_paths(value, path + "."))
        else:
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_key_in_values_yaml_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for number, line in enumerate(lines):
        if KEY_LINE.match(line) is None:
            continue
        previous = lines[number - 1].strip() if number else ""
        if not previous.startswith("#"):
            missing.append(f"line {number + 1}: {line.strip()}")
    assert not missing, "keys without a comment on the line above:\n" + "\n".join(missing)


def test_every_value_is_in_the_readme_table(values: dict[str, Any]) -> None:
    readme = (CHART / "README.md").read_text()
    table = readme[readme.index("<!-- BEGIN values"):readme.index("<!-- END values -->")]
    rows = set(re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE))
    paths = set(value_paths(values))
    assert paths - rows == set(), "values missing from README.md"
    assert rows - paths == set(), "README.md documents values that do not exist"


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in path.split("."):
        if node is None:
            return None
        node = node.get("properties", {}).get(part)
    return node


def test_every_value_is_in_the_schema(values: dict[str, Any]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = [path for path in value_paths(values) if schema_node(schema, path) is None]
    assert not missing, f"values.schema.json lacks {missing}"


def test_schema_is_strict_and_documented(values: dict[str, Any]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    # Our own groups (not mirrors of Kubernetes types) refuse unknown keys.
    for group in ("image", "operator", "peering", "crds", "serviceAccount", "metrics", "metrics.service",
                  "metrics.serviceMonitor", "metrics.prometheusRule", "metrics.dashboard", "rbac", "rolloutRestart",
                  "networkPolicy", "networkPolicy.metrics"):
        node = schema_node(schema, group)
        assert node is not None and node.get("additionalProperties") is False, group
    for path in value_paths(values):
        node = schema_node(schema, path)
        assert node is not None and node.get("description"), f"{path} has no description in the schema"


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"
    assert chart["kubeVersion"].startswith(">=1.27")


def test_generated_files_are_fresh() -> None:
    # One check for every derived file (hack/generate.py lists them): the CRD copies in the chart and deploy/,
    # deploy/'s RBAC, docs/api.md, the settings comments of values.yaml and the README tables.
    result = subprocess.run([sys.executable, str(REPO_ROOT / "hack" / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{result.stderr}\n{result.stdout[:6000]}"


def test_the_freshness_check_can_fail(tmp_path: Path) -> None:
    # --check must notice a hand edit of a generated file: run it on a copy of the repository's sources.
    for part in ("hack", "charts", "deploy", "crds", "docs"):
        shutil.copytree(REPO_ROOT / part, tmp_path / part)
    role = tmp_path / "deploy" / "namespaced" / "role.yaml"
    role.write_text(role.read_text().replace("verbs: [get]", "verbs: [get, list]"))
    result = subprocess.run([sys.executable, str(tmp_path / "hack" / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "deploy/namespaced/role.yaml" in result.stderr and "run `hack/generate.sh`" in result.stderr
    assert "-  verbs: [get, list]" in result.stdout


def _rules(path: Path, kind: str) -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == kind:
            return list(doc["rules"])
    raise AssertionError(f"no {kind} in {path}")


def test_rbac_definition_never_deletes_and_never_uses_wildcards() -> None:
    groups = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())
    for group, rules in groups.items():
        for rule in rules:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], f"{group}: {rule}"
            assert rule["why"].strip(), f"{group}: every rule says why it exists"
            if group not in ("view", "edit"):  # the operator's own rules
                assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]), (
                    f"{group}: {rule}")
    # People: view only reads; the operator gets nothing on workloads unless rollout restarts are on.
    assert {v for rule in groups["view"] for v in rule["verbs"]} == {"get", "list", "watch"}
    always = groups["namespaced"] + groups["cluster"]
    assert not [rule for rule in always if "apps" in rule["apiGroups"]]
    assert [rule["resources"] for rule in groups["rolloutRestart"]] == [["deployments", "statefulsets", "daemonsets"]]
    service_accounts = {r: rule["verbs"] for rule in always for r in rule["resources"]
                        if r.startswith("serviceaccounts")}
    assert service_accounts == {"serviceaccounts": ["get"], "serviceaccounts/token": ["create"]}


def test_deploy_rbac_never_uses_wildcards() -> None:
    for path in (REPO_ROOT / "deploy").rglob("*.yaml"):
        for verbs in re.findall(r"verbs: \[([^\]]*)\]", path.read_text()):
            assert "*" not in verbs, f"{path}: verbs [{verbs}]"


def test_namespaced_role_is_the_cluster_role_minus_cluster_scoped_rules() -> None:
    cluster = _rules(REPO_ROOT / "deploy" / "rbac" / "cluster" / "clusterrole.yaml", "ClusterRole")
    namespaced = _rules(REPO_ROOT / "deploy" / "namespaced" / "role.yaml", "Role")
    cluster_only = [
        r for r in cluster if r["apiGroups"] == ["apiextensions.k8s.io"] or r["resources"] == ["namespaces"]
    ]
    assert [r for r in cluster if r not in cluster_only] == namespaced
