#!/usr/bin/env bash
# Regenerates the hash-pinned lock files from pyproject.toml, the one place that names our dependencies (with
# compatible ranges, because the package is also a library for `token`):
#
#   requirements/runtime.txt  [project].dependencies            -> Dockerfile, hack/setup.sh
#   requirements/test.txt     the `test` extra, within runtime.txt's pins (ruff, mypy, pytest, ...)
#   requirements/build.txt    [build-system].requires, plus pip  -> the Dockerfile and hack/setup.sh build the
#                             package from these (--no-build-isolation), so nothing unpinned is fetched
#
# `hack/lock.sh` keeps every existing pin and only adds or drops what pyproject.toml's changes require (a new
# dependency is this one command); `hack/lock.sh --upgrade` moves everything to the newest allowed versions,
# `hack/lock.sh --upgrade-package kopf` just one. Then run hack/test.sh and commit pyproject.toml and requirements/.
#
# The locks are universal (one file for every platform and Python >= 3.11, with markers where they differ) and
# carry the hashes of every file of each pinned release. The locking tool is uv, pinned in hack/versions.env and installed
# once into ~/.cache/oauth-token-operator/lock-tools.
set -euo pipefail
cd "$(dirname "$0")/.."

source hack/versions.sh  # UV_VERSION (hack/versions.env)
python=${PYTHON:-python3}
tools="${HOME:-/tmp}/.cache/oauth-token-operator/lock-tools"
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock -w 600 9
venv="$tools/uv-$UV_VERSION"
if [[ ! -x $venv/bin/uv ]]; then
  echo "lock: installing uv $UV_VERSION into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "uv==$UV_VERSION"
fi
uv=$venv/bin/uv

mkdir -p requirements
common=(--quiet --generate-hashes --universal --python-version 3.11 --custom-compile-command hack/lock.sh "$@")

"$uv" pip compile "${common[@]}" pyproject.toml -o requirements/runtime.txt
"$uv" pip compile "${common[@]}" pyproject.toml --extra test -c requirements/runtime.txt -o requirements/test.txt

# [build-system].requires (read from pyproject.toml, so it is named once) and pip itself.
build_in=$(mktemp --suffix=.in)
trap 'rm -f "$build_in"' EXIT
"$python" - >"$build_in" <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
print("pip")
EOF
"$uv" pip compile "${common[@]}" "$build_in" -o requirements/build.txt
# The temporary input's name would otherwise make every run differ.
sed -i "s|$build_in|pyproject.toml ([build-system].requires) and pip|" requirements/build.txt

echo "lock: requirements/ updated:" >&2
git status --short requirements/ >&2 || true
