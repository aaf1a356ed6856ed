# Process helpers shared by deploy/kafka/kafka.sh and deploy/redis/*.sh
# (sourced; the caller sets PID_FILE).

# pid_from_file PATTERN: prints the pid in PID_FILE if that process is alive
# and its command line matches PATTERN (grep); otherwise removes a stale pid
# file and returns 1.
pid_from_file() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$1"; then
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
