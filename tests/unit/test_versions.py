"""External tool versions live in hack/versions.env only, and shell and Python read it the same way."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from tests.support.versions import VERSIONS_FILE, pinned, read_versions

HACK = Path(__file__).resolve().parents[2] / "hack"


def shell_versions(env: dict[str, str]) -> dict[str, str]:
    script = f'source "{HACK / "versions.sh"}" && env -0'
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=True, timeout=30).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.endswith("_VERSION")}


def test_shell_and_python_read_the_same_versions() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_VERSION")}
    assert shell_versions(clean) == read_versions()
    assert {"K8S_VERSION", "ETCD_VERSION", "HELM_VERSION", "KUSTOMIZE_VERSION", "KUBECONFORM_VERSION",
            "CHECKOV_VERSION", "PROMTOOL_VERSION"} <= set(read_versions())


def test_the_environment_overrides_a_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_VERSION")}
    assert shell_versions({**clean, "K8S_VERSION": "v1.34.9"})["K8S_VERSION"] == "v1.34.9"
    monkeypatch.setenv("K8S_VERSION", "v1.34.9")
    assert pinned("K8S_VERSION") == "v1.34.9"
    monkeypatch.delenv("K8S_VERSION")
    assert pinned("K8S_VERSION") == read_versions()["K8S_VERSION"]


def test_a_malformed_line_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "versions.env"
    bad.write_text('HELM_VERSION="v3.22.0"\n')
    with pytest.raises(ValueError, match="not a NAME=value line"):
        read_versions(bad)


def test_no_script_pins_a_version_of_its_own() -> None:
    # A default like K8S_VERSION="${K8S_VERSION:-v1.35.4}" or KEYCLOAK_VERSION=26.7.3 in a script would be a second
    # source: every *_VERSION with a literal value belongs in hack/versions.env (see its header for how to add one).
    literal = re.compile(r'^\s*(?:export\s+|local\s+)?([A-Z][A-Z0-9_]*_VERSION)="?v?[0-9]|'
                         r'\$\{([A-Z][A-Z0-9_]*_VERSION):-"?v?[0-9]', re.MULTILINE)
    offenders = {f"{p.name}: {m.group(1) or m.group(2)}" for p in HACK.glob("*.sh")
                 for m in literal.finditer(p.read_text())}
    assert not offenders, f"versions pinned outside {VERSIONS_FILE}: {sorted(offenders)}"
