#!/usr/bin/env bash
# The package stands on its own: build the wheel, install it in a clean virtual environment
# outside the checkout, and run `anbu --help` and a short `anbu demo` from there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PY:-python3}"
work="$(mktemp -d /tmp/anbu-wheel.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# Build from a copy of the checkout's files (tracked, or new and not ignored), never from a
# build/ left behind by an older layout.
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mkdir "$work/src"
  git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | (cd "$repo" && xargs -0 tar -cf - --ignore-failed-read) | tar -xf - -C "$work/src"
  src="$work/src"
else
  src="$repo"
fi
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$src"
wheel="$(ls "$work"/dist/anbu-*.whl)"
# What the installed commands read must be in the wheel, as real content (a checkout without
# symlinks would ship a one-line path instead of the broker's config).
"$python" - "$wheel" <<'PY'
import sys, zipfile
names = {
    "simulators/mosquitto.conf": b"mosquitto_dynamic_security.so",
    "core/migrations/0001_registry.sql": b"CREATE",
    "dashboards/grafana/anbu-care.json": b"{",
    "calls/data/utterances_ko.tsv": b"\t",
}
with zipfile.ZipFile(sys.argv[1]) as wheel:
    listed = set(wheel.namelist())
    for name, needle in names.items():
        if name not in listed or needle not in wheel.read(name):
            sys.exit(f"wheel lacks {name} (or it is not the real file)")
PY
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel[embedded]"
cd "$work"  # nothing of the checkout is importable from here
env -u ANBU_DATABASE_URL "$work/venv/bin/anbu" --help >/dev/null
env -u ANBU_DATABASE_URL "$work/venv/bin/anbu" demo --duration 150 --speed 2000 --port 0 \
  --stop-when-done > "$work/demo.log" 2>&1 || { tail -40 "$work/demo.log" >&2; exit 1; }
grep -q "OK:" "$work/demo.log" || { tail -40 "$work/demo.log" >&2; exit 1; }
echo "wheel-check: $(basename "$wheel") installed outside the checkout; anbu --help and anbu demo passed"
