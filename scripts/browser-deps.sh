#!/usr/bin/env bash
# Installs Chromium for the browser tests (tests/browser): Playwright (the test extra) drives
# Debian's chromium package, because Playwright's own download of a browser is not reachable
# from these machines; and a Korean font (fonts-nanum), without which the pages' Korean
# shows as empty boxes in the screenshots. Only `make test` needs them; `make demo` does not.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && [ -d /usr/share/fonts/truetype/nanum ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing chromium and fonts-nanum with apt-get (for the browser tests) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium fonts-nanum >/dev/null
  exit 0
fi
cat >&2 <<MSG
The browser tests need Chromium and could not install it (not root, or no apt-get).
Install it, then run make again:
  Debian/Ubuntu: sudo apt-get install chromium fonts-nanum
MSG
exit 1
