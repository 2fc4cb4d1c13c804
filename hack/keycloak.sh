#!/usr/bin/env bash
# Fetch, unpack and build once the Keycloak server that the Keycloak integration tests run
# (tests/support/keycloak.py, tests/integration/test_keycloak.py).
#
# The LAST line of stdout is the directory of the built distribution; progress and diagnostics go to stderr.
# Idempotent and safe to run concurrently (a lock serialises the build; a stamp file is written last).
#
# "Built" means three things, all cached in ${OTO_KEYCLOAK_CACHE:-~/.cache/oauth-token-operator/keycloak}/$KEYCLOAK_VERSION:
#   1. org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip from Maven Central (mvn dependency:copy), unpacked;
#   2. Quarkus's build step ("augmentation") done for the dev profile with the default build options. It is done
#      by a first `kc.sh start-dev`, not `kc.sh build`: start-dev re-augments whenever the build-time options of
#      the dev profile differ from those persisted, and `kc.sh build` persists the production profile's, so a
#      distribution prepared with `kc.sh build` still rebuilds on its first start-dev (measured: 54-86 s);
#   3. the H2 database of that first start (data/h2/keycloakdb.mv.db): schema created and master realm
#      initialised, with a temporary admin whose random password is in .bootstrap-admin (mode 0600). Keycloak
#      creates the bootstrap admin only together with the master realm, so it lives in this template. Each test
#      session starts from a private copy of the database (tests/support/keycloak.py), which saves the ~35 s
#      of schema creation and realm initialisation every start would otherwise spend.
#
# Measured on 2 shared cores (load 8-16): download 22-63 s cold (empty Maven repository: its plugins + the 177 MB
# zip), unpack 1-6 s, first start-dev (augmentation + database) 149-293 s; later starts from the cache answer
# discovery in ~30 s (60-65 s without the database template), ~460 MiB RSS. A warm run returns at once.
#
# Requirements: Java 17+ (Keycloak 26.7 runs on the OpenJDK 17 of Debian 12; JAVA_HOME or `java` on PATH),
# Maven (mvn) and python3. On a Debian machine where they are missing and we are root, they are installed with
# apt-get (openjdk-17-jre-headless maven); otherwise the script exits 3 and says what to install.
#
# Environment:
#   KEYCLOAK_VERSION    Keycloak release (default below, or from hack/versions.env when it defines it)
#   OTO_KEYCLOAK_CACHE  cache root (default ~/.cache/oauth-token-operator/keycloak)
#   JAVA_HOME           the Java to use (default: `java` on PATH)
#
# Exit codes: 0 ok, 3 = cannot get the prerequisites here, anything else = the build failed (see stderr).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO_ROOT/hack/versions.sh"  # KEYCLOAK_VERSION (hack/versions.env)
CACHE_ROOT="${OTO_KEYCLOAK_CACHE:-${HOME:-/tmp}/.cache/oauth-token-operator/keycloak}"
DEST="$CACHE_ROOT/$KEYCLOAK_VERSION"
STAMP=".oto-keycloak-built"
# Bump when what "built" means changes, so an older cache is rebuilt instead of served.
RECIPE="1: start-dev augmentation + H2 template with bootstrap admin"
ARTIFACT="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip"
BUILD_TIMEOUT="${OTO_KEYCLOAK_BUILD_TIMEOUT:-900}"

log() { printf 'keycloak: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
unavailable() { log "UNAVAILABLE: $*"; exit 3; }

stamp_ok() {
  [[ -f "$DEST/$STAMP" && -x "$DEST/bin/kc.sh" && -f "$DEST/data/h2/keycloakdb.mv.db" && -f "$DEST/.bootstrap-admin" ]] \
    && grep -qxF "recipe=$RECIPE" "$DEST/$STAMP"
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then printf '%s\n' "$JAVA_HOME/bin/java"; else command -v java || true; fi
}

java_major() { # java binary -> major version (17, 21, 25...)
  "$1" -version 2>&1 | sed -nE 's/.*version "([0-9]+)(\.[0-9]+)*.*".*/\1/p' | head -n1
}

ensure_prerequisites() {
  local missing=() java major
  java="$(java_bin)"
  if [[ -z "$java" ]]; then missing+=(openjdk-17-jre-headless); fi
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
      log "installing ${missing[*]} with apt-get"
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
        || die "apt-get install ${missing[*]} failed"
      java="$(java_bin)"
    else
      unavailable "Keycloak needs Java 17+ and Maven (missing: ${missing[*]}); on Debian/Ubuntu: sudo apt-get install ${missing[*]}"
    fi
  fi
  major="$(java_major "$java")"
  [[ -n "$major" && "$major" -ge 17 ]] || unavailable "Keycloak $KEYCLOAK_VERSION needs Java 17 or later; $java is '${major:-unknown}' (set JAVA_HOME)"
  JAVA="$java"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_discovery URL PID SECONDS: 0 once URL answers 200, 1 when PID died or the time is up.
wait_for_discovery() {
  python3 - "$@" <<'EOF'
import os, sys, time, urllib.request
url, pid, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
EOF
}

download_and_unpack() {
  local downloads="$CACHE_ROOT/downloads" zip start=$SECONDS
  zip="$downloads/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
  mkdir -p "$downloads"
  if [[ ! -s "$zip" ]]; then
    log "fetching $ARTIFACT from Maven Central (mvn dependency:copy, ~177 MB)"
    # Maven's output goes to a log shown only on failure (even -q -B prints colour codes).
    (cd "$downloads" && mvn -B -q -ntp dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$downloads") \
      >"$downloads/mvn.log" 2>&1 || { cat "$downloads/mvn.log" >&2; die "mvn dependency:copy $ARTIFACT failed (see above)"; }
    [[ -s "$zip" ]] || die "mvn reported success but $zip is missing"
  fi
  DOWNLOAD_SECONDS=$((SECONDS - start))
  start=$SECONDS
  local scratch="$CACHE_ROOT/.unpack-$KEYCLOAK_VERSION"
  rm -rf "$scratch" "$DEST"
  mkdir -p "$scratch"
  log "unpacking into $DEST"
  python3 -m zipfile -e "$zip" "$scratch" || { rm -f "$zip"; die "cannot unpack $zip (removed: the next run fetches it again)"; }
  [[ -f "$scratch/keycloak-$KEYCLOAK_VERSION/bin/kc.sh" ]] || die "$zip does not hold keycloak-$KEYCLOAK_VERSION/bin/kc.sh"
  mv "$scratch/keycloak-$KEYCLOAK_VERSION" "$DEST"
  rm -rf "$scratch"
  chmod +x "$DEST"/bin/*.sh  # zipfile does not keep the executable bits
  UNPACK_SECONDS=$((SECONDS - start))
}

# The first start-dev: augmentation for the dev profile, then the database template.
first_start() {
  local port start=$SECONDS pid password status=0
  port="$(free_port)"
  password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  (umask 077 && printf 'username=oto-admin\npassword=%s\n' "$password" >"$DEST/.bootstrap-admin")
  rm -rf "$DEST/data"
  log "first start (Quarkus build step for the dev profile + database template; ~1-2 min on 2 cores), log: $DEST/build.log"
  KC_BOOTSTRAP_ADMIN_USERNAME=oto-admin KC_BOOTSTRAP_ADMIN_PASSWORD="$password" JAVA="$JAVA" \
    "$DEST/bin/kc.sh" start-dev --http-host=127.0.0.1 --http-port="$port" --http-management-host=127.0.0.1 \
    --http-management-port="$(free_port)" </dev/null >"$DEST/build.log" 2>&1 &
  pid=$!
  wait_for_discovery "http://127.0.0.1:$port/realms/master/.well-known/openid-configuration" "$pid" "$BUILD_TIMEOUT" \
    || status=$?
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ((status != 0)); then
    tail -n 40 "$DEST/build.log" >&2 || true
    die "Keycloak did not answer its discovery within ${BUILD_TIMEOUT}s (tail of $DEST/build.log above)"
  fi
  grep -q "Created temporary admin user" "$DEST/build.log" || die "the first start created no bootstrap admin (see $DEST/build.log)"
  [[ -f "$DEST/data/h2/keycloakdb.mv.db" ]] || die "the first start left no database in $DEST/data/h2"
  # Only the database is template material; transaction logs and temp files are per run.
  find "$DEST/data" -mindepth 1 -maxdepth 1 ! -name h2 -exec rm -rf {} +
  rm -f "$DEST/data/h2/keycloakdb.trace.db"
  BUILD_SECONDS=$((SECONDS - start))
}

build() {
  if stamp_ok; then return; fi  # another process built it while we waited for the lock
  ensure_prerequisites
  log "building Keycloak $KEYCLOAK_VERSION into $DEST with $("$JAVA" -version 2>&1 | head -n1)"
  rm -f "$DEST/$STAMP" 2>/dev/null || true
  download_and_unpack
  first_start
  {
    printf 'recipe=%s\nversion=%s\njava=%s\n' "$RECIPE" "$KEYCLOAK_VERSION" "$("$JAVA" -version 2>&1 | head -n1)"
    printf 'download_seconds=%s\nunpack_seconds=%s\nbuild_seconds=%s\n' "$DOWNLOAD_SECONDS" "$UNPACK_SECONDS" "$BUILD_SECONDS"
  } >"$DEST/$STAMP"
  log "built in $((DOWNLOAD_SECONDS + UNPACK_SECONDS + BUILD_SECONDS))s (download ${DOWNLOAD_SECONDS}s, unpack ${UNPACK_SECONDS}s, first start ${BUILD_SECONDS}s)"
}

main() {
  if ! stamp_ok; then
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    build
  fi
  printf '%s\n' "$DEST"
}

main "$@"
