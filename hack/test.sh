#!/usr/bin/env bash
# The project's whole check, exactly what CI runs (.ci/run calls this): set up, lint, type-check, then every
# test tier (unit, integration against a real kube-apiserver and real OAuth servers, end to end with the
# operator as its own process). Extra arguments go to pytest (e.g. `hack/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh

echo "== ruff" >&2
.venv/bin/ruff check operator tests bench hack
echo "== mypy --strict" >&2
.venv/bin/mypy
echo "== pytest" >&2
.venv/bin/python -m pytest -p no:cacheprovider "${@:-tests}"
