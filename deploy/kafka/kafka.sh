#!/usr/bin/env bash
# Local single-node Kafka broker (KRaft, combined broker + controller) for
# development and integration tests.
#
# Usage: deploy/kafka/kafka.sh start|stop|status|logs [-f]
#
# Environment:
#   KAFKA_PORT             client port on 127.0.0.1          (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 9093)
#   KAFKA_STATE_DIR        data, logs, pid file              (default <repo>/.state/kafka)
#   KAFKA_CACHE_DIR        downloaded broker jars            (default <repo>/.cache/kafka)
#   KAFKA_HEAP             JVM heap options                  (default "-Xms256m -Xmx512m")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker    (default 120)
#   KAFKA_LOG_LINES        lines shown by "logs"             (default 100)
#
# Requires java (17+) and, for the first start, mvn to fetch the jars.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$REPO_DIR/.state/kafka}"
KAFKA_CACHE_DIR="${KAFKA_CACHE_DIR:-$REPO_DIR/.cache/kafka}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT=30

POM="$SCRIPT_DIR/pom.xml"
PROPS_TEMPLATE="$SCRIPT_DIR/server.properties"
LOG4J_CONFIG="$SCRIPT_DIR/log4j.properties"

LIBS_DIR="$KAFKA_CACHE_DIR/libs"
LIBS_MARKER="$KAFKA_CACHE_DIR/libs.complete"
PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
OUT_FILE="$KAFKA_STATE_DIR/kafka.out"
SERVER_LOG="$KAFKA_STATE_DIR/server.log"
PROPS_FILE="$KAFKA_STATE_DIR/server.properties"
CLUSTER_ID_FILE="$KAFKA_STATE_DIR/cluster.id"
DATA_DIR="$KAFKA_STATE_DIR/data"
LOCK_FILE="$KAFKA_STATE_DIR/.lock"

STARTED_MESSAGE="Kafka Server started"

log() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# our_pid: prints the pid from the pid file if that process is alive and is a
# Kafka broker; otherwise removes a stale pid file and returns 1.
our_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
        echo "$pid"
        return 0
    fi
    rm -f "$PID_FILE"
    return 1
}

need_java() {
    command -v java >/dev/null 2>&1 || die "java not found (install a JDK 17+)"
}

# fetch_libs: download the broker's runtime jars once. The marker file holds
# the pom's checksum, so an interrupted download or a changed pom is redone.
fetch_libs() {
    local sum
    sum="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$sum" ]] &&
        compgen -G "$LIBS_DIR/*.jar" >/dev/null; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch the Kafka jars)"
    log "fetching broker jars into $LIBS_DIR (first run only)"
    rm -rf "$LIBS_DIR" "$LIBS_MARKER"
    mkdir -p "$LIBS_DIR"
    local t0=$SECONDS
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" >"$KAFKA_CACHE_DIR/mvn.log" 2>&1; then
        tail -n 50 "$KAFKA_CACHE_DIR/mvn.log" >&2
        die "mvn dependency:copy-dependencies failed (full output: $KAFKA_CACHE_DIR/mvn.log)"
    fi
    echo "$sum" >"$LIBS_MARKER"
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $((SECONDS - t0))s"
}

# java_tool CLASS ARGS...: run a Kafka command-line class; its log output goes
# to server.log.
java_tool() {
    java -Dlog4j.configuration="file:$LOG4J_CONFIG" -Dkafka.logs.dir="$KAFKA_STATE_DIR" \
        -cp "$LIBS_DIR/*" "$@"
}

write_props() {
    local content
    content="$(<"$PROPS_TEMPLATE")"
    content="${content//@KAFKA_PORT@/"$KAFKA_PORT"}"
    content="${content//@KAFKA_CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}"
    content="${content//@KAFKA_DATA_DIR@/"$DATA_DIR"}"
    printf '%s\n' "$content" >"$PROPS_FILE"
}

# format_storage: format the KRaft metadata log on first start only.
format_storage() {
    if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
        local id
        id="$(java_tool kafka.tools.StorageTool random-uuid | tail -n 1 | tr -d '[:space:]')"
        [[ -n "$id" ]] || die "could not generate a cluster id"
        echo "$id" >"$CLUSTER_ID_FILE"
    fi
    if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
        log "formatting storage in $DATA_DIR (cluster id $(cat "$CLUSTER_ID_FILE"))"
        java_tool kafka.tools.StorageTool format -t "$(cat "$CLUSTER_ID_FILE")" \
            -c "$PROPS_FILE" --ignore-formatted >/dev/null ||
            die "storage format failed (see $SERVER_LOG)"
    fi
}

# show_logs N OFFSET: print the last N lines written to server.log since byte
# OFFSET (this start attempt), and the JVM's stdout/stderr.
show_logs() {
    local n="$1" offset="${2:-0}" size
    if [[ -f "$SERVER_LOG" ]]; then
        size="$(stat -c %s "$SERVER_LOG")"
        ((size >= offset)) || offset=0
        echo "----- last $n lines of $SERVER_LOG (this start) -----" >&2
        tail -c "+$((offset + 1))" "$SERVER_LOG" | tail -n "$n" >&2
    fi
    if [[ -s "$OUT_FILE" ]]; then
        echo "----- last $n lines of $OUT_FILE -----" >&2
        tail -n "$n" "$OUT_FILE" >&2
    fi
}

# log_has_started OFFSET: true if server.log, from byte OFFSET on, reports
# that the broker started (the whole file if it was rotated meanwhile).
log_has_started() {
    local offset="$1" size
    [[ -f "$SERVER_LOG" ]] || return 1
    size="$(stat -c %s "$SERVER_LOG")"
    ((size >= offset)) || offset=0
    tail -c "+$((offset + 1))" "$SERVER_LOG" | grep -q "$STARTED_MESSAGE"
}

kill_and_wait() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    log "pid $pid did not exit within ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
}

# wait_ready PID LOG_OFFSET: wait until the port accepts connections and the
# log reports the broker started; on failure print the logs and exit 1.
wait_ready() {
    local pid="$1" offset="$2" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            echo "kafka: error: broker process $pid exited during startup" >&2
            show_logs 40 "$offset"
            exit 1
        fi
        if port_open "$KAFKA_PORT" && log_has_started "$offset"; then
            return 0
        fi
        sleep 0.5
    done
    echo "kafka: error: broker not ready after ${KAFKA_START_TIMEOUT}s, stopping pid $pid" >&2
    show_logs 40 "$offset"
    kill_and_wait "$pid"
    rm -f "$PID_FILE"
    exit 1
}

cmd_start() {
    mkdir -p "$KAFKA_STATE_DIR"
    # Serialise concurrent starts (e.g. several test packages at once).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w $((KAFKA_START_TIMEOUT + 60)) 9 || die "could not lock $LOCK_FILE"
    fi

    local pid
    if pid="$(our_pid)"; then
        if port_open "$KAFKA_PORT"; then
            log "already running on 127.0.0.1:$KAFKA_PORT (pid $pid), reusing it"
            return 0
        fi
        if ! grep -q "^listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT," "$PROPS_FILE" 2>/dev/null; then
            die "broker pid $pid already uses $KAFKA_STATE_DIR with another port (see $PROPS_FILE); stop it first"
        fi
        log "pid $pid is starting, waiting for 127.0.0.1:$KAFKA_PORT"
        wait_ready "$pid" 0
        log "running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
        return 0
    fi
    if port_open "$KAFKA_PORT"; then
        log "something already listens on 127.0.0.1:$KAFKA_PORT (not started by this script); assuming it is a Kafka broker and reusing it"
        return 0
    fi
    if port_open "$KAFKA_CONTROLLER_PORT"; then
        die "controller port 127.0.0.1:$KAFKA_CONTROLLER_PORT is in use; set KAFKA_CONTROLLER_PORT"
    fi

    need_java
    fetch_libs
    mkdir -p "$DATA_DIR"
    write_props
    format_storage

    local offset=0 heap t0=$SECONDS
    [[ -f "$SERVER_LOG" ]] && offset="$(stat -c %s "$SERVER_LOG")"
    read -r -a heap <<<"$KAFKA_HEAP"

    log "starting broker on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT, state $KAFKA_STATE_DIR)"
    # setsid: keep the broker out of the caller's process group, so that a
    # signal to the calling job (make, go test) does not take it down.
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    "${launcher[@]}" nohup java "${heap[@]}" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J_CONFIG" \
        -Dkafka.logs.dir="$KAFKA_STATE_DIR" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" \
        >"$OUT_FILE" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"

    wait_ready "$pid" "$offset"
    log "running on 127.0.0.1:$KAFKA_PORT (pid $pid), started in $((SECONDS - t0))s"
}

cmd_stop() {
    local pid
    if ! pid="$(our_pid)"; then
        if port_open "$KAFKA_PORT"; then
            log "not started by this script (no live pid file in $KAFKA_STATE_DIR); leaving the process on 127.0.0.1:$KAFKA_PORT alone"
        else
            log "not running"
        fi
        return 0
    fi
    log "stopping pid $pid"
    kill_and_wait "$pid"
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(our_pid)" && port_open "$KAFKA_PORT"; then
        echo "kafka running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
        return 0
    fi
    if [[ -n "${pid:-}" ]]; then
        echo "kafka starting (pid $pid), 127.0.0.1:$KAFKA_PORT not open yet"
        return 1
    fi
    if port_open "$KAFKA_PORT"; then
        echo "kafka running on 127.0.0.1:$KAFKA_PORT (not started by this script)"
        return 0
    fi
    echo "kafka not running"
    return 1
}

cmd_logs() {
    [[ -f "$SERVER_LOG" ]] || die "no log yet: $SERVER_LOG"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 100 -F "$SERVER_LOG"
    fi
    tail -n "${KAFKA_LOG_LINES:-100}" "$SERVER_LOG"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
logs) shift; cmd_logs "$@" ;;
*)
    echo "usage: $0 start|stop|status|logs [-f]" >&2
    exit 2
    ;;
esac
