#!/usr/bin/env bash
# End-to-end browser test of the web client against a running local cluster
# (gateways at GW1_URL / GW2_URL, default http://127.0.0.1:8080 and :8081).
# Installs Debian's chromium when missing and the npm dev dependencies when needed.
set -euo pipefail
cd "$(dirname "$0")"

CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
export CHROMIUM_PATH

if [ ! -x "$CHROMIUM_PATH" ]; then
  if [ "$CHROMIUM_PATH" != /usr/bin/chromium ]; then
    echo "run.sh: CHROMIUM_PATH=$CHROMIUM_PATH is not executable" >&2
    exit 1
  fi
  echo "run.sh: installing chromium" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi

command -v node >/dev/null || { echo "run.sh: node is required (20 or later)" >&2; exit 1; }
command -v npm >/dev/null || { echo "run.sh: npm is required" >&2; exit 1; }

# npm ci when node_modules is missing or was installed from another package-lock.json.
stamp=node_modules/.switchboard-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f node_modules/puppeteer-core/package.json ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi

exec node --test chat.test.mjs
