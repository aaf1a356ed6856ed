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

# shellcheck source=../lib/process.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/process.sh"

# our_pid: prints the pid from the pid file PID_FILE names (cluster.sh: the
# selected node's) if that process is a live redis-server; otherwise removes
# a stale pid file and returns 1.
our_pid() { pid_from_file 'redis-server'; }
