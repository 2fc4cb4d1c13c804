"""The lock files (requirements/*.txt, made by hack/lock.sh) pin, with hashes, exactly what pyproject.toml asks for.

A dependency added to pyproject.toml without re-running hack/lock.sh fails here, before the Dockerfile's
``--require-hashes`` install or hack/setup.sh would fail less clearly.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def pins(name: str) -> dict[str, tuple[Version, int]]:
    """{canonical name: (pinned version, number of hashes)} of one lock file."""
    text = (REPO_ROOT / "requirements" / name).read_text()
    found: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            found[canonicalize_name(match.group(1))] = (Version(match.group(2)), block.count("--hash=sha256:"))
    return found


@pytest.mark.parametrize(("lock", "specs"), [
    ("runtime.txt", PYPROJECT["project"]["dependencies"]),
    ("test.txt", PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]),
    ("build.txt", [*PYPROJECT["build-system"]["requires"], "pip"]),
])
def test_every_declared_requirement_is_pinned_within_its_range_with_hashes(lock: str, specs: list[str]) -> None:
    locked = pins(lock)
    assert locked, f"{lock} pins nothing"
    for requirement in map(Requirement, specs):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements/{lock}: run hack/lock.sh"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"requirements/{lock} pins {name}=={version}, outside {requirement}: run hack/lock.sh"
    assert all(hashes for _, hashes in locked.values()), f"every pin in {lock} carries its hashes"


def test_tests_run_on_the_runtime_pins_and_the_linters_are_pinned_exactly() -> None:
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert {name: v for name, (v, _) in runtime.items()} == {name: test[name][0] for name in runtime}, \
        "test.txt must pin every runtime dependency at the runtime lock's version"
    assert {"ruff", "mypy"} <= set(test)
