#!/usr/bin/env bash
# Installs the validators deploy/validate_test.go runs on the container
# deployment (make test does this first): nginx (nginx -t), prometheus
# (promtool) and docker-compose (docker-compose config), from Debian's
# packages with apt-get when one is missing. Daemons are not started:
# only the binaries are used.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "validators: missing ${missing[*]} and no apt-get; install them by hand" >&2; exit 1; }
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "validators: missing ${missing[*]}; run as root or install sudo" >&2; exit 1; }
  sudo=(sudo)
fi
echo "validators: installing ${missing[*]} with apt-get"
# policy-rc.d 101: the packages' services are not started (nginx on :80,
# prometheus on :9090, the router's port).
tmp_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  tmp_policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$tmp_policy" >/dev/null
  "${sudo[@]}" chmod +x "$tmp_policy"
  trap '"${sudo[@]}" rm -f "$tmp_policy"' EXIT
fi
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
