#!/usr/bin/env bash
# One command to see the operator work: installs what it needs (hack/setup.sh), then starts a local
# Kubernetes API server and OAuth 2.0 server, runs the operator, applies a sample resource and shows the token
# Secret it keeps fresh. `hack/demo.sh --keep` leaves everything running for a look around with kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
exec .venv/bin/python hack/demo.py "$@"
