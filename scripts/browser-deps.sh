#!/usr/bin/env bash
# Installs what the browser tests (tests/browser) need: Debian's Chromium, which Playwright
# (the test extra) drives because Playwright's own download of a browser is not reachable from
# these machines; a Korean font (fonts-nanum), without which the pages' Korean shows as empty
# boxes in the screenshots; and axe-core from the npm registry (the accessibility checks), in
# .browser-deps/. Only `make test` needs them; `make demo` does not.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if ! { command -v chromium >/dev/null 2>&1 && [ -d /usr/share/fonts/truetype/nanum ]; }; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing chromium and fonts-nanum with apt-get (for the browser tests) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-nanum >/dev/null
  else
    cat >&2 <<MSG
The browser tests need Chromium and a Korean font and could not install them (not root, or no
apt-get). Install them, then run make again:
  Debian/Ubuntu: sudo apt-get install chromium fonts-nanum
MSG
    exit 1
  fi
fi
if [ ! -f "$here/.browser-deps/node_modules/axe-core/axe.min.js" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "The accessibility tests need axe-core from the npm registry, and npm is missing." >&2
    exit 1
  fi
  echo "Installing axe-core with npm into .browser-deps/ (for the accessibility tests) ..."
  npm install --silent --no-audit --no-fund --prefix "$here/.browser-deps" axe-core@4 >/dev/null
fi
