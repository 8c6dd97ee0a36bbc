#!/usr/bin/env bash
# Install the system packages the tests need, on Debian/Ubuntu, when missing.
# Real services only: the tests start private instances of these programs on
# free loopback ports; no system-wide service needs to be running.
set -euo pipefail

# openssl: the TLS tests make a throw-away CA and server certificate at run time.
# gpsd: the GPS tests start a private gpsd fed through a PTY (its client tools, gpsd-tools and
# gpsd-clients with gpsfake, are not needed).
# wrk: the API benchmark's load generator (tests/bench/test_bench_api.py).
# chromium, chromium-driver: the tenants' page is tested in headless Chromium (selenium drives it; no browser download).
packages=(python3 python3-venv python3-pip mosquitto mosquitto-clients socat influxdb influxdb-client gpsd openssl wrk chromium chromium-driver)
# npm (with Node.js): installs axe-core, the accessibility rules the page tests run in Chromium
# (tests/a11y/package.json). A machine that already has npm (e.g. from NodeSource) keeps its own.
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
# policy-rc.d-less containers may try to start the services: we never rely on them
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's gpsd package enables gpsd.socket (systemd socket activation on 127.0.0.1:2947) where
# systemd runs. The tests use free ports and never talk to it; on a Pi it is the gpsd the agent reads.
if command -v ss >/dev/null 2>&1 && ss -ltn 2>/dev/null | grep -q ':2947 '; then
  echo "note: something listens on port 2947 (the system gpsd); tests do not use it"
fi
