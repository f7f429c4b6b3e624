#!/usr/bin/env bash
# Stop the Kafka broker started by scripts/kafka/start.sh: only the process in
# its pid file, by id, and wait until it has exited.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
PID_FILE="$REPO_ROOT/.cache/kafka/kafka.pid"
# A clean shutdown (flushing logs, closing the controller) can take a while on a busy machine.
TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"

log() { echo "[kafka] $*" >&2; }

if [[ ! -f "$PID_FILE" ]]; then
  log "not running (no $PID_FILE)"
  exit 0
fi
PID="$(cat "$PID_FILE")"

# Pids get reused: only signal it if it still is our broker.
if [[ -z "$PID" || ! -r "/proc/$PID/cmdline" ]] || ! tr '\0' ' ' <"/proc/$PID/cmdline" | grep -q 'kafka\.Kafka'; then
  log "not running (stale pid file)"
  rm -f "$PID_FILE"
  exit 0
fi

log "stopping pid $PID"
kill -TERM "$PID" 2>/dev/null || true
for ((i = 0; i < TIMEOUT * 2; i++)); do
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$PID" 2>/dev/null; then
  log "still running after ${TIMEOUT}s, sending SIGKILL"
  kill -KILL "$PID" 2>/dev/null || true
  while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
fi
rm -f "$PID_FILE"
log "stopped"
