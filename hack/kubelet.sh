#!/usr/bin/env bash
# What the real-pod tier (tests/pods/) needs beside the test API server: Debian's containerd, runc and
# busybox-static (apt-get, when missing), and a kubelet of the SAME Kubernetes version as the test API server,
# built once from the Go module proxy into ${OTO_KUBELET_CACHE:-~/.cache/oauth-token-operator/kubelet}/k8s-<v>.
#
# The LAST line of stdout is the directory holding `kubelet`; progress goes to stderr. Idempotent and safe to
# run concurrently (a lock serialises installs and builds).
#
# The version is read from the kube-apiserver that hack/envtest-assets.sh resolves (so KUBEBUILDER_ASSETS and
# K8S_VERSION are honoured exactly as for the API server), and the build is envtest-assets.sh's own build_k8s
# (sourced): the same throwaway module with the k8s.io staging replaces, the same version ldflags.
#
# Exit codes: 0 ok, 3 = cannot have it here (not root for apt-get, no Go, not Linux), anything else = failure.
#
# Measured on 2 cores shared with other builds (load ~12): with an empty kubelet cache after the envtest build
# (its Go module and build caches warm; go mod tidy still downloads ~40 modules only the kubelet needs) the
# build takes 100 s; rebuilding with a warm Go build cache 25-33 s; a warm run (nothing to do) 0.4 s. The stamp
# file records the build time (KUBELET_BUILD_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBELET_CACHE="${OTO_KUBELET_CACHE:-${HOME:-/tmp}/.cache/oauth-token-operator/kubelet}"
PACKAGES=(containerd runc busybox-static)
KUBELET_STAMP=".kubelet-complete"

say() { printf 'kubelet: %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
unavailable() { say "UNAVAILABLE: $*"; exit 3; }

[[ "$(uname -s)" == Linux ]] || unavailable "a kubelet runs on Linux only"

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || printf '%s\n' "$p"
  done
}

install_packages() {
  local missing
  missing="$(missing_packages)"
  [[ -z "$missing" ]] && return
  command -v apt-get >/dev/null 2>&1 || unavailable "missing $(echo $missing) and no apt-get to install them"
  [[ "$(id -u)" == 0 ]] || unavailable "missing $(echo $missing); run as root (apt-get install) or install them"
  say "installing $(echo $missing) (apt-get)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || fail "apt-get update failed"
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    $missing >&2 || fail "apt-get install $(echo $missing) failed"
}

# The Kubernetes version of the test API server (e.g. v1.35.4).
apiserver_version() {
  local assets version
  assets="$(hack/envtest-assets.sh | tail -n1)" || exit $?
  version="$("$assets/kube-apiserver" --version 2>/dev/null | sed -nE 's/^Kubernetes (v1\.[0-9]+\.[0-9]+)$/\1/p')"
  [[ -n "$version" ]] || fail "cannot read the version of $assets/kube-apiserver"
  printf '%s\n' "$version"
}

build_kubelet() { # VERSION DEST
  local version="$1" dest="$2" start=$SECONDS
  command -v go >/dev/null 2>&1 || unavailable "no Go toolchain on PATH to build the kubelet (install Go >= 1.25)"
  # envtest-assets.sh's functions: build_k8s writes the module with the staging replaces and builds with the
  # version ldflags; its module directory goes under our cache.
  # shellcheck source=hack/envtest-assets.sh
  source hack/envtest-assets.sh
  CACHE_ROOT="$KUBELET_CACHE"
  renice -n 10 -p $$ >/dev/null  # nice -n 10 for everything built from here on (the machine is shared)
  local scratch="$dest.build"
  rm -rf "$scratch"
  say "building kubelet $version (a few minutes on 2 cores, less with a warm Go cache)"
  build_k8s "$version" "$scratch" kubelet
  check_version "$scratch/kubelet" "$version"
  mkdir -p "$dest"
  mv -f "$scratch/kubelet" "$dest/kubelet"
  rm -rf "$scratch"
  printf 'k8s=%s\ngo=%s\nKUBELET_BUILD_SECONDS=%s\n' "$version" "$(go env GOVERSION)" "$((SECONDS - start))" \
    >"$dest/$KUBELET_STAMP"
  say "kubelet built in $((SECONDS - start))s: $dest"
}

with_lock() { # run "$@" holding the cache lock
  mkdir -p "$KUBELET_CACHE"
  exec 8>"$KUBELET_CACHE/.lock"
  flock 8
  "$@"
  exec 8>&-
}

build_unless_cached() { # VERSION DEST (under the lock: another run may just have built it)
  [[ -f "$2/$KUBELET_STAMP" && -x "$2/kubelet" ]] || build_kubelet "$@"
}

main() {
  [[ -z "$(missing_packages)" ]] || with_lock install_packages
  local version dest
  version="$(apiserver_version)"
  dest="$KUBELET_CACHE/k8s-$version"
  [[ -f "$dest/$KUBELET_STAMP" && -x "$dest/kubelet" ]] || with_lock build_unless_cached "$version" "$dest"
  printf '%s\n' "$dest"
}

main "$@"
