#!/usr/bin/env bash
# The whole local cluster: Kafka, Redis, the router and two gateways
# (gw-1 on :8080, gw-2 on :8081). Ctrl-C stops everything it started.
#   deploy/local/run.sh         start and wait for Ctrl-C
#   deploy/local/run.sh start   start, wait until ready, and leave it running
#   deploy/local/run.sh stop    stop the router and gateways of an earlier run
# Logs: .state/logs/{router,gw-1,gw-2}.log. Binaries come from `make build`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
state="$repo/.state/run"
logs="$repo/.state/logs"
mkdir -p "$state" "$logs"
GW1_PORT=${GW1_PORT:-8080}
GW2_PORT=${GW2_PORT:-8081}
ROUTER_PORT=${ROUTER_PORT:-9090}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}
export REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:${REDIS_PORT:-6379}}

stop_services() {
  local pids=()
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

if [ "${1:-}" = stop ]; then
  stop_services
  exit 0
fi

for b in gateway router; do
  [ -x "bin/$b" ] || { echo "bin/$b is missing: run make build (make run does)" >&2; exit 1; }
done
stop_services # leftovers of an earlier run
deploy/redis/redis.sh start
deploy/kafka/kafka.sh start

start() { # name, then env assignments, then the command
  local name=$1; shift
  env "$@" >>"$logs/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}
start router HTTP_ADDR=127.0.0.1:$ROUTER_PORT bin/router -config configs/router.yaml
start gw-1 SERVER_ID=gw-1 HTTP_ADDR=127.0.0.1:$GW1_PORT bin/gateway -config configs/gateway.yaml
start gw-2 SERVER_ID=gw-2 HTTP_ADDR=127.0.0.1:$GW2_PORT bin/gateway -config configs/gateway.yaml

shutdown() {
  trap - INT TERM
  echo
  echo "stopping the router and gateways…"
  stop_services
  if [ "${KEEP_INFRA:-0}" != 1 ]; then
    deploy/kafka/kafka.sh stop || true
    deploy/redis/redis.sh stop || true
  fi
  echo "stopped"
  exit 0
}
trap shutdown INT TERM

ready() { curl -fsS -o /dev/null "$1" 2>/dev/null; }
for url in "http://127.0.0.1:$GW1_PORT/readyz" "http://127.0.0.1:$GW2_PORT/readyz" "http://127.0.0.1:$ROUTER_PORT/readyz"; do
  for i in $(seq 1 300); do
    ready "$url" && break
    for f in "$state"/*.pid; do
      kill -0 "$(cat "$f")" 2>/dev/null || { n=$(basename "$f" .pid); echo "$n exited; last lines of $logs/$n.log:" >&2; tail -n 20 "$logs/$n.log" >&2; shutdown; }
    done
    [ "$i" = 300 ] && { echo "$url not ready after 30s" >&2; shutdown; }
    sleep 0.1
  done
done

if [ "${1:-}" = start ]; then
  trap - INT TERM
  echo "switchboard: gw-1 http://127.0.0.1:$GW1_PORT/  gw-2 http://127.0.0.1:$GW2_PORT/  router http://127.0.0.1:$ROUTER_PORT/  (logs in $logs)"
  exit 0
fi

cat <<MSG

Switchboard is running (open auth mode: pick any user name).
  web client, gw-1   http://127.0.0.1:$GW1_PORT/
  web client, gw-2   http://127.0.0.1:$GW2_PORT/
  metrics            http://127.0.0.1:$GW1_PORT/metrics  http://127.0.0.1:$GW2_PORT/metrics  http://127.0.0.1:$ROUTER_PORT/metrics
  Kafka              $KAFKA_BROKERS      Redis $REDIS_ADDR
  logs               $logs/
Ctrl-C stops everything (KEEP_INFRA=1 keeps Kafka and Redis running).
MSG
# Wait for Ctrl-C, or for a service to die.
while true; do
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    if ! kill -0 "$(cat "$f")" 2>/dev/null; then
      n=$(basename "$f" .pid); echo "$n exited; see $logs/$n.log" >&2; shutdown
    fi
  done
  sleep 1
done
