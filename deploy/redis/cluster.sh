#!/usr/bin/env bash
# Local Redis Cluster for development and integration tests: three masters,
# no replicas, on 127.0.0.1:REDIS_CLUSTER_PORT, +1 and +2 (7000, 7001,
# 7002), each persisted like deploy/redis/redis.sh's single server (an
# append-only file, appendfsync everysec, no RDB snapshots). The first start
# on empty nodes creates the cluster (the 16384 slots split over the three);
# later starts reload every key and the cluster's layout (nodes.conf).
# `stop` shuts every node down cleanly (the AOFs are flushed).
#
# Usage: deploy/redis/cluster.sh start|stop|status|wipe|nodes
#   start  start the nodes that are not running (or reuse a running, healthy
#          cluster), create the cluster when the nodes are new, and wait
#          until it serves every slot (cluster_state:ok)
#   stop   shut down the nodes this script started
#   status the nodes, each node's view of the cluster and its state
#   wipe   delete the data and the cluster layout of the stopped nodes (the
#          next start creates an empty cluster)
#   nodes  the node addresses, comma separated (for REDIS_ADDR)
#
# Environment:
#   REDIS_CLUSTER_PORT       the first node's port on 127.0.0.1; the others
#                            take the next two                    (default 7000)
#   REDIS_CLUSTER_STATE_DIR  one directory per node, named for its port: pid
#                            file, log file and data/ (the AOF, nodes.conf)
#                                                  (default <repo>/.state/redis-cluster)
#   REDIS_CLUSTER_TIMEOUT    seconds to wait for cluster_state:ok  (default 60)
#
# Installs redis-server with apt-get when it is missing.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"

REDIS_CLUSTER_PORT="${REDIS_CLUSTER_PORT:-7000}"
REDIS_CLUSTER_STATE_DIR="${REDIS_CLUSTER_STATE_DIR:-$REPO_DIR/.state/redis-cluster}"
REDIS_CLUSTER_TIMEOUT="${REDIS_CLUSTER_TIMEOUT:-60}"
MASTERS=3
START_TIMEOUT=20
STOP_TIMEOUT=20
NODE_TIMEOUT_MS=5000

LOCK_FILE="$REDIS_CLUSTER_STATE_DIR/.lock"

log() { echo "redis-cluster: $*"; }
die() { echo "redis-cluster: error: $*" >&2; exit 1; }

[[ "$REDIS_CLUSTER_PORT" =~ ^[1-9][0-9]*$ ]] && ((REDIS_CLUSTER_PORT + MASTERS - 1 <= 55535)) ||
    die "REDIS_CLUSTER_PORT=$REDIS_CLUSTER_PORT: want a port from 1 to 55535 (a node also uses its port + 10000)"
[[ "$REDIS_CLUSTER_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "REDIS_CLUSTER_TIMEOUT=$REDIS_CLUSTER_TIMEOUT: want seconds"

PORTS=()
for ((i = 0; i < MASTERS; i++)); do PORTS+=($((REDIS_CLUSTER_PORT + i))); done

# select_node PORT: point the per-node variables at the node on PORT.
select_node() {
    PORT="$1"
    NODE_DIR="$REDIS_CLUSTER_STATE_DIR/$PORT"
    PID_FILE="$NODE_DIR/redis.pid"
    LOG_FILE="$NODE_DIR/redis.log"
    DATA_DIR="$NODE_DIR/data"
}

# nodes prints every node's address, comma separated.
nodes() {
    local p out=""
    for p in "${PORTS[@]}"; do out+="${out:+,}127.0.0.1:$p"; done
    echo "$out"
}

# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

# cli PORT ARGS...: redis-cli against the node on PORT, bounded, without
# the carriage returns of its replies; prints nothing (and succeeds) when
# the node does not answer.
cli() {
    local port="$1"
    shift
    { timeout 3 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null || true; } | tr -d '\r'
}

# node_ping PORT: true if a Redis server answers PONG on 127.0.0.1:PORT.
node_ping() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    [[ "$(cli "$1" ping)" == "PONG" ]]
}

# info_field PORT SECTION FIELD: FIELD of INFO SECTION of the node on PORT.
info_field() { cli "$1" info "$2" | sed -n "s/^$3://p"; }

# cluster_field PORT FIELD: FIELD of CLUSTER INFO of the node on PORT.
cluster_field() { cli "$1" cluster info | sed -n "s/^$2://p"; }

# server_pid PORT: pid reported by the server answering on PORT.
server_pid() { info_field "$1" server process_id; }

# lock: serialise starts, stops and wipes of this state dir (several test
# packages or `make` targets at once).
lock() {
    mkdir -p "$REDIS_CLUSTER_STATE_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w $((REDIS_CLUSTER_TIMEOUT + START_TIMEOUT + 30)) 9 || die "could not lock $LOCK_FILE"
    fi
}

# launch_node: starts the selected node (daemonized) unless it runs (it
# may still be loading its AOF) or another server answers on its port.
launch_node() {
    local pid
    if pid="$(our_pid)"; then
        log "node 127.0.0.1:$PORT already running (pid $pid), reusing it"
        return 0
    fi
    if node_ping "$PORT"; then
        log "a Redis server not started by this script answers on 127.0.0.1:$PORT (pid $(server_pid "$PORT")), reusing it"
        return 0
    fi
    mkdir -p "$DATA_DIR"
    rm -f "$PID_FILE"
    log "starting node 127.0.0.1:$PORT (state $NODE_DIR)"
    # AOF only, as deploy/redis/redis.sh. nodes.conf (the node's id, the
    # other nodes and the slots) is written by the node itself, in data/.
    # The server must not inherit the lock (fd 9).
    redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DATA_DIR" \
        --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
        --appendonly yes --appendfsync everysec --save '' --protected-mode yes \
        --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout "$NODE_TIMEOUT_MS" 9>&- ||
        die "redis-server failed to start on 127.0.0.1:$PORT (see $LOG_FILE)"
}

# wait_node: waits until the selected node answers PONG (an AOF being
# loaded answers LOADING), and checks that it runs in cluster mode.
wait_node() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until node_ping "$PORT"; do
        if ((SECONDS >= deadline)); then
            echo "redis-cluster: error: no PONG on 127.0.0.1:$PORT after ${START_TIMEOUT}s" >&2
            [[ -f "$LOG_FILE" ]] && tail -n 40 "$LOG_FILE" >&2
            exit 1
        fi
        sleep 0.2
    done
    [[ "$(info_field "$PORT" cluster cluster_enabled)" == 1 ]] ||
        die "the Redis server on 127.0.0.1:$PORT runs without cluster support (a single Redis? stop it, or set REDIS_CLUSTER_PORT)"
}

# fresh PORT: true if the node on PORT knows no other node and serves no
# slot (never part of a cluster, or wiped).
fresh() {
    local info
    info="$(cli "$1" cluster info)"
    grep -qx 'cluster_known_nodes:1' <<<"$info" && grep -qx 'cluster_slots_assigned:0' <<<"$info"
}

# cluster_ok: true if every node reports cluster_state:ok and knows the
# others.
cluster_ok() {
    local p id known
    known="$(cli "${PORTS[0]}" cluster nodes)"
    for p in "${PORTS[@]}"; do
        [[ "$(cluster_field "$p" cluster_state)" == ok ]] || return 1
        id="$(cli "$p" cluster myid)"
        [[ -n "$id" ]] && grep -q "^$id " <<<"$known" || return 1
    done
}

# wait_cluster: waits (bounded) until cluster_ok.
wait_cluster() {
    local deadline=$((SECONDS + REDIS_CLUSTER_TIMEOUT)) p
    until cluster_ok; do
        if ((SECONDS >= deadline)); then
            echo "redis-cluster: error: the cluster is not ok after ${REDIS_CLUSTER_TIMEOUT}s" >&2
            for p in "${PORTS[@]}"; do
                echo "--- 127.0.0.1:$p: cluster_state:$(cluster_field "$p" cluster_state), cluster_known_nodes:$(cluster_field "$p" cluster_known_nodes)" >&2
            done
            cli "${PORTS[0]}" cluster nodes >&2 || true
            echo "(nodes of different clusters, or a node wiped alone? $0 stop && $0 wipe && $0 start)" >&2
            exit 1
        fi
        sleep 0.2
    done
}

cmd_start() {
    install_redis
    lock
    local p new=0 t0=$SECONDS
    for p in "${PORTS[@]}"; do
        select_node "$p"
        launch_node
    done
    for p in "${PORTS[@]}"; do
        select_node "$p"
        wait_node
        if fresh "$p"; then new=$((new + 1)); fi
    done
    if ((new == MASTERS)); then
        log "creating the cluster: $(nodes), no replicas"
        local args=() out
        for p in "${PORTS[@]}"; do args+=("127.0.0.1:$p"); done
        # redis-cli waits until the nodes agree on the configuration.
        if ! out="$(timeout "$REDIS_CLUSTER_TIMEOUT" redis-cli --cluster create "${args[@]}" \
            --cluster-replicas 0 --cluster-yes 2>&1)"; then
            echo "$out" >&2
            die "redis-cli --cluster create failed"
        fi
    elif ((new > 0)); then
        die "$new of the $MASTERS nodes are new and the others already in a cluster; to start over: $0 stop && $0 wipe && $0 start"
    fi
    wait_cluster
    local pids=() pid
    for p in "${PORTS[@]}"; do
        select_node "$p"
        pid="$(our_pid || server_pid "$p")"
        pids+=("127.0.0.1:$p (pid ${pid:-unknown})")
    done
    log "running, cluster_state:ok in $((SECONDS - t0))s: ${pids[*]}"
}

cmd_stop() {
    lock
    local p pid pids=() i foreign=""
    for p in "${PORTS[@]}"; do
        select_node "$p"
        if ! pid="$(our_pid)"; then
            if node_ping "$p"; then
                log "node 127.0.0.1:$p not started by this script (no live pid file in $NODE_DIR); leaving it alone"
                foreign=1
            fi
            continue
        fi
        log "stopping node 127.0.0.1:$p (pid $pid)"
        # SHUTDOWN fsyncs the AOF before the process exits (with no save
        # points it writes no RDB file); nodes.conf is always current.
        timeout 10 redis-cli -h 127.0.0.1 -p "$p" shutdown >/dev/null 2>&1 || true
        pids+=("$pid")
    done
    if ((${#pids[@]} == 0)); then
        [[ -n "$foreign" ]] || log "not running"
        return 0
    fi
    for pid in "${pids[@]}"; do
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            alive "$pid" || break
            # SHUTDOWN not accepted: fall back to SIGTERM, which also
            # shuts down cleanly.
            if ((i == 50)); then kill -TERM "$pid" 2>/dev/null || true; fi
            sleep 0.1
        done
        if alive "$pid"; then
            log "pid $pid did not exit within ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for p in "${PORTS[@]}"; do
        select_node "$p"
        our_pid >/dev/null || true # removes the pid files of the stopped nodes
    done
    log "stopped"
}

cmd_wipe() {
    lock
    local p
    for p in "${PORTS[@]}"; do
        select_node "$p"
        if our_pid >/dev/null || node_ping "$p"; then
            die "a node answers on 127.0.0.1:$p: stop the cluster before wiping its data"
        fi
    done
    for p in "${PORTS[@]}"; do
        select_node "$p"
        rm -rf "$DATA_DIR"
        log "wiped $DATA_DIR"
    done
}

cmd_status() {
    local p pid rc=0 state
    for p in "${PORTS[@]}"; do
        select_node "$p"
        if node_ping "$p"; then
            pid="$(our_pid || server_pid "$p")"
            echo "redis-cluster node 127.0.0.1:$p running (pid ${pid:-unknown})"
        else
            echo "redis-cluster node 127.0.0.1:$p not running"
            rc=1
        fi
    done
    for p in "${PORTS[@]}"; do
        node_ping "$p" || continue
        echo "cluster nodes (as 127.0.0.1:$p sees them):"
        cli "$p" cluster nodes | sed 's/^/  /'
        break
    done
    for p in "${PORTS[@]}"; do
        node_ping "$p" || continue
        state="$(cluster_field "$p" cluster_state)"
        echo "127.0.0.1:$p cluster_state:${state:-unknown} cluster_known_nodes:$(cluster_field "$p" cluster_known_nodes) cluster_slots_ok:$(cluster_field "$p" cluster_slots_ok)"
        [[ "$state" == ok ]] || rc=1
    done
    return "$rc"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
wipe) cmd_wipe ;;
nodes) nodes ;;
*)
    echo "usage: $0 start|stop|status|wipe|nodes" >&2
    exit 2
    ;;
esac
