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
hack/lint.sh
echo "== unit tests" >&2
.venv/bin/python -m pytest -p no:cacheprovider -q tests/unit "$@"
echo "== hack/check.sh passed in $((SECONDS - start))s (the full check is hack/test.sh)" >&2
