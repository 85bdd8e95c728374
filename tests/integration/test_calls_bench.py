"""A smoke run of `anbu bench calls` with a handful of check-ins: every call placed plays out to
its recorded outcome, once (the timings are not asserted)."""

from __future__ import annotations

import re

from anbu.bench.calls import run_bench


def test_bench_calls_round_completes(db_url: str) -> None:
    line = run_bench(40, cps=50.0, database_url=db_url, settle_s=10.0, web_workers=2)
    match = re.fullmatch(
        r"calls: checkins=(\d+) completed=(\d+) seconds=([\d.]+) floor_seconds=([\d.]+) "
        r"duplicates=(\d+)",
        line,
    )
    assert match is not None, line
    assert match.group(1) == "40"
    assert match.group(2) == "40", "every call's outcome recorded"
    assert float(match.group(3)) > 0
    assert float(match.group(4)) == 0.8
    assert match.group(5) == "0"
