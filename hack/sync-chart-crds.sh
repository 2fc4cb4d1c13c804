#!/usr/bin/env bash
# Kept for muscle memory: the CRD copies are now written, with every other derived file, by hack/generate.sh.
#   hack/sync-chart-crds.sh [--check]  ==  hack/generate.sh [--check]
exec "$(dirname "${BASH_SOURCE[0]}")/generate.sh" "$@"
