#!/usr/bin/env bash
# The whole local cluster: Kafka, Redis, the router and GATEWAYS gateways
# (default 2: gw-1 on :8080, gw-2 on :8081, gw-3 on :8082, …), under a
# supervisor that restarts a member that exits, with backoff (1 s doubling
# to 30 s; back to 1 s once it stayed up 30 s), while the rest keeps running.
#   deploy/local/run.sh         start, print "running" once every member is
#                               ready, and wait; Ctrl-C stops everything
#   deploy/local/run.sh start   start, wait until ready, and leave it running
#                               (supervised) in the background
#   deploy/local/run.sh stop    stop the supervisor, the router and the
#                               gateways of an earlier run (Kafka and Redis
#                               stay: see make stop)
# Environment: GATEWAYS (2); GW1_PORT (8080) is gw-1's port and the base of
# the others', GW<n>_PORT sets gw-<n>'s; ROUTER_PORT (9090); each member's
# admin address (/metrics) is loopback on its port + 1000 (gateways) or
# + 100 (the router, which serves /ops there); KAFKA_NODES
# (1; 3 runs a 3-broker cluster on KAFKA_PORT, +2, +4); KAFKA_PORT,
# REDIS_PORT; REDIS_CLUSTER (false; true or 1 runs deploy/redis/cluster.sh's
# 3-master Redis Cluster on REDIS_CLUSTER_PORT (7000), +1, +2 instead of the
# single Redis, and REDIS_ADDR defaults to its nodes; the services get
# REDIS_CLUSTER=true); KEEP_INFRA=1 keeps Kafka and Redis running after Ctrl-C;
# READY_TIMEOUT (120 s) bounds `start`. For a second cluster beside the
# first (the tests): RUN_STATE_DIR (.state/run), RUN_LOG_DIR (.state/logs),
# BIN_DIR (bin), SERVER_ID_PREFIX (empty), and the services' own variables
# (REDIS_PREFIX, KAFKA_CHAT_LOG_TOPIC, …), which pass through.
# Logs: $RUN_LOG_DIR/{router,gw-1,gw-2,…}.log, and supervisor.log for `start`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
self="$repo/deploy/local/run.sh"
state=${RUN_STATE_DIR:-$repo/.state/run}
logs=${RUN_LOG_DIR:-$repo/.state/logs}
bin=${BIN_DIR:-$repo/bin}
mkdir -p "$state" "$logs"
GATEWAYS=${GATEWAYS:-2}
GW1_PORT=${GW1_PORT:-8080}
ROUTER_PORT=${ROUTER_PORT:-9090}
READY_TIMEOUT=${READY_TIMEOUT:-120}
BACKOFF_MAX=30 # seconds
STABLE_AFTER=30 # seconds up after which the backoff starts again at 1 s
# Every broker of deploy/kafka's cluster (KAFKA_NODES, KAFKA_PORT).
export KAFKA_BROKERS=${KAFKA_BROKERS:-$(deploy/kafka/kafka.sh brokers)}
# The single Redis of deploy/redis/redis.sh, or REDIS_CLUSTER: the Redis
# Cluster of deploy/redis/cluster.sh.
case "${REDIS_CLUSTER:-}" in
1 | true | TRUE | True | yes | on)
  redis_script=deploy/redis/cluster.sh
  export REDIS_CLUSTER=true
  export REDIS_ADDR=${REDIS_ADDR:-$(deploy/redis/cluster.sh nodes)}
  ;;
"" | 0 | false | FALSE | False | no | off)
  redis_script=deploy/redis/redis.sh
  export REDIS_CLUSTER=false
  export REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:${REDIS_PORT:-6379}}
  ;;
*) echo "REDIS_CLUSTER=$REDIS_CLUSTER: want true (1) or false (0)" >&2; exit 2 ;;
esac
[[ "$GATEWAYS" =~ ^[1-9][0-9]*$ ]] || { echo "GATEWAYS=$GATEWAYS: want a number from 1" >&2; exit 2; }
# jwt auth mode (the default) signs tokens with a secret: unless
# AUTH_JWT_SECRET or AUTH_JWT_KEYS is set, a development secret is made in
# the state directory on the first run (never committed) and reused.
if [ -z "${AUTH_JWT_SECRET:-}${AUTH_JWT_KEYS:-}" ]; then
  [ -s "$state/jwt-secret" ] || (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$state/jwt-secret")
  AUTH_JWT_SECRET=$(cat "$state/jwt-secret")
  export AUTH_JWT_SECRET
fi

# gw_port n: gw-n's port, GW<n>_PORT or GW1_PORT+n-1.
gw_port() { local v="GW$1_PORT"; echo "${!v:-$((GW1_PORT + $1 - 1))}"; }
members() { echo router; for ((i = 1; i <= GATEWAYS; i++)); do echo "gw-$i"; done; }
port_of() { if [ "$1" = router ]; then echo "$ROUTER_PORT"; else gw_port "${1#gw-}"; fi; }
ts() { date +%H:%M:%S; }

# launch name: starts one member in the background, appending to its log.
launch() {
  local name=$1 port
  port=$(port_of "$name")
  echo "==== $(ts) started by the supervisor ====" >>"$logs/$name.log"
  if [ "$name" = router ]; then
    HTTP_ADDR=127.0.0.1:$port "$bin/router" -config configs/router.yaml >>"$logs/$name.log" 2>&1 </dev/null &
  else
    SERVER_ID=${SERVER_ID_PREFIX:-}$name HTTP_ADDR=127.0.0.1:$port "$bin/gateway" -config configs/gateway.yaml \
      >>"$logs/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$state/$name.pid"
}

# supervise runs every member and restarts the one that exits, until
# SIGTERM (or SIGINT/SIGHUP): then it stops them all and exits. It runs in
# its own session, so a Ctrl-C reaches only the run.sh that started it.
supervise() {
  local stopping="" pid status name delay
  declare -A member_of=() timer_of=() backoff=() since=()
  trap 'stopping=1' TERM INT HUP
  echo $$ >"$state/supervisor.pid"
  for name in $(members); do
    launch "$name"
    member_of[$!]=$name backoff[$name]=1 since[$name]=$SECONDS
  done
  while [ -z "$stopping" ]; do
    pid="" status=0
    wait -n -p pid 2>/dev/null || status=$? # no "Killed" notices: we print our own
    [ -n "$stopping" ] && break
    if [ -z "$pid" ]; then sleep 1; continue; fi # nothing to wait for: cannot happen
    if [ -n "${timer_of[$pid]:-}" ]; then # a backoff ended
      name=${timer_of[$pid]}
      unset "timer_of[$pid]"
      launch "$name"
      member_of[$!]=$name since[$name]=$SECONDS
      continue
    fi
    name=${member_of[$pid]:-}
    [ -n "$name" ] || continue
    unset "member_of[$pid]"
    rm -f "$state/$name.pid"
    if ((SECONDS - since[$name] >= STABLE_AFTER)); then backoff[$name]=1; fi
    delay=${backoff[$name]}
    backoff[$name]=$((delay * 2 > BACKOFF_MAX ? BACKOFF_MAX : delay * 2))
    echo "$(ts) $name exited (status $status); restarting in ${delay}s (log: $logs/$name.log)"
    echo "==== $(ts) exited (status $status); restarting in ${delay}s ====" >>"$logs/$name.log"
    sleep "$delay" &
    timer_of[$!]=$name
  done
  for pid in "${!timer_of[@]}"; do kill "$pid" 2>/dev/null || true; done
  terminate 25 "${!member_of[@]}"
  wait || true # reaps every child, the timers included
  for name in $(members); do rm -f "$state/$name.pid"; done
  rm -f "$state/supervisor.pid"
}

# alive pid: true while it runs (a zombie waiting for init has exited).
alive() { kill -0 "$1" 2>/dev/null && [[ "$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

# terminate seconds pid…: SIGTERM to each, SIGKILL to those still alive
# after seconds (gateways drain within GATEWAY_SHUTDOWN_TIMEOUT, 20 s).
terminate() {
  local deadline=$((SECONDS + $1)) pid
  shift
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# supervisor_pid prints the pid of a running supervisor of this state dir.
supervisor_pid() {
  local pid
  pid=$(cat "$state/supervisor.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'run.sh supervise' &&
    echo "$pid"
}

# stop_cluster stops the supervisor (which stops its members), then
# whatever a supervisor that was killed left behind.
stop_cluster() {
  local pid pids=() f
  if pid=$(supervisor_pid); then terminate 30 "$pid"; fi
  rm -f "$state/supervisor.pid"
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if alive "$pid"; then pids+=("$pid"); fi
    rm -f "$f"
  done
  terminate 25 "${pids[@]}"
}

case "${1:-}" in
supervise) supervise; exit 0 ;;
stop) stop_cluster; exit 0 ;;
start | "") ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
mode=${1:-foreground}

for b in gateway router; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is missing: run make build (make run does)" >&2; exit 1; }
done
stop_cluster # leftovers of an earlier run
"$redis_script" start
deploy/kafka/kafka.sh start

shutdown() {
  trap - INT TERM HUP
  echo
  echo "stopping the router and gateways…"
  stop_cluster
  if [ "$mode" = foreground ] && [ "${KEEP_INFRA:-0}" != 1 ]; then
    deploy/kafka/kafka.sh stop || true
    "$redis_script" stop || true
  fi
  echo "stopped"
  exit "${1:-0}"
}
trap shutdown INT TERM HUP

if [ "$mode" = start ]; then
  setsid -w "$self" supervise >>"$logs/supervisor.log" 2>&1 </dev/null &
else
  setsid -w "$self" supervise </dev/null &
fi
sup=$!

# Every member's /readyz must answer 200: for a gateway that means a send
# would be accepted now (docs/PROTOCOL.md).
started=$SECONDS next_note=$((SECONDS + 10))
for name in $(members); do
  url="http://127.0.0.1:$(port_of "$name")/readyz"
  until curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null; do
    kill -0 "$sup" 2>/dev/null || { echo "the supervisor exited (see $logs/supervisor.log)" >&2; shutdown 1; }
    if ((SECONDS - started >= READY_TIMEOUT)) && [ "$mode" = start ]; then
      echo "$name ($url) not ready after ${READY_TIMEOUT}s: $(curl -sS --max-time 3 "$url" 2>&1)" >&2
      tail -n 20 "$logs/$name.log" >&2
      shutdown 1
    fi
    if ((SECONDS >= next_note)); then
      echo "$(ts) waiting for $name to be ready: $(curl -sS --max-time 3 "$url" 2>&1)"
      next_note=$((SECONDS + 10))
    fi
    sleep 0.2
  done
done

redis_note=""
if [ "$REDIS_CLUSTER" = true ]; then redis_note=" (Redis Cluster)"; fi
gw_urls=""
for ((i = 1; i <= GATEWAYS; i++)); do gw_urls+=" gw-$i http://127.0.0.1:$(gw_port "$i")/"; done
if [ "$mode" = start ]; then
  trap - INT TERM HUP
  echo "switchboard running:$gw_urls  router http://127.0.0.1:$ROUTER_PORT/  (logs in $logs; $0 stop stops it)"
  exit 0
fi

echo
if [ "${AUTH_MODE:-jwt}" = open ]; then
  echo "Switchboard is running (open auth mode: pick any user name)."
else
  echo "Switchboard is running. Register in the web client, or:"
  echo "  curl -s -H 'Content-Type: application/json' -d '{\"username\":\"alice\",\"password\":\"a long password\"}' http://127.0.0.1:$GW1_PORT/api/auth/register"
  echo "  (then /api/auth/login; the answer's token goes in ?token= on /ws or Authorization: Bearer)"
fi
for ((i = 1; i <= GATEWAYS; i++)); do
  printf '  web client, gw-%-4s http://127.0.0.1:%s/\n' "$i" "$(gw_port "$i")"
done
cat <<MSG
  metrics            http://127.0.0.1:$((GW1_PORT + 1000))/metrics (each gateway: its port + 1000)  http://127.0.0.1:$((ROUTER_PORT + 100))/metrics
  ops page           http://127.0.0.1:$((ROUTER_PORT + 100))/ops${ADMIN_TOKEN:+?token=…} (the router's admin address)
  Kafka              $KAFKA_BROKERS      Redis $REDIS_ADDR$redis_note
  logs               $logs/
A member that exits is restarted; Ctrl-C stops everything (KEEP_INFRA=1 keeps Kafka and Redis running).
MSG
# Wait for Ctrl-C, or for the supervisor to be stopped (make stop).
wait "$sup" || true
trap - INT TERM HUP
echo "the supervisor was stopped (make stop or run.sh stop); exiting"
