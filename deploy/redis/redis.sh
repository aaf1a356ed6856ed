#!/usr/bin/env bash
# Local Redis for development and integration tests, persisted with an
# append-only file (appendfsync everysec, no RDB snapshots; README.md,
# Operations, says why). `stop` shuts it down cleanly (the AOF is flushed),
# so the next `start` reloads every key.
#
# Usage: deploy/redis/redis.sh start|stop|status|wipe
#   wipe   delete the data of a stopped server (the next start is empty)
#
# Environment:
#   REDIS_PORT       port on 127.0.0.1                        (default 6379)
#   REDIS_STATE_DIR  pid file, log file and data/ (the AOF)   (default <repo>/.state/redis)
#
# Installs redis-server with apt-get when it is missing.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_STATE_DIR="${REDIS_STATE_DIR:-$REPO_DIR/.state/redis}"
START_TIMEOUT=20
STOP_TIMEOUT=20

PID_FILE="$REDIS_STATE_DIR/redis.pid"
LOG_FILE="$REDIS_STATE_DIR/redis.log"
DATA_DIR="$REDIS_STATE_DIR/data"

log() { echo "redis: $*"; }
die() { echo "redis: error: $*" >&2; exit 1; }

# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

# redis_ping: true if a Redis server answers PONG on 127.0.0.1:REDIS_PORT.
redis_ping() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

# server_pid: pid reported by the server answering on the port.
server_pid() {
    timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null |
        tr -d '\r' | sed -n 's/^process_id://p'
}

cmd_start() {
    install_redis
    local pid
    if redis_ping; then
        if pid="$(our_pid)"; then
            log "already running on 127.0.0.1:$REDIS_PORT (pid $pid), reusing it"
            if [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get appendonly 2>/dev/null | tail -n 1)" != yes ]]; then
                log "warning: it runs without persistence (started by an older version of this script); restart it with: $0 stop && $0 start"
            fi
        else
            log "a Redis server not started by this script answers on 127.0.0.1:$REDIS_PORT (pid $(server_pid)), reusing it"
        fi
        return 0
    fi
    mkdir -p "$DATA_DIR"
    rm -f "$PID_FILE"
    log "starting on 127.0.0.1:$REDIS_PORT (state $REDIS_STATE_DIR)"
    # AOF only: with appendonly on, Redis loads the AOF at start and never
    # an RDB file, so snapshots would only cost forks and disk.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA_DIR" \
        --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
        --appendonly yes --appendfsync everysec --save '' --protected-mode yes ||
        die "redis-server failed to start (see $LOG_FILE)"

    local deadline=$((SECONDS + START_TIMEOUT))
    until redis_ping; do
        if ((SECONDS >= deadline)); then
            echo "redis: error: no PONG on 127.0.0.1:$REDIS_PORT after ${START_TIMEOUT}s" >&2
            [[ -f "$LOG_FILE" ]] && tail -n 40 "$LOG_FILE" >&2
            exit 1
        fi
        sleep 0.2
    done
    log "running on 127.0.0.1:$REDIS_PORT (pid $(our_pid || server_pid))"
}

cmd_stop() {
    local pid i
    if ! pid="$(our_pid)"; then
        if redis_ping; then
            log "not started by this script (no live pid file in $REDIS_STATE_DIR); leaving the server on 127.0.0.1:$REDIS_PORT alone"
        else
            log "not running"
        fi
        return 0
    fi
    log "stopping pid $pid"
    # SHUTDOWN fsyncs the AOF before the process exits (with no save
    # points it writes no RDB file).
    timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        alive "$pid" || break
        # SHUTDOWN not accepted (e.g. REDIS_PORT differs from the running
        # server's port): fall back to SIGTERM, which also shuts down cleanly.
        if ((i == 50)); then kill -TERM "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    if alive "$pid"; then
        log "pid $pid did not exit within ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_wipe() {
    if our_pid >/dev/null || redis_ping; then
        die "Redis answers on 127.0.0.1:$REDIS_PORT: stop it before wiping its data"
    fi
    rm -rf "$DATA_DIR"
    log "wiped $DATA_DIR"
}

cmd_status() {
    local pid
    if redis_ping; then
        pid="$(our_pid || server_pid)"
        echo "redis running on 127.0.0.1:$REDIS_PORT (pid ${pid:-unknown})"
        return 0
    fi
    echo "redis not running"
    return 1
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
wipe) cmd_wipe ;;
*)
    echo "usage: $0 start|stop|status|wipe" >&2
    exit 2
    ;;
esac
