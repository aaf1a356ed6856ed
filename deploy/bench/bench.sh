#!/usr/bin/env bash
# make bench: a fixed set of chatload scenarios against the local cluster,
# each run BENCH_REPEAT times (3), then the generated section of
# BENCHMARKS.md rewritten from their reports (between <!-- bench:begin -->
# and <!-- bench:end -->): one row per scenario, target and setup with the
# medians of its runs, their range and the sum of their losses. The JSON
# reports go under docs/bench/ as name-1.json, name-2.json, …; a row's plot
# is drawn from its median run, beside that run's report (name-i.png).
#
# Uses a running `make run` cluster when gw-1 answers /readyz; otherwise
# starts one for the run (and stops it after) with the settings a load test
# needs: AUTH_MODE=open, GATEWAY_MESSAGE_RATE=-1 (no per-user send limit),
# GATEWAY_CONNECT_RATE/BURST 2000/4000 (admission control). A cluster you
# started yourself needs the same for the private runs not to be rate
# limited. With BENCH_CENTRIFUGO=1 (the default) the private runs are also
# made against Centrifugo (deploy/bench/centrifugo.sh: 2 nodes, Redis
# engine, on CENTRIFUGO_PORT and the next port), started and stopped here.
#
# Environment: GW1_PORT (8080), ROUTER_PORT, REDIS_PORT, KAFKA_PORT (as for
# make run), BENCH_DURATION (20s per run), BENCH_RATES ("2000 5000"),
# BENCH_REPEAT (3 runs of each), BENCH_CENTRIFUGO (1), CENTRIFUGO_PORT
# (8000), BENCH_OUT (docs/bench).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
GW1_PORT=${GW1_PORT:-8080}
export GW1_PORT
DURATION=${BENCH_DURATION:-20s}
RATES=${BENCH_RATES:-2000 5000}
OUT=${BENCH_OUT:-docs/bench}
CF=${BENCH_CENTRIFUGO:-1}
CF_PORT=${CENTRIFUGO_PORT:-8000}
REPEAT=${BENCH_REPEAT:-3}
case $REPEAT in '' | *[!0-9]*) REPEAT=0 ;; *) REPEAT=$((10#$REPEAT)) ;; esac
if [ "$REPEAT" -lt 1 ]; then
  echo "bench: BENCH_REPEAT must be a whole number >= 1, not '${BENCH_REPEAT:-}'" >&2
  exit 2
fi
load=bin/chatload
mkdir -p "$OUT"
# The previous reports, and the plot beside each; other images stay.
for f in "$OUT"/*.json; do
  if [ -e "$f" ]; then rm -f "$f" "${f%.json}.png"; fi
done

started=""
cf_started=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  if [ -n "$cf_started" ]; then CENTRIFUGO_PORT=$CF_PORT deploy/bench/centrifugo.sh stop || true; fi
  if [ -n "$started" ]; then deploy/local/run.sh stop || true; fi
}
trap cleanup EXIT

if ! curl -fs "http://127.0.0.1:$GW1_PORT/readyz" >/dev/null; then
  echo "bench: no cluster on :$GW1_PORT; starting one for the run"
  make -s infra
  AUTH_MODE=open GATEWAY_MESSAGE_RATE=-1 GATEWAY_CONNECT_RATE=2000 GATEWAY_CONNECT_BURST=4000 deploy/local/run.sh start
  started=1
fi

# run name args…: one scenario, REPEAT times, its reports in
# $OUT/name-1.json, $OUT/name-2.json, …; a loss fails the bench at the end.
failed=0
reports=()
before_each="" # a command run before each run of the scenario
run() {
  local name=$1 i
  shift
  for ((i = 1; i <= REPEAT; i++)); do
    if [ -n "$before_each" ]; then $before_each; fi
    echo "== $name, run $i of $REPEAT: chatload $*"
    if ! "$load" -quiet -json "$OUT/$name-$i.json" "$@"; then failed=1; fi
    if [ -s "$OUT/$name-$i.json" ]; then reports+=("$OUT/$name-$i.json"); fi
    sleep 2 # let queues drain before the next run
  done
}

# A warm-up, unreported: the first seconds after a start pay the router's
# catch-up and the JIT of the broker.
"$load" -quiet -scenario private -pairs 50 -rate 1000 -duration 5s -cpu off >/dev/null || true

for rate in $RATES; do
  run "private-switchboard-$rate" -scenario private -pairs 50 -rate "$rate" -duration "$DURATION"
done
if [ "$CF" = 1 ]; then
  if ! curl -fs "http://127.0.0.1:$CF_PORT/health" >/dev/null; then
    CENTRIFUGO_PORT=$CF_PORT deploy/bench/centrifugo.sh start
    cf_started=1
  fi
  cf=(-target centrifugo -gateways "ws://127.0.0.1:$CF_PORT,ws://127.0.0.1:$((CF_PORT + 1))")
  "$load" -quiet "${cf[@]}" -scenario private -pairs 50 -rate 1000 -duration 3s -cpu off >/dev/null || true
  for rate in $RATES; do
    run "private-centrifugo-$rate" "${cf[@]}" -scenario private -pairs 50 -rate "$rate" -duration "$DURATION"
  done
  if [ -n "$cf_started" ]; then
    CENTRIFUGO_PORT=$CF_PORT deploy/bench/centrifugo.sh stop # before the other runs: it would take CPU
    cf_started=""
  fi
fi
run public -scenario public -senders 2 -receivers 2000 -rate 50 -duration "$DURATION"
run sync -scenario sync -pairs 20 -rate 500 -sync-users 16 -sync-convs 1000 -duration "$DURATION"
run storm -scenario storm -clients 2000 -senders 10 -rate 200 -duration "$DURATION"
# connect measures gw-1's resident memory before and after: each run needs
# a gateway that never held connections (the Go runtime returns freed
# memory to the system only slowly, so a second run on the same process
# would measure nothing). With the cluster of deploy/local/run.sh, gw-1 is
# restarted before each run (its supervisor starts it again).
# shellcheck disable=SC2317 # called through $before_each
fresh_gw1() {
  local pidfile=.state/run/gw-1.pid old i
  [ -s "$pidfile" ] || return 0
  old=$(cat "$pidfile")
  kill -TERM "$old" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    if [ -s "$pidfile" ] && [ "$(cat "$pidfile")" != "$old" ] &&
      curl -fs "http://127.0.0.1:$GW1_PORT/readyz" >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench: gw-1 did not come back after a restart" >&2
  failed=1
}
before_each=fresh_gw1
run connect -scenario connect -gateways "ws://127.0.0.1:$GW1_PORT" -conns 5000
before_each=""

# One row per scenario, target and setup, the medians of its runs; each
# row's plot drawn from its median run.
"$load" markdown -plot -o BENCHMARKS.md -commit "$(git rev-parse --short HEAD)" "${reports[@]}"
echo "bench: BENCHMARKS.md rewritten from ${#reports[@]} reports ($REPEAT runs of each scenario) in $OUT"
exit $failed
