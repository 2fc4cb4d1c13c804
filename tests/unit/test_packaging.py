"""The Dockerfile has the properties platform teams expect of an operator image.

Parsed as text (no Docker engine needed): multi-stage build, pinned slim Python 3.11 base, dependencies installed
from hash-checked lock files, numeric non-root USER, read-only-root friendly, exec-form entrypoint, OCI labels.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [arg for name, arg in self.instructions if name == instruction]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions by stage: comments dropped, line continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, f"cannot parse FROM {rest!r}"
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_multi_stage_with_a_named_builder(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[0].name, "the builder stage has a name for COPY --from"
    assert stages[-1].name is None or stages[-1].name != stages[0].name


def test_base_image_is_a_pinned_slim_python_3_11(stages: list[Stage]) -> None:
    text = DOCKERFILE.read_text()
    for stage in stages:
        assert "$" not in stage.base, "literal FROM, readable by scanners and update bots"
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", stage.base), stage.base
        if "@sha256:" not in stage.base:
            # Not verifiable offline: the file must say so and how to pin it.
            assert "digest" in text.lower() and "imagetools inspect" in text
    # The venv is copied between stages: both must run the same interpreter.
    assert len({stage.base for stage in stages}) == 1


def test_dependencies_come_from_the_hash_checked_locks(stages: list[Stage]) -> None:
    builder = stages[0]
    copies = " ".join(builder.args("COPY"))
    assert "pyproject.toml" in copies
    assert "operator/" in copies
    assert "requirements/runtime.txt" in copies and "requirements/build.txt" in copies
    readme = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copies, "setuptools needs the readme pyproject.toml names"
    installs = [cmd for run in builder.args("RUN") for cmd in re.split(r"&&|;", run) if " pip install " in cmd]
    assert installs, "the builder installs with pip"
    for cmd in installs:
        # Every install is either a lock, hash-checked, or the project itself without resolving anything.
        locked = re.search(r"--require-hashes -r requirements/(runtime|build)\.txt\s*$", cmd)
        project = re.search(r"--no-deps\b.*\s\.\s*$", cmd) and "--no-build-isolation" in cmd
        assert locked or project, cmd
    assert any("requirements/runtime.txt" in cmd for cmd in installs)
    assert any(re.search(r"\s\.\s*$", cmd) for cmd in installs), "pip install --no-deps . (the project itself)"


def test_final_stage_ships_only_the_venv(stages: list[Stage], final: Stage) -> None:
    copies = final.args("COPY")
    assert copies, "the final stage copies the venv from the builder"
    assert all(c.startswith(f"--from={stages[0].name} ") for c in copies), copies
    for run in final.args("RUN"):  # only removing the base's package installer, nothing built or installed
        assert "pip install" not in run and "apt" not in run and "rm -rf" in run, run
    env = " ".join(final.args("ENV"))
    assert "/opt/venv/bin" in env


def test_runs_as_numeric_non_root_user(final: Stage) -> None:
    users = final.args("USER")
    assert users, "USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0)
    names = [name for name, _ in final.instructions]
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "COPY")


def test_read_only_root_filesystem_friendly(final: Stage) -> None:
    env = " ".join(final.args("ENV"))
    assert re.search(r"PYTHONDONTWRITEBYTECODE=1", env)
    assert re.search(r"TMPDIR=/tmp", env)
    assert not final.args("VOLUME"), "no anonymous volumes; Kubernetes mounts an emptyDir on /tmp"


def test_exec_form_entrypoint_and_cmd(final: Stage) -> None:
    assert json.loads(final.args("ENTRYPOINT")[-1]) == ["oauth-token-operator"]
    assert json.loads(final.args("CMD")[-1]) == ["run"]


def test_exposes_metrics_and_health_ports(final: Stage) -> None:
    exposed = {port for arg in final.args("EXPOSE") for port in arg.split()}
    assert {"8080", "8081"} <= exposed


def test_oci_labels(final: Stage) -> None:
    labels = " ".join(final.args("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_dockerignore_is_an_allow_list() -> None:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "everything is excluded unless re-included"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {"pyproject.toml", "operator"} <= allowed
    assert not allowed & {".git", ".venv", "tests", ".env"}


def test_test_modules_have_unique_basenames() -> None:
    # tests/ has no packages (rootdir-relative imports): two test files with one basename break collection of
    # the whole suite, which is what `hack/test.sh` runs.
    from collections import Counter

    root = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in root.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
