"""The pinned versions of external tools, read from ``hack/versions.env`` (the one place they live).

The same rules as ``hack/versions.sh``: ``NAME=value`` lines, ``#`` comments, and an environment variable of the
same name overrides the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["VERSIONS_FILE", "pinned", "read_versions"]

VERSIONS_FILE = Path(__file__).resolve().parents[2] / "hack" / "versions.env"
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=([^\s\"'$]+)$")


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Every ``NAME=value`` of the file (no environment overrides); refuses a line of any other shape."""
    versions: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not a NAME=value line: {line!r}")
        versions[match.group(1)] = match.group(2)
    return versions


def pinned(name: str) -> str:
    """The version ``name`` (e.g. ``K8S_VERSION``): ``$name`` if set, else ``hack/versions.env``'s."""
    override = os.environ.get(name)
    if override:
        return override
    versions = read_versions()
    if name not in versions:
        raise KeyError(f"{name} is not pinned in {VERSIONS_FILE}")
    return versions[name]
