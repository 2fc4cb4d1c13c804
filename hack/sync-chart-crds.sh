#!/usr/bin/env bash
# Copy the generated CRD (crds/, the single source) to the two places that cannot read it directly:
#   charts/oauth-token-operator/files/crds/  (Helm cannot read files outside the chart)
#   deploy/crds/                             (kustomize v5 refuses files outside a kustomization's root)
# and Kopf's peering CRDs from deploy/components/peering/ to the chart.
# tests/unit/test_chart_static.py fails when a copy drifts. `--check` only reports drift (exit 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=false
[[ "${1:-}" == "--check" ]] && check=true
pairs=(
  "crds/oauth-token-operator.dev_oauthclientcredentials.yaml charts/oauth-token-operator/files/crds/oauth-token-operator.dev_oauthclientcredentials.yaml"
  "crds/oauth-token-operator.dev_oauthclientcredentials.yaml deploy/crds/oauth-token-operator.dev_oauthclientcredentials.yaml"
  "deploy/components/peering/kopf-peering-crds.yaml charts/oauth-token-operator/files/kopf-peering-crds.yaml"
)
status=0
for pair in "${pairs[@]}"; do
  read -r src dst <<<"$pair"
  if ! cmp -s "$src" "$dst"; then
    if $check; then
      echo "out of date: $dst (run hack/sync-chart-crds.sh)" >&2
      status=1
    else
      mkdir -p "$(dirname "$dst")" && cp "$src" "$dst" && echo "updated $dst" >&2
    fi
  fi
done
exit "$status"
