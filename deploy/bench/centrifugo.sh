#!/usr/bin/env bash
# Centrifugo, for a side-by-side benchmark with Switchboard (see
# BENCHMARKS.md): two nodes with the Redis engine on the local Redis, under
# their own key prefix, so `chatload -target centrifugo` can run the same
# scenarios against them.
#   deploy/bench/centrifugo.sh install   go install the pinned version into .state/centrifugo/bin
#   deploy/bench/centrifugo.sh start     install when missing, write the configs, start both nodes, wait until ready
#   deploy/bench/centrifugo.sh stop      stop the nodes this script started
#   deploy/bench/centrifugo.sh status
# Environment: CENTRIFUGO_VERSION (v6.9.1), CENTRIFUGO_PORT (8000; node 2
# listens on the next port), REDIS_PORT (6379), CENTRIFUGO_REDIS_DB (2),
# CENTRIFUGO_REDIS_PREFIX (sbbench-cf: Redis PUB/SUB ignores the db, the
# prefix keeps its channels apart). Everything lives in .state/centrifugo
# (git-ignored): the binary, the configs, the HMAC secret that chatload
# signs its tokens with (hmac-secret), pid files and logs. Nothing of
# Centrifugo is part of this repository.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=$repo/.state/centrifugo
bin=$dir/bin/centrifugo
VERSION=${CENTRIFUGO_VERSION:-v6.9.1}
PORT=${CENTRIFUGO_PORT:-8000}
REDIS_PORT=${REDIS_PORT:-6379}
DB=${CENTRIFUGO_REDIS_DB:-2}
PREFIX=${CENTRIFUGO_REDIS_PREFIX:-sbbench-cf}
mkdir -p "$dir"

install() {
  # go install leaves the binary's own version string unset: a stamp file says which it is.
  if [ -x "$bin" ] && [ "$(cat "$dir/bin/version" 2>/dev/null)" = "$VERSION" ]; then return; fi
  echo "centrifugo: installing $VERSION into $dir/bin"
  GOBIN=$dir/bin go install "github.com/centrifugal/centrifugo/v6@$VERSION"
  echo "$VERSION" >"$dir/bin/version"
}

# config n: the JSON config of node n.
config() {
  local n=$1 port=$((PORT + $1 - 1))
  cat <<JSON
{
  "http_server": {"address": "127.0.0.1", "port": $port},
  "log": {"level": "warn"},
  "client": {"token": {"hmac_secret_key": "$(cat "$dir/hmac-secret")"}, "allowed_origins": ["http://127.0.0.1:$port"]},
  "channel": {"without_namespace": {"allow_publish_for_client": true}},
  "engine": {"type": "redis", "redis": {"address": ["redis://127.0.0.1:$REDIS_PORT/$DB"], "prefix": "$PREFIX"}},
  "http_api": {"key": "$(cat "$dir/hmac-secret")"},
  "prometheus": {"enabled": true},
  "health": {"enabled": true},
  "usage_stats": {"enabled": false},
  "node": {"name": "cf-$n"}
}
JSON
}

alive() { [ -f "$dir/node$1.pid" ] && kill -0 "$(cat "$dir/node$1.pid")" 2>/dev/null; }

start() {
  install
  [ -s "$dir/hmac-secret" ] || (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/hmac-secret")
  redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "centrifugo: no Redis on 127.0.0.1:$REDIS_PORT (make infra, or REDIS_PORT=…)" >&2; exit 1; }
  for n in 1 2; do
    if alive $n; then echo "centrifugo: node $n already running (pid $(cat "$dir/node$n.pid"))"; continue; fi
    config $n >"$dir/config$n.json"
    "$bin" --config "$dir/config$n.json" >>"$dir/node$n.log" 2>&1 </dev/null &
    echo $! >"$dir/node$n.pid"
  done
  for n in 1 2; do
    local port=$((PORT + n - 1)) i
    for ((i = 0; i < 100; i++)); do
      curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
      alive $n || { echo "centrifugo: node $n exited; see $dir/node$n.log" >&2; exit 1; }
      sleep 0.2
    done
    curl -fs "http://127.0.0.1:$port/health" >/dev/null || { echo "centrifugo: node $n not healthy after 20 s" >&2; exit 1; }
    echo "centrifugo: node $n ready on ws://127.0.0.1:$port/connection/websocket (pid $(cat "$dir/node$n.pid"))"
  done
}

stop() {
  local n pid i
  for n in 1 2; do
    alive $n || { rm -f "$dir/node$n.pid"; continue; }
    pid=$(cat "$dir/node$n.pid")
    kill -TERM "$pid"
    for ((i = 0; i < 100 && $(kill -0 "$pid" 2>/dev/null && echo 1 || echo 0); i++)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/node$n.pid"
    echo "centrifugo: node $n stopped"
  done
}

status() {
  for n in 1 2; do
    if alive $n; then echo "node $n running (pid $(cat "$dir/node$n.pid"), port $((PORT + n - 1)))"; else echo "node $n stopped"; fi
  done
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
