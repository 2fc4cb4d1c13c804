#!/usr/bin/env bash
# Resolve (and if needed build) the binaries of a real Kubernetes control plane
# for tests: etcd, kube-apiserver and kube-controller-manager, plus a kubectl of
# the same version (tests drive the cluster the way users do).
#
# The LAST line of stdout is the directory that holds the four binaries;
# progress and diagnostics go to stderr. Idempotent and safe to run
# concurrently (a lock serialises builds).
#
# Resolution order:
#   1. $KUBEBUILDER_ASSETS, if it holds etcd and kube-apiserver. If it lacks
#      kube-controller-manager or kubectl, its binaries are symlinked into a
#      cache dir and the missing ones are built there at its kube-apiserver's
#      version; that cache dir is reported.
#   2. The cache dir ${OTO_ENVTEST_CACHE:-~/.cache/oauth-token-operator/envtest}/k8s-$K8S_VERSION,
#      if its stamp file says a build finished there. A cache from before kubectl
#      was part of the set gets only kubectl built (checked, then moved into
#      place atomically and recorded in the stamp).
#   3. A build from source with the local Go toolchain, from the Go module proxy:
#      kube-apiserver, kube-controller-manager and kubectl from k8s.io/kubernetes,
#      etcd from go.etcd.io/etcd/server/v3. The stamp file is written last.
#
# Environment:
#   K8S_VERSION        Kubernetes release to build (default: hack/versions.env)
#   ETCD_VERSION       etcd release to build (default: hack/versions.env, the one that Kubernetes release pins)
#   OTO_ENVTEST_CACHE  cache root (default ~/.cache/oauth-token-operator/envtest)
#   KUBEBUILDER_ASSETS prebuilt binaries to use instead (e.g. from setup-envtest)
#
# Exit codes: 0 ok, 3 = cannot get the binaries here (no assets and no Go),
# anything else = the build failed (see stderr).
#
# A cold build takes ~5-6 minutes on 2 cores (measured: 316 s, ~3.5 GiB Go build
# cache + 1.5 GiB module cache, before kubectl joined the set); adding kubectl to an
# existing cache takes ~25 s (measured: 23 s, it shares most packages with the rest);
# a warm run returns at once.
set -euo pipefail

# shellcheck source=hack/versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"  # K8S_VERSION, ETCD_VERSION (the environment wins)
CACHE_ROOT="${OTO_ENVTEST_CACHE:-${HOME:-/tmp}/.cache/oauth-token-operator/envtest}"
BINARIES=(etcd kube-apiserver kube-controller-manager)  # the control plane
ALL_BINARIES=("${BINARIES[@]}" kubectl)                  # ... and the client tests drive it with
STAMP=".envtest-complete"

log() { printf 'envtest-assets: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
unavailable() { log "UNAVAILABLE: $*"; exit 3; }

has_bins() { # dir bin...
  local dir="$1"; shift
  local b
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

require_go() {
  if ! command -v go >/dev/null 2>&1; then
    unavailable "no Go toolchain on PATH and no usable KUBEBUILDER_ASSETS. Either install Go >= 1.25 (https://go.dev/dl/, then re-run; the first build takes ~5 min) or point KUBEBUILDER_ASSETS at a directory with etcd, kube-apiserver (and ideally kube-controller-manager), e.g. KUBEBUILDER_ASSETS=\$(setup-envtest use -p path 1.35.x)."
  fi
}

# Environment for every go command we run: a hermetic module mode, no workspace,
# no cgo; GOCACHE/GOMODCACHE stay at their defaults so rebuilds are fast.
go_env() {
  env GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GO111MODULE=on "$@"
}

# Path of a module's go.mod inside the module cache (downloads the module).
module_gomod() { # module@version
  local json
  json="$(go_env go mod download -json "$1")" || die "go mod download $1 failed"
  printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' | head -n1
}

k8s_ldflags() { # version
  local v="$1" major minor commit date
  major="$(printf '%s' "$v" | sed -E 's/^v([0-9]+)\..*/\1/')"
  minor="$(printf '%s' "$v" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')"
  commit="0000000000000000000000000000000000000000"
  date="1970-01-01T00:00:00Z"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${pkg}.gitVersion=${v} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    flags+=" -X ${pkg}.gitCommit=${commit} -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${date}"
  done
  printf '%s' "$flags"
}

# build_k8s VERSION OUTDIR CMD...   (CMD e.g. kube-apiserver)
build_k8s() {
  local version="$1" out="$2"; shift 2
  local cmds=("$@")
  [[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "K8S_VERSION must look like v1.35.4, got '$version'"
  local staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
  local bdir="$CACHE_ROOT/build/k8s-$version"
  mkdir -p "$bdir" "$out"

  log "resolving k8s.io/kubernetes@$version from the Go module proxy"
  local upstream_mod
  upstream_mod="$(module_gomod "k8s.io/kubernetes@$version")"
  [[ -f "$upstream_mod" ]] || die "could not find go.mod of k8s.io/kubernetes@$version"

  # Staging modules: every 'k8s.io/X => ./staging/src/k8s.io/X' replace upstream.
  local staging
  staging="$(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[A-Za-z0-9._-]+)[[:space:]]+=>[[:space:]]+\./staging/src/.*#\2#p' "$upstream_mod" | sort -u)"
  [[ -n "$staging" ]] || die "found no staging replace directives in $upstream_mod"
  local godir
  godir="$(sed -nE 's/^go[[:space:]]+([0-9.]+)[[:space:]]*$/\1/p' "$upstream_mod" | head -n1)"
  local godebug
  godebug="$(sed -nE 's/^godebug[[:space:]]+(.*)$/\1/p' "$upstream_mod" | head -n1)"

  {
    echo "// Generated by hack/envtest-assets.sh: throwaway module to build Kubernetes $version binaries."
    echo "module oauth-token-operator.local/envtest/k8s"
    echo
    echo "go ${godir:-1.25.0}"
    [[ -n "$godebug" ]] && echo "godebug $godebug"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    local c
    for c in "${cmds[@]}"; do echo "tool k8s.io/kubernetes/cmd/$c"; done
    echo
    echo "replace ("
    local m
    while IFS= read -r m; do echo "	$m => $m $staging_version"; done <<<"$staging"
    echo ")"
  } >"$bdir/go.mod"
  [[ -f "$bdir/go.sum" ]] || : >"$bdir/go.sum"

  log "go mod tidy in $bdir (downloads modules on first run)"
  (cd "$bdir" && go_env go mod tidy) >&2 || die "go mod tidy failed for Kubernetes $version (see above)"

  local pkgs=() c
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "go build ${cmds[*]} @ $version (the slow part: ~4-5 min cold on 2 cores)"
  (cd "$bdir" && go_env go build -trimpath -ldflags "$(k8s_ldflags "$version")" -o "$out/" "${pkgs[@]}") >&2 \
    || die "go build of ${cmds[*]} @ $version failed (see above)"
}

build_etcd() { # VERSION OUTDIR
  local version="$1" out="$2"
  local bdir="$CACHE_ROOT/build/etcd-$version"
  mkdir -p "$bdir" "$out"
  cat >"$bdir/go.mod" <<EOF
// Generated by hack/envtest-assets.sh: throwaway module to build etcd $version.
module oauth-token-operator.local/envtest/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $version

tool go.etcd.io/etcd/server/v3
EOF
  [[ -f "$bdir/go.sum" ]] || : >"$bdir/go.sum"
  log "go mod tidy + build etcd $version in $bdir"
  (cd "$bdir" && go_env go mod tidy) >&2 || die "go mod tidy failed for etcd $version"
  (cd "$bdir" && go_env go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) >&2 \
    || die "go build of etcd $version failed"
}

# check_version BIN EXPECTED: die unless BIN reports Kubernetes EXPECTED.
check_version() {
  local bin="$1" want="$2" got
  if [[ "$(basename "$bin")" == kubectl ]]; then
    got="$("$bin" version --client 2>&1 | sed -nE 's/^Client Version: (.*)$/Kubernetes \1/p' | head -n1 || true)"
  else
    got="$("$bin" --version 2>&1 || true)"
  fi
  [[ "$got" == "Kubernetes $want" ]] || die "built $(basename "$bin") reports '$got', expected 'Kubernetes $want'"
}

# A control plane without kubectl still runs every test but those that drive kubectl (they fail, saying so):
# better than refusing a cached or provided control plane on a machine without Go.
kubectl_unavailable() {
  log "WARNING: no kubectl beside the control plane and no Go toolchain to build it; tests that run kubectl will fail"
}

# add_kubectl VERSION DEST: build kubectl beside binaries already in DEST. It is built in a scratch dir,
# checked, then renamed into place, so DEST never holds a half-written kubectl; the stamp records it.
add_kubectl() {
  local version="$1" dest="$2" start=$SECONDS
  local scratch="$dest/.kubectl-build"
  rm -rf "$scratch"
  log "building kubectl $version into $dest (beside the cached control plane)"
  build_k8s "$version" "$scratch" kubectl
  check_version "$scratch/kubectl" "$version"
  mv -f "$scratch/kubectl" "$dest/kubectl"
  rm -rf "$scratch"
  if [[ -f "$dest/$STAMP" ]]; then
    printf 'kubectl=%s\nkubectl_build_seconds=%s\n' "$version" "$((SECONDS - start))" >>"$dest/$STAMP"
  fi
  log "kubectl built in $((SECONDS - start))s"
}

with_lock() { # run "$@" holding the cache lock
  mkdir -p "$CACHE_ROOT"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_ROOT/.lock"
    flock 9
  fi
  "$@"
}

# ---------------------------------------------------------------------------
# 1. KUBEBUILDER_ASSETS
# ---------------------------------------------------------------------------
from_kubebuilder_assets() {
  local src="$1"
  if has_bins "$src" "${ALL_BINARIES[@]}"; then
    printf '%s\n' "$src"
    return
  fi
  # kube-controller-manager and/or kubectl missing: build them at the apiserver's version.
  local apiver
  apiver="$("$src/kube-apiserver" --version 2>/dev/null | sed -nE 's/^Kubernetes (v1\.[0-9]+\.[0-9]+).*/\1/p')" || true
  if [[ -z "$apiver" ]]; then
    log "could not read the version of $src/kube-apiserver; building the missing binaries at $K8S_VERSION"
    apiver="$K8S_VERSION"
  fi
  local key real
  real="$(cd "$src" && pwd -P)"
  key="$(printf '%s' "$real" | cksum | cut -d' ' -f1)"
  local dest="$CACHE_ROOT/kubebuilder-$key-k8s-$apiver"
  mkdir -p "$dest"
  local b missing=()
  for b in "${ALL_BINARIES[@]}"; do
    if has_bins "$src" "$b"; then
      ln -sfn "$real/$b" "$dest/$b"
    elif [[ ! -f "$dest/$STAMP" ]] || ! has_bins "$dest" "$b" || [[ -L "$dest/$b" ]]; then
      missing+=("$b")  # not provided, and not (completely) built here yet
    fi
  done
  if [[ "${missing[*]}" == kubectl ]] && ! command -v go >/dev/null 2>&1; then
    kubectl_unavailable
    missing=()
  fi
  if ((${#missing[@]})); then
    require_go
    log "KUBEBUILDER_ASSETS=$src lacks ${missing[*]}; building ($apiver) into $dest"
    rm -f "$dest/$STAMP" "${missing[@]/#/$dest/}"
    build_k8s "$apiver" "$dest" "${missing[@]}"
    for b in "${missing[@]}"; do check_version "$dest/$b" "$apiver"; done
    printf 'kubebuilder_assets=%s\nbuilt=%s\nversion=%s\n' "$src" "${missing[*]}" "$apiver" >"$dest/$STAMP"
  fi
  printf '%s\n' "$dest"
}

# ---------------------------------------------------------------------------
# 2./3. cache, else build
# ---------------------------------------------------------------------------
from_cache_or_build() {
  local dest="$CACHE_ROOT/k8s-$K8S_VERSION"
  if [[ -f "$dest/$STAMP" ]] && has_bins "$dest" "${BINARIES[@]}"; then
    if ! has_bins "$dest" kubectl; then
      if command -v go >/dev/null 2>&1; then
        add_kubectl "$K8S_VERSION" "$dest"
      else
        kubectl_unavailable
      fi
    fi
    printf '%s\n' "$dest"
    return
  fi
  require_go
  log "no cached binaries in $dest; building Kubernetes $K8S_VERSION + etcd $ETCD_VERSION with $(go version)"
  rm -f "$dest/$STAMP"
  mkdir -p "$dest"
  local start=$SECONDS
  build_etcd "$ETCD_VERSION" "$dest"
  build_k8s "$K8S_VERSION" "$dest" kube-apiserver kube-controller-manager kubectl

  # Sanity-check what we built before declaring victory.
  local b
  for b in kube-apiserver kube-controller-manager kubectl; do check_version "$dest/$b" "$K8S_VERSION"; done
  "$dest/etcd" --version >&2 || die "built etcd does not run"

  printf 'k8s=%s\netcd=%s\nkubectl=%s\ngo=%s\nbuild_seconds=%s\n' \
    "$K8S_VERSION" "$ETCD_VERSION" "$K8S_VERSION" "$(go env GOVERSION)" "$((SECONDS - start))" >"$dest/$STAMP"
  log "built in $((SECONDS - start))s: $dest"
  printf '%s\n' "$dest"
}

main() {
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if has_bins "$KUBEBUILDER_ASSETS" etcd kube-apiserver; then
      if has_bins "$KUBEBUILDER_ASSETS" "${ALL_BINARIES[@]}"; then
        printf '%s\n' "$KUBEBUILDER_ASSETS"
        return
      fi
      with_lock from_kubebuilder_assets "$KUBEBUILDER_ASSETS"
      return
    fi
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks etcd or kube-apiserver; ignoring it"
  fi
  # Fast path without the lock.
  local dest="$CACHE_ROOT/k8s-$K8S_VERSION"
  if [[ -f "$dest/$STAMP" ]] && has_bins "$dest" "${ALL_BINARIES[@]}"; then
    printf '%s\n' "$dest"
    return
  fi
  with_lock from_cache_or_build
}

# Sourced (hack/kubelet.sh reuses build_k8s and its staging replaces), it only defines the functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
