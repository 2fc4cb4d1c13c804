"""Static checks of the Helm chart and the kustomize tree that need no helm binary.

- every value in values.yaml has a comment, a row in the chart README and a place in values.schema.json;
- the copies of the CRDs (chart files/, deploy/crds/) equal crds/ byte for byte (hack/sync-chart-crds.sh).
Rendering with helm is tested in tests/integration/test_chart_render.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "oauth-token-operator"
CRD_NAME = "oauth-token-operator.dev_oauthclientcredentials.yaml"
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
    rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
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
                  "metrics.serviceMonitor", "metrics.prometheusRule"):
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


@pytest.mark.parametrize(
    ("copy", "source"),
    [
        (CHART / "files" / "crds" / CRD_NAME, REPO_ROOT / "crds" / CRD_NAME),
        (REPO_ROOT / "deploy" / "crds" / CRD_NAME, REPO_ROOT / "crds" / CRD_NAME),
        (CHART / "files" / "kopf-peering-crds.yaml",
         REPO_ROOT / "deploy" / "components" / "peering" / "kopf-peering-crds.yaml"),
    ],
    ids=["chart-crd", "deploy-crd", "chart-kopf-peering-crds"],
)
def test_crd_copies_equal_their_source(copy: Path, source: Path) -> None:
    # The chart's template (templates/crds.yaml) reads the copy with .Files.Get and only adds labels and the keep
    # annotation, so the copy itself carries no templating header: it must equal crds/ byte for byte.
    assert copy.read_bytes() == source.read_bytes(), f"{copy} is stale: run hack/sync-chart-crds.sh"


def _rules(path: Path, kind: str) -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == kind:
            return list(doc["rules"])
    raise AssertionError(f"no {kind} in {path}")


def test_rbac_never_deletes_and_never_uses_wildcards() -> None:
    files = [*(REPO_ROOT / "deploy").rglob("*.yaml"), CHART / "templates" / "_helpers.tpl"]
    for path in files:
        text = path.read_text()
        for verbs in re.findall(r"verbs: \[([^\]]*)\]", text):
            assert "delete" not in verbs and "*" not in verbs, f"{path}: verbs [{verbs}]"


def test_namespaced_role_is_the_cluster_role_minus_cluster_scoped_rules() -> None:
    cluster = _rules(REPO_ROOT / "deploy" / "rbac" / "cluster" / "clusterrole.yaml", "ClusterRole")
    namespaced = _rules(REPO_ROOT / "deploy" / "namespaced" / "role.yaml", "Role")
    cluster_only = [
        r for r in cluster if r["apiGroups"] == ["apiextensions.k8s.io"] or r["resources"] == ["namespaces"]
    ]
    assert [r for r in cluster if r not in cluster_only] == namespaced
