#!/usr/bin/env bash
# Regenerate every derived file from its single source (see hack/generate.py for the list): the CRD and its
# copies, docs/api.md, deploy/'s RBAC, the settings and values documentation of the chart.
#   hack/generate.sh           rewrite what is stale
#   hack/generate.sh --check   write nothing; print a diff of what is stale and exit 1 (hack/test.sh runs this)
#   hack/generate.sh --list    the generated paths
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || hack/setup.sh >&2
exec .venv/bin/python hack/generate.py "$@"
