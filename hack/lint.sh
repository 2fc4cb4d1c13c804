#!/usr/bin/env bash
# The static checks, shared by hack/check.sh (the fast loop) and hack/test.sh (what CI runs): ruff, the import
# layers (.importlinter), mypy --strict, and the freshness of every generated file (hack/generate.sh --check
# writes nothing and prints the diff).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff" >&2
.venv/bin/ruff check operator tests bench hack
echo "== import layers (.importlinter)" >&2
PYTHONPATH=operator:. .venv/bin/lint-imports
echo "== mypy --strict" >&2
.venv/bin/mypy
.venv/bin/mypy --strict --explicit-package-bases tests/support tests/pods hack/demo.py hack/generate.py
echo "== generated files are fresh (hack/generate.sh --check)" >&2
hack/generate.sh --check >/dev/null || {
  hack/generate.sh --check | head -n 60
  echo "lint: generated files are stale: run hack/generate.sh and commit" >&2
  exit 1
}
