#!/usr/bin/env bash
# Sets up everything the demo and the tests need, from the project's own files, idempotently:
#   .venv with the operator and its locked test dependencies (requirements/test.txt, from PyPI), and the envtest binaries (kube-apiserver, etcd,
#   kube-controller-manager) from KUBEBUILDER_ASSETS or built once from the Go module proxy into a cache.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || { echo "setup: Python 3.11+ is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $python" >&2
  "$python" -m venv .venv
fi
# Exactly the locked, hash-checked versions (requirements/*.txt; hack/lock.sh updates them), then the project
# itself without resolving anything. Reinstall only when pyproject.toml or a lock changed (a stamp of their hashes).
stamp=.venv/.oauth-token-operator-installed
want=$(cat pyproject.toml requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing the locked dependencies and the operator into .venv" >&2
  .venv/bin/python -m pip install --quiet --require-hashes -r requirements/build.txt
  .venv/bin/python -m pip install --quiet --require-hashes -r requirements/test.txt
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

echo "setup: locating or building the envtest binaries (first build takes a few minutes)" >&2
hack/envtest-assets.sh >&2
