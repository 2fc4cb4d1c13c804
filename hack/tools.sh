#!/usr/bin/env bash
# Install the pinned CLI tools that the packaging checks (hack/lint-deploy.sh, tests/integration/
# test_chart_render.py) use: helm, kustomize and kubeconform, built with the local Go toolchain from the Go module
# proxy, and checkov from PyPI into its own venv. Also generates the Kubernetes JSON schemas kubeconform needs
# (see hack/k8s-json-schemas.py for why they are not downloaded).
#
# The LAST line of stdout is the bin directory (add it to PATH); progress goes to stderr.
# Idempotent: a tool whose pinned version is already built is not rebuilt. Safe to run concurrently (flock).
#
#   hack/tools.sh              helm, kustomize, kubeconform, checkov, promtool, schemas
#   hack/tools.sh helm         only the named tools (helm kustomize kubeconform checkov promtool schemas)
#
# Environment:
#   OTO_TOOLS_DIR   cache root (default ~/.cache/oauth-token-operator/tools); binaries land in $OTO_TOOLS_DIR/bin
#   PYTHON          interpreter for checkov's venv (default python3)
#
# Measured on 2 cores, Go 1.26, cold Go module cache: helm 68 s, kustomize 12 s, kubeconform 5 s, checkov 30 s,
# schemas 6 s (needs the envtest kube-apiserver from hack/envtest-assets.sh, itself ~15 min cold). Warm: instant.
set -euo pipefail

# Pinned versions (HELM_VERSION, KUSTOMIZE_VERSION, KUBECONFORM_VERSION, CHECKOV_VERSION, PROMTOOL_VERSION and the
# K8S_VERSION the chart/kustomize output is validated against) live in hack/versions.env. Bump them there only.
# shellcheck source=hack/versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${OTO_TOOLS_DIR:-${HOME:-/tmp}/.cache/oauth-token-operator/tools}"
BIN_DIR="$TOOLS_DIR/bin"
PYTHON="${PYTHON:-python3}"

log() { printf 'tools: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

go_env() { env GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GO111MODULE=on "$@"; }

# go_tool NAME MODULE_PKG VERSION [LDFLAGS [TAGS]]: go install into a versioned dir, then link into $BIN_DIR.
go_tool() {
  local name="$1" pkg="$2" version="$3" ldflags="${4:-}" tags="${5:-}"
  local dest="$TOOLS_DIR/versions/$name-$version"
  if [[ ! -x "$dest/$name" ]]; then
    command -v go >/dev/null 2>&1 || die "$name $version needs a Go toolchain on PATH (https://go.dev/dl/)"
    log "building $name $version with $(go env GOVERSION) (go install $pkg@$version)"
    local start=$SECONDS
    mkdir -p "$dest.tmp"
    go_env GOBIN="$dest.tmp" go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$pkg@$version" >&2 \
      || die "go install $pkg@$version failed (see above)"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    log "built $name $version in $((SECONDS - start))s"
  fi
  ln -sfn "$dest/$name" "$BIN_DIR/$name"
}

install_helm() {
  # Helm's Makefile stamps its version and the Kubernetes version it assumes when it has no cluster to ask
  # (`helm template`/`helm lint`: .Capabilities.KubeVersion and the Chart.yaml kubeVersion check): the minor of the
  # k8s.io/client-go it is built with. Without these a go-installed helm claims "v3.22" and Kubernetes v1.20,
  # and our chart's `kubeVersion: ">=1.27.0-0"` would refuse to render.
  local dest="$TOOLS_DIR/versions/helm-$HELM_VERSION"
  local ld="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  if [[ ! -x "$dest/helm" ]]; then
    local gomod clientgo kmajor kminor
    gomod="$(go_env go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    clientgo="$(sed -nE 's#^[[:space:]]*k8s\.io/client-go[[:space:]]+(v[0-9.]+).*#\1#p' "$gomod" | head -n1)"
    [[ "$clientgo" =~ ^v0\.([0-9]+)\. ]] || die "cannot read the k8s.io/client-go version of helm $HELM_VERSION from $gomod"
    kmajor=1 kminor="${BASH_REMATCH[1]}"
    local pkg
    for pkg in pkg/lint/rules pkg/chartutil; do
      ld+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kminor"
    done
  fi
  go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$ld"
}

install_kustomize() {
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" \
    "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$KUSTOMIZE_VERSION"
}

install_kubeconform() {
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" "-X main.version=$KUBECONFORM_VERSION"
}

install_promtool() {
  # Prometheus's promtool: tests/unit/test_dashboard.py checks every dashboard and alert expression with it.
  # Its Go module is github.com/prometheus/prometheus at v0.X.Y (Prometheus 3.X.Y is v0.3XX.Y).
  [[ "$PROMTOOL_VERSION" =~ ^v0\.([0-9]+)([0-9]{2})\.([0-9]+)$ ]] \
    || die "PROMTOOL_VERSION must be a Go module version like v0.316.0, got '$PROMTOOL_VERSION'"
  local release="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"
  local ld="-X github.com/prometheus/common/version.Version=$release"
  # remove_all_sd (Prometheus's own build tag) leaves out the service-discovery plugins (AWS, Azure, GCE, ... SDKs):
  # `promtool check rules` needs only the PromQL parser, and the build is several times smaller.
  go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION" "$ld" remove_all_sd
}

install_checkov() {
  # A venv of its own: checkov 3.3.30 brings ~100 packages (boto3, numpy, networkx, ...) and pins packaging==23.2,
  # which would downgrade .venv's packaging 26.x (checked with `pip install --dry-run` into .venv).
  local venv="$TOOLS_DIR/versions/checkov-$CHECKOV_VERSION"
  if [[ ! -x "$venv/bin/checkov" ]]; then
    log "installing checkov $CHECKOV_VERSION from PyPI into $venv"
    local start=$SECONDS
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2 \
      || { rm -rf "$venv"; die "pip install checkov==$CHECKOV_VERSION failed"; }
    log "installed checkov in $((SECONDS - start))s"
  fi
  ln -sfn "$venv/bin/checkov" "$BIN_DIR/checkov"
}

install_schemas() {
  # Needs the project's venv (tests/support/envtest.py imports cryptography, PyYAML and kubernetes).
  local py="${SCHEMAS_PYTHON:-$REPO_ROOT/.venv/bin/python}"
  [[ -x "$py" ]] || py="$PYTHON"
  "$py" "$REPO_ROOT/hack/k8s-json-schemas.py" --out "$TOOLS_DIR/schemas" >&2 \
    || die "generating the Kubernetes JSON schemas failed (see above)"
}

main() {
  mkdir -p "$BIN_DIR"
  local tools=("$@")
  [[ ${#tools[@]} -gt 0 ]] || tools=(helm kustomize kubeconform checkov promtool schemas)
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
  fi
  local t
  for t in "${tools[@]}"; do
    case "$t" in
      helm|kustomize|kubeconform|checkov|promtool|schemas) "install_$t" ;;
      *) die "unknown tool '$t' (helm kustomize kubeconform checkov promtool schemas)" ;;
    esac
  done
  printf '%s\n' "$BIN_DIR"
}

main "$@"
