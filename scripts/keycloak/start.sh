#!/usr/bin/env bash
# Start a local, dev-mode Keycloak with the boxoffice realm imported.
#
# Idempotent: fetches org.keycloak:keycloak-quarkus-dist from Maven Central
# once into <repo>/.cache/keycloak/, unpacks it once, and exits 0 at once if
# the Keycloak started by an earlier run is still alive and answering.
#
# Environment (all optional):
#   KEYCLOAK_VERSION      distribution version            (default 26.7.3)
#   KEYCLOAK_PORT         HTTP port                        (default 8180)
#   KEYCLOAK_HOSTNAME     fixed public URL, so `iss` does not depend on how a
#                         client spells the host           (default http://127.0.0.1:$KEYCLOAK_PORT)
#   KEYCLOAK_START_TIMEOUT seconds to wait for the realm   (default 240)
#   KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD
#                         master-realm admin               (default admin/admin, DEV ONLY)
#   DELIVERER_CLIENT_SECRET  secret the realm import gives the boxoffice-deliverer
#                         client                           (default in the realm file, DEV ONLY)
#   JAVA_OPTS_KC_HEAP     JVM heap flags                   (default -Xms64m -Xmx512m)
#   JAVA_HOME             used if it is Java 21+, else the newest JDK >= 21
#                         under /usr/lib/jvm is picked
#
# The realm is (re)imported from keycloak/boxoffice-realm.json. Keycloak only
# imports a realm that does not exist yet, so when the realm file changes the
# dev database (.cache/keycloak/<dist>/data/h2) is wiped before the start.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="$REPO_ROOT/.cache/keycloak"
REALM_FILE="$REPO_ROOT/keycloak/boxoffice-realm.json"
REALM_NAME="boxoffice"

KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.7.3}"
KEYCLOAK_PORT="${KEYCLOAK_PORT:-8180}"
KEYCLOAK_HOSTNAME="${KEYCLOAK_HOSTNAME:-http://127.0.0.1:${KEYCLOAK_PORT}}"
KEYCLOAK_START_TIMEOUT="${KEYCLOAK_START_TIMEOUT:-240}"

DIST_DIR="$CACHE_DIR/keycloak-$KEYCLOAK_VERSION"
ZIP="$CACHE_DIR/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
PID_FILE="$CACHE_DIR/keycloak.pid"
LOG_FILE="$CACHE_DIR/keycloak.log"
REALM_SUM_FILE="$DIST_DIR/data/import/.imported-realm.sha256"
DISCOVERY_URL="http://127.0.0.1:${KEYCLOAK_PORT}/realms/${REALM_NAME}/.well-known/openid-configuration"

log() { echo "[keycloak] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

discovery_ok() {
  curl -fsS --max-time 5 -o /dev/null "$DISCOVERY_URL" 2>/dev/null
}

pid_alive() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # guard against a recycled pid: it must still be a Keycloak process
  grep -qa keycloak "/proc/$pid/cmdline" 2>/dev/null
}

java_major() { # $1 = path to a java binary; prints the feature version (17, 21, 25, ...)
  "$1" -XshowSettings:properties -version 2>&1 \
    | sed -n 's/^ *java\.specification\.version = \([0-9][0-9]*\).*/\1/p' | head -n1
}

pick_java_home() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    local v; v="$(java_major "$JAVA_HOME/bin/java")"
    if [[ -n "$v" && "$v" -ge 21 ]]; then echo "$JAVA_HOME"; return 0; fi
  fi
  local best="" best_v=0 j v home
  for j in /usr/lib/jvm/*/bin/java; do
    [[ -x "$j" ]] || continue
    home="$(cd "$(dirname "$j")/.." && pwd -P)"
    v="$(java_major "$j")"
    [[ -n "$v" ]] || continue
    if [[ "$v" -ge 21 && "$v" -gt "$best_v" ]]; then best="$home"; best_v="$v"; fi
  done
  if [[ -z "$best" ]] && command -v java >/dev/null; then
    j="$(readlink -f "$(command -v java)")"
    v="$(java_major "$j")"
    if [[ -n "$v" && "$v" -ge 21 ]]; then best="$(cd "$(dirname "$j")/.." && pwd -P)"; fi
  fi
  [[ -n "$best" ]] || return 1
  echo "$best"
}

command -v curl >/dev/null || die "curl is required"

# --- already running? -------------------------------------------------------
if pid_alive; then
  if discovery_ok; then
    log "already running (pid $(cat "$PID_FILE")), realm '$REALM_NAME' at http://127.0.0.1:${KEYCLOAK_PORT}"
    exit 0
  fi
  die "pid $(cat "$PID_FILE") from $PID_FILE is alive but $DISCOVERY_URL does not answer (still starting? see $LOG_FILE, or run scripts/keycloak/stop.sh)"
fi
rm -f "$PID_FILE"
if discovery_ok; then
  die "something not started by this script already serves $DISCOVERY_URL; refusing to start a second Keycloak"
fi
if curl -s --max-time 3 -o /dev/null "http://127.0.0.1:${KEYCLOAK_PORT}/" 2>/dev/null; then
  die "port ${KEYCLOAK_PORT} on 127.0.0.1 is already in use (set KEYCLOAK_PORT)"
fi

[[ -f "$REALM_FILE" ]] || die "realm file not found: $REALM_FILE"

JAVA_HOME="$(pick_java_home)" || die "Keycloak $KEYCLOAK_VERSION needs Java 21+; none found (JAVA_HOME or /usr/lib/jvm/*)"
export JAVA_HOME
log "using JAVA_HOME=$JAVA_HOME (Java $(java_major "$JAVA_HOME/bin/java"))"

mkdir -p "$CACHE_DIR"

# --- fetch (once) -------------------------------------------------------------
if [[ ! -x "$DIST_DIR/bin/kc.sh" ]]; then
  if [[ ! -s "$ZIP" ]]; then
    command -v mvn >/dev/null || die "mvn (Maven) is required to fetch the Keycloak distribution"
    log "fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip from Maven Central"
    # Run from the cache dir so that no project pom is picked up; the copy goal
    # needs no project. Maven runs fine on the default Java 17.
    ( cd "$CACHE_DIR" && env -u JAVA_HOME mvn -B -q -Dstyle.color=never \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="org.keycloak:keycloak-quarkus-dist:${KEYCLOAK_VERSION}:zip" \
        -DoutputDirectory="$CACHE_DIR" \
        -Dmdep.overWriteReleases=true ) > "$CACHE_DIR/mvn-fetch.log" 2>&1 \
      || { tail -n 40 "$CACHE_DIR/mvn-fetch.log" >&2; die "Maven could not fetch keycloak-quarkus-dist $KEYCLOAK_VERSION"; }
    [[ -s "$ZIP" ]] || die "expected $ZIP after the Maven copy"
  fi
  log "unpacking $(basename "$ZIP")"
  tmp="$(mktemp -d "$CACHE_DIR/unpack.XXXXXX")"
  if command -v unzip >/dev/null; then
    unzip -q "$ZIP" -d "$tmp"
  else
    "$JAVA_HOME/bin/jar" xf "$ZIP" --dir "$tmp" 2>/dev/null || (cd "$tmp" && "$JAVA_HOME/bin/jar" xf "$ZIP")
  fi
  top="$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)"
  [[ -n "$top" && -f "$top/bin/kc.sh" ]] || { rm -rf "$tmp"; die "unexpected zip layout in $ZIP"; }
  chmod +x "$top"/bin/*.sh
  rm -rf "$DIST_DIR"
  mv "$top" "$DIST_DIR"
  rm -rf "$tmp"
fi

# --- realm import ----------------------------------------------------------------
mkdir -p "$DIST_DIR/data/import"
realm_sum="$(sha256sum "$REALM_FILE" | cut -d' ' -f1)"
if [[ -d "$DIST_DIR/data/h2" && "$(cat "$REALM_SUM_FILE" 2>/dev/null || true)" != "$realm_sum" ]]; then
  log "realm file changed since the last import: wiping the dev database so it is imported afresh"
  rm -rf "$DIST_DIR/data/h2"
fi
cp "$REALM_FILE" "$DIST_DIR/data/import/${REALM_NAME}-realm.json"
echo "$realm_sum" > "$REALM_SUM_FILE"

# --- start -----------------------------------------------------------------------
export KC_BOOTSTRAP_ADMIN_USERNAME="${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}"
export KC_BOOTSTRAP_ADMIN_PASSWORD="${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}"   # dev only
export JAVA_OPTS_KC_HEAP="${JAVA_OPTS_KC_HEAP:--Xms64m -Xmx512m}"

log "starting Keycloak $KEYCLOAK_VERSION on http://127.0.0.1:${KEYCLOAK_PORT} (log: $LOG_FILE)"
started_at=$SECONDS
: > "$LOG_FILE"
# setsid: own session and process group (pgid = recorded pid), detached from
# this shell. The recorded pid is kc.sh's: it either stays as the JVM's parent
# and forwards SIGTERM/SIGINT to it, or (after a re-augmentation) execs the JVM.
setsid nohup "$DIST_DIR/bin/kc.sh" start-dev \
  --import-realm \
  --http-host=127.0.0.1 \
  --http-port="$KEYCLOAK_PORT" \
  --hostname="$KEYCLOAK_HOSTNAME" \
  >>"$LOG_FILE" 2>&1 < /dev/null &
echo $! > "$PID_FILE"
pid="$(cat "$PID_FILE")"

deadline=$((SECONDS + KEYCLOAK_START_TIMEOUT))
until discovery_ok; do
  if ! kill -0 "$pid" 2>/dev/null; then
    log "Keycloak (pid $pid) exited during start-up; last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
    rm -f "$PID_FILE"
    exit 1
  fi
  if (( SECONDS >= deadline )); then
    log "timed out after ${KEYCLOAK_START_TIMEOUT}s waiting for $DISCOVERY_URL; last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
    log "Keycloak (pid $pid) left running; stop it with scripts/keycloak/stop.sh"
    exit 1
  fi
  sleep 2
done
log "ready after $((SECONDS - started_at))s (pid $pid): realm '$REALM_NAME' at ${KEYCLOAK_HOSTNAME}/realms/${REALM_NAME}"
