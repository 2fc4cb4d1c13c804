#!/usr/bin/env bash
# The fast local check, for every edit: ruff, mypy --strict, the generated files' freshness and the unit tests.
# No envtest, no built tools, no network: well under a minute on 2 cores. hack/test.sh is the whole check (what
# CI runs: deploy linting, integration and e2e tiers against a real API server).
#   hack/check.sh                 everything above
#   hack/check.sh -k dashboard    extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || hack/setup.sh
start=$SECONDS
echo "== ruff" >&2
.venv/bin/ruff check operator tests bench hack
echo "== import layers (.importlinter)" >&2
PYTHONPATH=operator:. .venv/bin/lint-imports
echo "== mypy --strict" >&2
.venv/bin/mypy
.venv/bin/mypy --strict --explicit-package-bases tests/support hack/demo.py hack/generate.py
echo "== generated files (hack/generate.sh --check)" >&2
hack/generate.sh --check >/dev/null || { hack/generate.sh --check | head -n 60; exit 1; }
echo "== unit tests" >&2
.venv/bin/python -m pytest -p no:cacheprovider -q tests/unit "$@"
echo "== hack/check.sh passed in $((SECONDS - start))s (the full check is hack/test.sh)" >&2
