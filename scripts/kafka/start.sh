#!/usr/bin/env bash
# Start a single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1 from
# the jars on Maven Central; there is no Kafka package or Docker on these
# machines. Idempotent: jars are cached, storage is formatted once, and an
# already running broker is left alone.
#
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_DATA_DIR
# (<repo>/.cache/kafka/data), KAFKA_HEAP_OPTS, KAFKA_START_TIMEOUT (120 s),
# JAVA_HOME.
# Prints KAFKA_BROKERS=127.0.0.1:<port> as its last line.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

CACHE_DIR="$REPO_ROOT/.cache/kafka"
LIB_DIR="$CACHE_DIR/lib"
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE_DIR/data}"
LOG_FILE="$CACHE_DIR/kafka.log"
PID_FILE="$CACHE_DIR/kafka.pid"
PROPS="$CACHE_DIR/server.properties"

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HOST=127.0.0.1
BROKERS="$HOST:$PORT"
TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
# Small heap: the machine has 2 cores and shares them with Postgres, Keycloak, Node.
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

log() { echo "[kafka] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$CACHE_DIR" "$DATA_DIR"

# --- helpers ---------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True if $1 is alive and really is a Kafka broker (pids get reused).
is_kafka_pid() {
  [[ -n "${1:-}" && -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'kafka\.Kafka'
}

# kcat gives a real metadata round trip; install it once if missing.
ensure_kcat() {
  command -v kcat >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing kcat (apt) for the readiness check"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; } >/dev/null 2>&1 || true
  fi
  command -v kcat >/dev/null 2>&1
}

# "Answers" means a metadata request returns this broker, not just an open port.
broker_answers() {
  port_open "$PORT" || return 1
  if [[ "$HAVE_KCAT" == 1 ]]; then
    kcat -b "$BROKERS" -L -m 5 2>/dev/null | grep -q "broker 1 at"
  else
    # Fallback without kcat: the broker logs this once it serves requests.
    grep -q "Kafka Server started" "$LOG_FILE" 2>/dev/null
  fi
}

# Java 17+ is required by Kafka 4; prefer JAVA_HOME, then PATH, then the newest JDK in /usr/lib/jvm.
java_major() { "$1" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'; }
find_java() {
  local c
  for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java 2>/dev/null || true)" \
           $(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -rV); do
    [[ -n "$c" && -x "$c" ]] || continue
    if (( $(java_major "$c" || echo 0) >= 17 )); then echo "$c"; return 0; fi
  done
  return 1
}

fail_with_log() {
  log "$1"
  if [[ -f "$LOG_FILE" ]]; then
    # The cause is usually an early ERROR line, buried under shutdown noise at the tail.
    if grep -qE ' (ERROR|FATAL) ' "$LOG_FILE"; then
      log "first errors in $LOG_FILE:"
      grep -m 10 -A 3 -E ' (ERROR|FATAL) ' "$LOG_FILE" >&2
    fi
    log "last 20 lines of $LOG_FILE:"
    tail -n 20 "$LOG_FILE" >&2
  fi
  exit 1
}

if ensure_kcat; then HAVE_KCAT=1; else HAVE_KCAT=0; log "kcat not available: falling back to port + log check"; fi

# --- fast path: already running ---------------------------------------------

if [[ -f "$PID_FILE" ]]; then
  OLD_PID="$(cat "$PID_FILE" 2>/dev/null || true)"
  if is_kafka_pid "$OLD_PID"; then
    # One broker per checkout: asking for another port would otherwise just time out.
    RUNNING_PORT="$(sed -n 's/^advertised\.listeners=PLAINTEXT:\/\/.*:\([0-9]*\)$/\1/p' "$PROPS" 2>/dev/null || true)"
    if [[ -n "$RUNNING_PORT" && "$RUNNING_PORT" != "$PORT" ]]; then
      die "a broker is already running (pid $OLD_PID) on port $RUNNING_PORT, not $PORT; run scripts/kafka/stop.sh first"
    fi
    # Running (maybe still starting): wait for it instead of starting a second one.
    for ((i = 0; i < TIMEOUT; i++)); do
      if broker_answers; then
        log "already running (pid $OLD_PID) and answering on $BROKERS"
        echo "KAFKA_BROKERS=$BROKERS"
        exit 0
      fi
      is_kafka_pid "$OLD_PID" || break
      sleep 1
    done
    is_kafka_pid "$OLD_PID" && fail_with_log "pid $OLD_PID is running but does not answer on $BROKERS (run scripts/kafka/stop.sh)"
  fi
  rm -f "$PID_FILE"   # stale
fi

# Something else on our port would make the broker die with a bind error later; say so now.
port_open "$PORT" && die "port $PORT on $HOST is taken by a process not in $PID_FILE (set KAFKA_PORT or stop it)"
port_open "$CONTROLLER_PORT" && die "controller port $CONTROLLER_PORT on $HOST is taken (set KAFKA_CONTROLLER_PORT)"

JAVA="$(find_java)" || die "no Java 17+ found (set JAVA_HOME)"

# --- jars: resolve once, keyed on the pom's content ---------------------------

POM_SUM="$(sha256sum "$POM" | cut -d' ' -f1)"
if [[ "$(cat "$LIB_DIR/.pom.sha256" 2>/dev/null || true)" != "$POM_SUM" ]]; then
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch the Kafka jars)"
  log "resolving Kafka jars from Maven Central into $LIB_DIR"
  # Resolve into a temp dir and swap, so an interrupted run never leaves a half cache.
  TMP_LIB="$(mktemp -d "$CACHE_DIR/lib.tmp.XXXXXX")"
  # Maven's output goes to a file (it prints colour codes even with -q); shown on failure.
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$TMP_LIB" \
      >"$CACHE_DIR/mvn.log" 2>&1; then
    rm -rf "$TMP_LIB"
    tail -n 40 "$CACHE_DIR/mvn.log" >&2
    die "mvn could not resolve the Kafka jars (full output: $CACHE_DIR/mvn.log)"
  fi
  echo "$POM_SUM" >"$TMP_LIB/.pom.sha256"
  rm -rf "$LIB_DIR"
  mv "$TMP_LIB" "$LIB_DIR"
fi
CLASSPATH_GLOB="$LIB_DIR/*"

# --- config: written every start so port changes apply ----------------------

# Static voter list (controller.quorum.voters) rather than a --standalone dynamic
# quorum: the controller address then lives only in this file, not in the
# formatted metadata, so changing KAFKA_CONTROLLER_PORT later keeps working.
cat >"$PROPS" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR
# One node: every internal topic must live with a single replica, or consumer
# groups fail with "group coordinator is not available".
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Internal topics default to 50 partitions each; a few are plenty here and
# create faster on first use.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
share.coordinator.state.topic.num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
num.partitions=3
# Tests should not wait 3 s for the first rebalance.
group.initial.rebalance.delay.ms=0
# Fewer threads than the defaults: two shared cores.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF

# --- format storage once ---------------------------------------------------

if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
  CLUSTER_ID="$("$JAVA" -cp "$CLASSPATH_GLOB" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [[ -n "$CLUSTER_ID" ]] || die "could not generate a cluster id (kafka.tools.StorageTool random-uuid)"
  log "formatting $DATA_DIR (cluster id $CLUSTER_ID)"
  # The tool prints the whole config; keep it in a file and show it only on failure.
  if ! "$JAVA" -cp "$CLASSPATH_GLOB" kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$PROPS" --ignore-formatted \
      >"$CACHE_DIR/format.log" 2>&1; then
    tail -n 40 "$CACHE_DIR/format.log" >&2
    die "kafka storage format failed (full output: $CACHE_DIR/format.log)"
  fi
fi

# --- start in the background -----------------------------------------------

log "starting Kafka on $BROKERS (controller $HOST:$CONTROLLER_PORT), log: $LOG_FILE"
: >"$LOG_FILE"
# setsid: own session, so a Ctrl-C or process-group kill of the caller does not take the broker along.
# shellcheck disable=SC2086 # HEAP_OPTS is a list of JVM flags
setsid nohup "$JAVA" $HEAP_OPTS \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd HH:mm:ss.SSS" \
  -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn \
  -cp "$CLASSPATH_GLOB" kafka.Kafka "$PROPS" \
  >>"$LOG_FILE" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PID_FILE"

START=$SECONDS
until broker_answers; do
  if ! kill -0 "$PID" 2>/dev/null; then
    rm -f "$PID_FILE"
    fail_with_log "Kafka exited during startup"
  fi
  if (( SECONDS - START >= TIMEOUT )); then
    fail_with_log "Kafka did not answer on $BROKERS within ${TIMEOUT}s (pid $PID still running; scripts/kafka/stop.sh stops it)"
  fi
  sleep 1
done

log "ready after $((SECONDS - START))s (pid $PID)"
echo "KAFKA_BROKERS=$BROKERS"
