#!/usr/bin/env bash
# The scale-out benchmark: for each gateway count in SCALE_GATEWAYS
# ("1 2 4"), start the local cluster with that many gateways (make run's
# deploy/local/run.sh, load-test settings), offer direct messages at each
# rate of SCALE_RATES to SCALE_PAIRS pairs spread over all the gateways
# (chatload -scenario dm) for SCALE_DURATION each, and print, per gateway
# count, the highest rate whose delivery p99 stayed within SCALE_P99_MS
# with nothing lost, as a markdown table; every run's JSON report goes to
# SCALE_OUT. Each cluster gets a 5 s warm-up run first. Everything stays
# on loopback; every run is bounded.
#
# Environment: SCALE_GATEWAYS ("1 2 4"), SCALE_RATES ("1000 2000 3000 4000
# 5000 6000"), SCALE_PAIRS (50), SCALE_DURATION (10s), SCALE_P99_MS (50),
# SCALE_OUT (.state/scaleout), and GW1_PORT etc. as for make run. Uses the
# running Kafka and Redis (make infra) and stops the cluster it starts.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
GWS=${SCALE_GATEWAYS:-1 2 4}
RATES=${SCALE_RATES:-1000 2000 3000 4000 5000 6000}
PAIRS=${SCALE_PAIRS:-50}
DURATION=${SCALE_DURATION:-10s}
BOUND=${SCALE_P99_MS:-50}
OUT=${SCALE_OUT:-.state/scaleout}
GW1_PORT=${GW1_PORT:-8080}
export GW1_PORT
mkdir -p "$OUT"
make -s build infra >/dev/null
trap 'deploy/local/run.sh stop >/dev/null 2>&1 || true' EXIT

echo "| gateways | highest rate with delivery p99 ≤ $BOUND ms (msg/s) | p50 / p99 there (ms) | at the next rate: p50 / p99 (ms), achieved msg/s |"
echo "|---|---|---|---|"
for n in $GWS; do
  deploy/local/run.sh stop >/dev/null 2>&1 || true
  GATEWAYS=$n AUTH_MODE=open GATEWAY_MESSAGE_RATE=-1 KEEP_INFRA=1 deploy/local/run.sh start >/dev/null
  urls=$(for i in $(seq 0 $((n - 1))); do printf 'ws://127.0.0.1:%d,' $((GW1_PORT + i)); done)
  urls=${urls%,}
  # A warm-up run, not counted: the first seconds after a start (new
  # topics, consumer groups joining, the producers' metadata) are slower.
  bin/chatload -quiet -cpu off -scenario dm -pairs "$PAIRS" -rate 1000 -duration 5s -gateways "$urls" >/dev/null 2>&1 || true
  best="—" there="—" next="—"
  for rate in $RATES; do
    f="$OUT/gw$n-$rate.json"
    bin/chatload -quiet -cpu off -scenario dm -pairs "$PAIRS" -rate "$rate" -duration "$DURATION" \
      -gateways "$urls" -json "$f" >/dev/null 2>&1 || true
    read -r p50 p99 lost achieved < <(python3 - "$f" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("0 1e9 1 0"); sys.exit()
d = r.get("delivery_latency") or {}
print(d.get("p50_ms", 0), d.get("p99_ms", 1e9), r.get("lost", 0) + r.get("receiver_gone", 0), round(r.get("achieved_rate", 0)))
EOF
)
    if [ "$lost" = 0 ] && python3 -c "import sys; sys.exit(0 if float('$p99') <= $BOUND else 1)"; then
      best=$rate there="$p50 / $p99"
    else
      next="$p50 / $p99, $achieved"
      break
    fi
  done
  echo "| $n | $best | $there | $next |"
done
