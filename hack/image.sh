#!/usr/bin/env bash
# Builds the operator image from the committed Dockerfile, unmodified, the way a user's `docker build` would,
# on a machine that reaches no container registry: with Debian's podman and a base image made locally.
#
#   1. Installs podman, runc, fuse-overlayfs, slirp4netns, uidmap and debootstrap from Debian's packages when
#      any is missing (needs root; otherwise exits 3 = "cannot build here").
#   2. Makes the base image once: `debootstrap --variant=minbase bookworm` with Debian's python3 (3.11, like the
#      Dockerfile's base), python3-venv, python-is-python3 and ca-certificates; the rootfs tarball is cached
#      under ~/.cache/oauth-token-operator/image/, keyed on that recipe, and `podman import`ed under the
#      Dockerfile's own FROM name, so the Dockerfile builds with --pull=never as it is.
#   3. Builds the Dockerfile with --format docker (keeps the HEALTHCHECK) and hack/containers.conf (runc,
#      cgroupfs, file events, ulimits this machine allows). pip inside the build reaches the package index
#      through this machine's CA bundle, bind-mounted read-only over the base's bundle for the RUN steps only
#      (Debian's pip reads the system bundle); a bind mount is never committed into a layer, and
#      tests/image/test_image.py proves the image's bundle is the base's own.
#
# Prints progress, the build time and the image size on stderr; the LAST line of stdout is the image ID.
# Idempotent (layer cache; this work tree's previous build is removed when superseded and unused) and serialised
# by a lock, so concurrent callers wait for one build. `hack/image.sh --du` also prints where the bytes go.
#
# Environment: OTO_IMAGE (tag, default localhost/oauth-token-operator:test-<work tree path>), OTO_IMAGE_CACHE (cache dir),
# OTO_DEBIAN_MIRROR (debootstrap's mirror; default: debootstrap's own).
#
# Measured on 2 busy shared cores (load ~13): apt install 20 s (once per machine), debootstrap 194-205 s (once
# per recipe), import 5 s, cold build 100 s (the locked dependencies' layer: downloads and .pyc compilation),
# after a source change ~35 s, warm (every layer cached) 11 s. Image: 255 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# One tag per work tree (worktrees and clones on one machine build concurrently and must not remove each other's).
worktree_tag=$(printf '%s' "$repo" | tr -c 'A-Za-z0-9_.-' '-' | sed 's/^-*//' | cut -c1-100)
image=${OTO_IMAGE:-localhost/oauth-token-operator:test-$worktree_tag}
cache=${OTO_IMAGE_CACHE:-${HOME:-/tmp}/.cache/oauth-token-operator/image}
export CONTAINERS_CONF="$repo/hack/containers.conf"
debs=(podman runc fuse-overlayfs slirp4netns uidmap debootstrap)
suite=bookworm
base_packages=(python3 python3-venv python-is-python3 ca-certificates)
show_du=false
[[ "${1:-}" == --du ]] && show_du=true

log() { echo "image: $*" >&2; }
unavailable() { echo "image: UNAVAILABLE: $*" >&2; exit 3; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  log "another build holds $cache/.lock; waiting"
  flock -w 3600 9 || { log "gave up waiting for the lock"; exit 1; }
fi

# --- 1. tools ------------------------------------------------------------------------------------------------------
missing=()
for deb in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q 'install ok installed' || missing+=("$deb")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || unavailable "needs root to apt-get install ${missing[*]} (or install them and re-run)"
  command -v apt-get >/dev/null || unavailable "no apt-get to install ${missing[*]}"
  log "installing ${missing[*]} from Debian's packages"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi
[[ $(id -u) == 0 ]] || unavailable "building needs root (debootstrap, rootful podman)"

# --- 2. base image -------------------------------------------------------------------------------------------------
# The Dockerfile's FROM name (both stages use the same one; the venv is only valid on the same interpreter).
mapfile -t froms < <(sed -nE 's/^FROM[[:space:]]+([^[:space:]]+).*/\1/p' Dockerfile | sort -u)
((${#froms[@]} == 1)) || { log "expected one base image in the Dockerfile, found: ${froms[*]}"; exit 1; }
base=${froms[0]}
[[ $base == */* ]] || base="docker.io/library/$base"
recipe="debootstrap --variant=minbase $suite $(dpkg --print-architecture) ${base_packages[*]} strip-docs-v1"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
rootfs_tar="$cache/rootfs-$key.tar"
base_id_file="$cache/base-$key.id"

if [[ ! -s $rootfs_tar ]]; then
  log "making the base rootfs ($recipe); takes a minute or two"
  started=$SECONDS
  work=$(mktemp -d "$cache/rootfs-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  include=$(IFS=,; echo "${base_packages[*]}")
  debootstrap --variant=minbase --include="$include" "$suite" "$work/rootfs" ${OTO_DEBIAN_MIRROR:+"$OTO_DEBIAN_MIRROR"} \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  # What a slim base image drops: package caches and lists, logs, the build host's resolv.conf and hostname,
  # documentation (but not the copyright files).
  (cd "$work/rootfs" &&
    rm -rf var/cache/apt/*.bin var/cache/apt/archives/*.deb var/lib/apt/lists/* var/log/* tmp/* root/.[!.]* \
      etc/resolv.conf etc/hostname usr/share/man/* usr/share/info/* usr/share/locale/* &&
    find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete &&
    find usr/share/doc -mindepth 1 -type d -empty -delete)
  tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$rootfs_tar"
  rm -rf "$work"
  trap - EXIT
  log "base rootfs made in $((SECONDS - started)) s ($(du -h "$rootfs_tar" | cut -f1), cached as $rootfs_tar)"
fi
base_id=$(podman image inspect --format '{{.Id}}' "$base" 2>/dev/null || true)
if [[ -z $base_id || $base_id != "$(cat "$base_id_file" 2>/dev/null || true)" ]]; then
  log "importing the base rootfs as $base"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$rootfs_tar" "$base" >/dev/null
  podman image inspect --format '{{.Id}}' "$base" >"$base_id_file"
fi

# --- 3. build ------------------------------------------------------------------------------------------------------
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(git log -1 --format=%cI 2>/dev/null || echo unknown)  # the commit's time: stable, so layers cache
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' pyproject.toml)
log "building $image from the Dockerfile (base $base)"
started=$SECONDS
podman build --pull=never --format docker --network host \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
  --tag "$image" --file Dockerfile . >&2
elapsed=$((SECONDS - started))
id=$(podman image inspect --format '{{.Id}}' "$image")
if [[ -n $previous && $previous != "$id" ]] &&
   [[ -z "$(podman image inspect --format '{{join .RepoTags ","}}' "$previous" 2>/dev/null)" ]]; then
  podman rmi "$previous" >/dev/null 2>&1 || true  # the superseded build, now untagged (kept while a container uses it)
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
log "built $image (${id:0:12}) in ${elapsed} s; image size $((size / 1000000)) MB"

if $show_du; then
  site=/opt/venv/lib/python3.11/site-packages
  log "where the bytes go (du -sk inside the image, KiB):"
  podman run --rm --user 0 --network none --health-cmd none --entrypoint sh "$image" -c "
    for dir in /usr /usr/lib/x86_64-linux-gnu /usr/lib/python3.11 /usr/share /var /opt/venv $site; do
      du -sk \$dir 2>/dev/null
    done
    echo '-- largest in site-packages:'
    du -sk $site/* | sort -n | tail -12
    echo '-- __pycache__ in site-packages:'
    find $site -name __pycache__ -type d -prune -exec du -sck {} + | tail -1" >&2
fi
echo "$id"
