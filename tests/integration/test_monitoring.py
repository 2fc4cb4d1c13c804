"""The dashboard's and the alerts' PromQL parses (Prometheus's own promtool) and names only exported metrics.

promtool and helm come from hack/tools.sh (pinned in hack/versions.env). Without them these tests skip, except under
CI ($CI set), where that is a failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.manifests import by_kind, helm_template, tools_or_skip
from tests.support.promql import check_rules, exported_series, grafana_expr, series_in

DASHBOARD = (Path(__file__).resolve().parents[2] / "charts" / "oauth-token-operator" / "files" / "dashboards"
             / "oauth-token-operator.json")


@pytest.fixture(scope="module")
def tools() -> Path:
    return tools_or_skip("helm", "promtool")


def rendered_rules(tools: Path) -> list[dict[str, Any]]:
    docs = helm_template(tools, "oto", "oauth-token-operator", "--set", "metrics.prometheusRule.enabled=true")
    (rule,) = by_kind(docs, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_every_dashboard_expression_parses(tools: Path, tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rules = [{"record": f"dashboard:panel_{panel['id']}_{target['refId'].lower()}",
              "expr": grafana_expr(target["expr"])}
             for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(rules) >= 9
    check_rules(tools / "promtool", [{"name": "dashboard", "rules": rules}], tmp_path)


def test_promtool_refuses_a_broken_expression(tools: Path, tmp_path: Path) -> None:
    # The check above can fail: an unbalanced expression is refused with promtool's parse error.
    with pytest.raises(AssertionError, match="parse error"):
        check_rules(tools / "promtool", [{"name": "broken", "rules": [
            {"record": "broken", "expr": "sum(rate(oauth_token_operator_token_requests_total[5m])"}]}], tmp_path)


def test_prometheus_rule_passes_promtool_and_names_only_exported_metrics(tools: Path, tmp_path: Path) -> None:
    groups = rendered_rules(tools)
    check_rules(tools / "promtool", groups, tmp_path)
    exported = exported_series()
    for rule in groups[0]["rules"]:
        unknown = series_in(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']} uses {unknown}, which the operator does not export"


def test_credentials_expiry_alerts(tools: Path) -> None:
    rules = {r["alert"]: r for r in rendered_rules(tools)[0]["rules"]}
    soon, expired = rules["OAuthClientCredentialsExpiringSoon"], rules["OAuthClientCredentialsExpired"]
    assert soon["expr"] == ("oauth_token_operator_credentials_expiry_timestamp_seconds - time() < 604800 > 0")
    assert expired["expr"] == "oauth_token_operator_credentials_expiry_timestamp_seconds - time() <= 0"
    assert expired["labels"]["severity"] == "critical"
    assert "{{ $labels.namespace }}/{{ $labels.name }}" in soon["annotations"]["summary"]
