"""What the operator exports to Prometheus, and checks of PromQL written against it (dashboard, alerts).

:func:`exported_series` is the ONE list of series names a dashboard or an alert may use: read from a live
:class:`~oauth_token_operator.metrics.Metrics` registry (counters get ``_total``, histograms ``_bucket``/``_sum``/
``_count``), plus :data:`PENDING_SERIES`, the names ``API.md`` promises that another branch is adding.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from oauth_token_operator.metrics import Metrics

__all__ = ["PENDING_SERIES", "check_rules", "exported_series", "grafana_expr", "series_in"]

#: Series the public contract (API.md) names but metrics.py may not export yet. Drop a name here once
#: ``Metrics`` exports it (test_dashboard.py then still passes, because the registry lists it).
PENDING_SERIES = frozenset({
    "oauth_token_operator_credentials_expiry_timestamp_seconds",  # issue 12: credentials that expire
})

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",)}


def exported_series() -> frozenset[str]:
    """Every series name the operator's registry can expose, plus :data:`PENDING_SERIES`."""
    names = set(PENDING_SERIES)
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return frozenset(names)


#: Grafana's built-in variables and ours, replaced by a sample value before PromQL parsing.
_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "atan2", "inf", "nan"}


def grafana_expr(expr: str) -> str:
    """A panel's expression with Grafana's interval variables replaced, so that promtool can parse it."""
    for name, value in _GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    return expr


def series_in(expr: str) -> set[str]:
    """The series names an expression selects (identifiers that are not functions, keywords or label names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def check_rules(promtool: Path, groups: Iterable[dict[str, Any]], workdir: Path) -> None:
    """``promtool check rules`` on a rules file holding ``groups``; fails with promtool's words."""
    path = workdir / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": list(groups)}, sort_keys=False))
    result = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout, result.stdout
