#!/usr/bin/env bash
# Local Kafka (KRaft, combined broker + controller nodes) for development and
# integration tests: one node, or a cluster of KAFKA_NODES on loopback.
#
# Usage: deploy/kafka/kafka.sh start [NODE...]|stop|status|logs [-f]|kill NODE|brokers
#   start [N...]  starts the nodes (all, or nodes N...) that are not running
#           and waits until they are ready
#   stop    stops every node this state dir has (any KAFKA_NODES)
#   kill N  SIGKILLs node N (1..KAFKA_NODES) and waits until it is gone: a
#           broker loss; "start" brings it back
#   brokers the client addresses, comma separated (for KAFKA_BROKERS)
#
# Environment:
#   KAFKA_NODES            nodes (default 1). Node n listens on KAFKA_PORT+2(n-1)
#                          with its controller on KAFKA_CONTROLLER_PORT+2(n-1):
#                          KAFKA_NODES=3 gives 9092/9093, 9094/9095, 9096/9097
#   KAFKA_PORT             client port on 127.0.0.1          (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default KAFKA_PORT+1)
#   KAFKA_STATE_DIR        data, logs, pid files             (default <repo>/.state/kafka;
#                          several nodes: <state>/cluster-N/node-n)
#   KAFKA_CACHE_DIR        downloaded broker jars            (default <repo>/.cache/kafka)
#   KAFKA_HEAP             JVM heap options                  (default "-Xms256m -Xmx512m")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker    (default 120)
#   KAFKA_LOG_LINES        lines shown by "logs"             (default 100)
#   KAFKA_NODE             the node whose log "logs" shows   (default 1)
#
# Requires java (17+) and, for the first start, mvn to fetch the jars.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"

KAFKA_NODES="${KAFKA_NODES:-1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
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
LOCK_FILE="$KAFKA_STATE_DIR/.lock"

[[ "$KAFKA_NODES" =~ ^[1-9]$ ]] || { echo "kafka: error: KAFKA_NODES=$KAFKA_NODES: want 1 to 9" >&2; exit 2; }
# One node keeps its files in the state dir itself; a cluster of N in
# cluster-N/node-n, beside a shared cluster id.
if ((KAFKA_NODES == 1)); then
    CLUSTER_DIR="$KAFKA_STATE_DIR"
else
    CLUSTER_DIR="$KAFKA_STATE_DIR/cluster-$KAFKA_NODES"
fi
CLUSTER_ID_FILE="$CLUSTER_DIR/cluster.id"
REPLICATION_FACTOR=$((KAFKA_NODES < 3 ? KAFKA_NODES : 3))
MIN_ISR=$((REPLICATION_FACTOR < 2 ? REPLICATION_FACTOR : 2))
QUORUM_VOTERS=""
for ((n = 1; n <= KAFKA_NODES; n++)); do
    QUORUM_VOTERS+="${QUORUM_VOTERS:+,}$n@127.0.0.1:$((KAFKA_CONTROLLER_PORT + 2 * (n - 1)))"
done

# select_node N: point the per-node variables (NODE, PORT, CONTROLLER_PORT,
# NODE_DIR and its files) at node N of this cluster.
select_node() {
    NODE="$1"
    PORT=$((KAFKA_PORT + 2 * (NODE - 1)))
    CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + 2 * (NODE - 1)))
    if ((KAFKA_NODES == 1)); then NODE_DIR="$KAFKA_STATE_DIR"; else NODE_DIR="$CLUSTER_DIR/node-$NODE"; fi
    select_dir "$NODE_DIR"
}

# select_dir DIR: the files of the node kept in DIR.
select_dir() {
    PID_FILE="$1/kafka.pid"
    OUT_FILE="$1/kafka.out"
    SERVER_LOG="$1/server.log"
    PROPS_FILE="$1/server.properties"
    DATA_DIR="$1/data"
}

STARTED_MESSAGE="Kafka Server started"

log() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# shellcheck source=../lib/process.sh
source "$SCRIPT_DIR/../lib/process.sh"

# our_pid: prints the pid from the pid file if that process is alive and is a
# Kafka broker; otherwise removes a stale pid file and returns 1.
our_pid() { pid_from_file 'kafka\.Kafka'; }

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
# to the node's server.log.
java_tool() {
    java -Dlog4j.configuration="file:$LOG4J_CONFIG" -Dkafka.logs.dir="$NODE_DIR" \
        -cp "$LIBS_DIR/*" "$@"
}

write_props() {
    local content
    content="$(<"$PROPS_TEMPLATE")"
    local session=9000 heartbeat=2000 # Kafka's defaults
    ((KAFKA_NODES == 1)) || session=3000 heartbeat=500
    content="${content//@NODE_ID@/"$NODE"}"
    content="${content//@QUORUM_VOTERS@/"$QUORUM_VOTERS"}"
    content="${content//@KAFKA_PORT@/"$PORT"}"
    content="${content//@KAFKA_CONTROLLER_PORT@/"$CONTROLLER_PORT"}"
    content="${content//@KAFKA_DATA_DIR@/"$DATA_DIR"}"
    content="${content//@REPLICATION_FACTOR@/"$REPLICATION_FACTOR"}"
    content="${content//@MIN_ISR@/"$MIN_ISR"}"
    content="${content//@BROKER_SESSION_TIMEOUT_MS@/"$session"}"
    content="${content//@BROKER_HEARTBEAT_INTERVAL_MS@/"$heartbeat"}"
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

# wait_ready PID LOG_OFFSET: wait until the selected node's port accepts
# connections and its log reports the broker started; on failure print the
# logs, stop it and exit 1.
wait_ready() {
    local pid="$1" offset="$2" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            echo "kafka: error: node $NODE (pid $pid) exited during startup" >&2
            show_logs 40 "$offset"
            exit 1
        fi
        if port_open "$PORT" && log_has_started "$offset"; then
            return 0
        fi
        sleep 0.5
    done
    echo "kafka: error: node $NODE not ready after ${KAFKA_START_TIMEOUT}s, stopping pid $pid" >&2
    show_logs 40 "$offset"
    kill_and_wait "$pid"
    rm -f "$PID_FILE"
    exit 1
}

# launch_node: format the selected node's storage on its first start and
# start it in the background; sets LAUNCHED_PID and LAUNCHED_OFFSET.
launch_node() {
    mkdir -p "$DATA_DIR"
    write_props
    format_storage
    LAUNCHED_OFFSET=0
    [[ -f "$SERVER_LOG" ]] && LAUNCHED_OFFSET="$(stat -c %s "$SERVER_LOG")"
    local heap
    read -r -a heap <<<"$KAFKA_HEAP"
    log "starting node $NODE on 127.0.0.1:$PORT (controller $CONTROLLER_PORT, state $NODE_DIR)"
    # setsid: keep the broker out of the caller's process group, so that a
    # signal to the calling job (make, go test) does not take it down.
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    "${launcher[@]}" nohup java "${heap[@]}" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J_CONFIG" \
        -Dkafka.logs.dir="$NODE_DIR" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" \
        >"$OUT_FILE" 2>&1 </dev/null 9>&- &
    LAUNCHED_PID=$!
    echo "$LAUNCHED_PID" >"$PID_FILE"
}

# cmd_start [N...] starts every node (or nodes N...) that is not running,
# then waits for them: the nodes of a cluster only become ready together
# (each needs a quorum of controllers).
cmd_start() {
    local nodes=("$@") n
    if ((${#nodes[@]} == 0)); then
        for ((n = 1; n <= KAFKA_NODES; n++)); do nodes+=("$n"); done
    fi
    for n in "${nodes[@]}"; do
        [[ "$n" =~ ^[1-9]$ ]] && ((n <= KAFKA_NODES)) || die "start: node $n: want 1 to $KAFKA_NODES"
    done
    mkdir -p "$KAFKA_STATE_DIR"
    # Serialise concurrent starts (e.g. several test packages at once).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w $((KAFKA_START_TIMEOUT + 60)) 9 || die "could not lock $LOCK_FILE"
    fi

    local pid t0=$SECONDS wait_pids=() wait_offsets=() wait_nodes=() prepared=""
    for n in "${nodes[@]}"; do
        select_node "$n"
        if pid="$(our_pid)"; then
            if port_open "$PORT"; then
                log "node $NODE already running on 127.0.0.1:$PORT (pid $pid), reusing it"
                continue
            fi
            if ! grep -q "^listeners=PLAINTEXT://127.0.0.1:$PORT," "$PROPS_FILE" 2>/dev/null; then
                die "broker pid $pid already uses $NODE_DIR with another port (see $PROPS_FILE); stop it first"
            fi
            log "node $NODE (pid $pid) is starting, waiting for 127.0.0.1:$PORT"
            wait_pids+=("$pid") wait_offsets+=(0) wait_nodes+=("$n")
            continue
        fi
        if port_open "$PORT"; then
            if ((KAFKA_NODES == 1)); then
                log "something already listens on 127.0.0.1:$PORT (not started by this script); assuming it is a Kafka broker and reusing it"
                continue
            fi
            die "127.0.0.1:$PORT (node $NODE) is taken by a process this state dir did not start (a single-node broker? stop it first, or set KAFKA_PORT)"
        fi
        if port_open "$CONTROLLER_PORT"; then
            die "controller port 127.0.0.1:$CONTROLLER_PORT (node $NODE) is in use; set KAFKA_CONTROLLER_PORT"
        fi
        if [[ -z "$prepared" ]]; then
            need_java
            fetch_libs
            mkdir -p "$CLUSTER_DIR"
            prepared=1
        fi
        launch_node
        wait_pids+=("$LAUNCHED_PID") wait_offsets+=("$LAUNCHED_OFFSET") wait_nodes+=("$n")
    done
    local i
    for i in "${!wait_pids[@]}"; do
        select_node "${wait_nodes[$i]}"
        wait_ready "${wait_pids[$i]}" "${wait_offsets[$i]}"
        log "node $NODE running on 127.0.0.1:$PORT (pid ${wait_pids[$i]})"
    done
    ((${#wait_pids[@]} == 0)) || log "ready in $((SECONDS - t0))s: $(brokers)"
}

# brokers prints the cluster's client addresses, comma separated (the
# KAFKA_BROKERS of the services).
brokers() {
    local n out=""
    for ((n = 1; n <= KAFKA_NODES; n++)); do out+="${out:+,}127.0.0.1:$((KAFKA_PORT + 2 * (n - 1)))"; done
    echo "$out"
}

# node_dirs prints the directory of every node this state dir has, of any
# KAFKA_NODES: the single node's and each cluster's.
node_dirs() {
    local d
    echo "$KAFKA_STATE_DIR"
    for d in "$KAFKA_STATE_DIR"/cluster-*/node-*; do
        [[ -d "$d" ]] && echo "$d"
    done
    return 0
}

# cmd_stop stops every node of this state dir at once (one by one, the
# last ones would wait for a controller quorum that is gone).
cmd_stop() {
    local d pid pids=() found=""
    while read -r d; do
        select_dir "$d"
        if pid="$(our_pid)"; then
            log "stopping pid $pid ($d)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            found=1
        fi
    done < <(node_dirs)
    if [[ -z "$found" ]]; then
        if port_open "$KAFKA_PORT"; then
            log "not started by this script (no live pid file in $KAFKA_STATE_DIR); leaving the process on 127.0.0.1:$KAFKA_PORT alone"
        else
            log "not running"
        fi
        return 0
    fi
    for pid in "${pids[@]}"; do kill_and_wait "$pid"; done
    while read -r d; do rm -f "$d/kafka.pid"; done < <(node_dirs)
    log "stopped"
}

# cmd_kill N: SIGKILL node N, as a crash would, and wait until it is gone.
cmd_kill() {
    local n="${1:-}" pid i
    [[ "$n" =~ ^[1-9]$ ]] && ((n <= KAFKA_NODES)) || die "kill: want a node from 1 to $KAFKA_NODES"
    select_node "$n"
    pid="$(our_pid)" || die "node $n is not running"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$PID_FILE"
    log "killed node $n (pid $pid, 127.0.0.1:$PORT)"
}

cmd_status() {
    local n pid rc=0 line
    for ((n = 1; n <= KAFKA_NODES; n++)); do
        select_node "$n"
        pid=""
        if pid="$(our_pid)" && port_open "$PORT"; then
            line="running on 127.0.0.1:$PORT (pid $pid)"
        elif [[ -n "${pid:-}" ]]; then
            line="starting (pid $pid), 127.0.0.1:$PORT not open yet"
            rc=1
        elif port_open "$PORT"; then
            line="running on 127.0.0.1:$PORT (not started by this script)"
        else
            line="not running"
            rc=1
        fi
        if ((KAFKA_NODES == 1)); then echo "kafka $line"; else echo "kafka node $n $line"; fi
    done
    return "$rc"
}

cmd_logs() {
    select_node "${KAFKA_NODE:-1}"
    [[ -f "$SERVER_LOG" ]] || die "no log yet: $SERVER_LOG"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 100 -F "$SERVER_LOG"
    fi
    tail -n "${KAFKA_LOG_LINES:-100}" "$SERVER_LOG"
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) cmd_stop ;;
status) cmd_status ;;
logs) shift; cmd_logs "$@" ;;
kill) shift; cmd_kill "$@" ;;
brokers) brokers ;;
*)
    echo "usage: $0 start [NODE...]|stop|status|logs [-f]|kill NODE|brokers" >&2
    exit 2
    ;;
esac
