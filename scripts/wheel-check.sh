#!/usr/bin/env bash
# The package stands on its own: build the wheel, install it in a clean virtual environment
# outside the checkout, and run `anbu --help` and a short `anbu demo` from there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PY:-python3}"
work="$(mktemp -d /tmp/anbu-wheel.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
wheel="$(ls "$work"/dist/anbu-*.whl)"
# listed once, then searched: `zipfile -l | grep -q` under pipefail failed whenever grep found
# the file early and closed the pipe (BrokenPipeError), reporting a present file as missing
listing="$("$python" -m zipfile -l "$wheel")"
for data in simulators/mosquitto.conf simulators/mosquitto.acl core/migrations/0001_registry.sql \
            dashboards/grafana/anbu-care.json calls/data/utterances_ko.tsv; do
  grep -q " *$data " <<<"$listing" || { echo "wheel lacks $data" >&2; exit 1; }
done
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel[embedded]"
cd "$work"  # nothing of the checkout is importable from here
env -u ANBU_DATABASE_URL "$work/venv/bin/anbu" --help >/dev/null
env -u ANBU_DATABASE_URL "$work/venv/bin/anbu" demo --duration 150 --speed 2000 --port 0 \
  --stop-when-done > "$work/demo.log" 2>&1 || { tail -40 "$work/demo.log" >&2; exit 1; }
grep -q "OK:" "$work/demo.log" || { tail -40 "$work/demo.log" >&2; exit 1; }
echo "wheel-check: $(basename "$wheel") installed outside the checkout; anbu --help and anbu demo passed"
