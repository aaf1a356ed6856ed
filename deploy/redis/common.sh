# Shared by redis.sh and cluster.sh (sourced; the caller defines log and
# die, and PID_FILE before calling our_pid).

# install_redis installs redis-server and redis-cli with apt-get when they
# are missing.
install_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and apt-get is not available; install Redis manually"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "redis-server is missing; run as root or install sudo"
        sudo=(sudo)
    fi
    log "redis-server not found, installing it with apt-get"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
}

# our_pid: prints the pid from the pid file PID_FILE names (cluster.sh: the
# selected node's) if that process is a live redis-server; otherwise removes
# a stale pid file and returns 1.
our_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'redis-server'; then
        echo "$pid"
        return 0
    fi
    rm -f "$PID_FILE"
    return 1
}

# alive: true while process $1 runs (a zombie waiting to be reaped by
# init has exited).
alive() {
    kill -0 "$1" 2>/dev/null && [[ "$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}
