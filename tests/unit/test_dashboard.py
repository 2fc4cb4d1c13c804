"""The chart's Grafana dashboard loads, shows what an operator of the operator needs, and queries only metrics the
operator exports (a renamed metric would otherwise leave an empty panel that nobody notices).

promtool parses every expression in tests/integration/test_monitoring.py; here, without any tool, the JSON and the
metric names are checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.support.promql import PENDING_SERIES, exported_series, series_in

DASHBOARD = (Path(__file__).resolve().parents[2] / "charts" / "oauth-token-operator" / "files" / "dashboards"
             / "oauth-token-operator.json")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "oauth-token-operator" and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], f"{panel['title']}: a panel says what it shows"
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_covers_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    used = {name for _, expr in expressions(dashboard) for name in series_in(expr)}
    assert used >= {
        "oauth_token_operator_resources",  # tokens by Ready state
        "oauth_token_operator_token_expiry_timestamp_seconds",  # time to expiry per resource
        "oauth_token_operator_token_requests_total",  # request rate by reason and host
        "oauth_token_operator_token_request_duration_seconds_bucket",  # latency by host
        "oauth_token_operator_consecutive_failures",
        "oauth_token_operator_kube_requests_total",
        "oauth_token_operator_credentials_expiry_timestamp_seconds",
    }
    rate = [expr for _, expr in expressions(dashboard) if "token_requests_total" in expr]
    assert any(re.search(r"by \(reason, host\)", expr) for expr in rate)


def test_dashboard_names_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    unknown = {(title, name) for title, expr in expressions(dashboard) for name in series_in(expr)
               if name not in exported}
    assert not unknown, f"panels query series the operator does not export: {sorted(unknown)}"
    for variable in dashboard["templating"]["list"]:
        query = variable.get("definition", "")
        for metric in re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)", query):
            assert metric in exported, f"variable {variable['name']} reads {metric}, which is not exported"


def test_the_name_check_catches_a_typo() -> None:
    # The check above must be able to fail: a misspelt series is not in the exported set.
    assert series_in("rate(oauth_token_operator_token_request_total[5m])") - exported_series() == {
        "oauth_token_operator_token_request_total"}
    assert PENDING_SERIES <= exported_series()
