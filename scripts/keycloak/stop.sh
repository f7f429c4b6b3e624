#!/usr/bin/env bash
# Stop the Keycloak started by scripts/keycloak/start.sh: only the pid recorded
# in .cache/keycloak/keycloak.pid. SIGTERM (kc.sh forwards it to its JVM and
# waits for it), then after 30 s SIGKILL to that pid's own process group, which
# start.sh created with setsid (pgid = pid), so the JVM child cannot be orphaned.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
PID_FILE="$REPO_ROOT/.cache/keycloak/keycloak.pid"

log() { echo "[keycloak] $*" >&2; }

if [[ ! -f "$PID_FILE" ]]; then
  log "not running (no pid file)"
  exit 0
fi
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null \
   || ! grep -qa keycloak "/proc/$pid/cmdline" 2>/dev/null; then
  log "not running (stale pid file removed)"
  rm -f "$PID_FILE"
  exit 0
fi

log "stopping pid $pid"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
  log "pid $pid still alive after 30s; sending SIGKILL"
  if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  else
    kill -KILL "$pid" 2>/dev/null || true
  fi
  sleep 1
fi
rm -f "$PID_FILE"
log "stopped"
