#!/usr/bin/env bash
# Sets up everything the demo and the tests need, from the project's own files, idempotently:
#   .venv with the operator and its test extras (PyPI), and the envtest binaries (kube-apiserver, etcd,
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
# Reinstall only when the project's metadata changed (a stamp keyed by pyproject.toml's hash).
stamp=.venv/.oauth-token-operator-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing the operator and test dependencies into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  echo "$want" > "$stamp"
fi

echo "setup: locating or building the envtest binaries (first build takes a few minutes)" >&2
hack/envtest-assets.sh >&2
