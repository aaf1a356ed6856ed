# Shared by redis.sh and cluster.sh (sourced; the caller defines log and
# die).

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
