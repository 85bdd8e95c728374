"""A smoke run of `anbu bench calls` with a handful of check-ins (figures are not asserted)."""

from __future__ import annotations

import re

from anbu.bench.calls import run_bench


def test_bench_calls_smoke(db_url: str) -> None:
    line = run_bench(20, cps=50.0, database_url=db_url, settle_s=10.0)
    match = re.fullmatch(
        r"calls: checkins=(\d+) seconds=[\d.]+ floor_seconds=([\d.]+) duplicates=(\d+)", line
    )
    assert match is not None, line
    assert match.group(1) == "20"
    assert float(match.group(2)) == 0.4
    assert match.group(3) == "0"
