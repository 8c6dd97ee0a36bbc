#!/usr/bin/env bash
# Install the system packages the tests need, on Debian/Ubuntu, when missing.
# Real services only: the tests start private instances of these programs on
# free loopback ports; no system-wide service needs to be running.
set -euo pipefail

packages=(python3 python3-venv python3-pip mosquitto mosquitto-clients socat influxdb influxdb-client)

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
