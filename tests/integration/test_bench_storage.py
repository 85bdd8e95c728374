"""`anbu bench storage` on the session's PostgreSQL: the same readings in both storage modes."""

from __future__ import annotations

import uuid

from anbu.bench.storage import measure, town_readings
from tests.conftest import PgServer


def test_the_bench_measures_the_same_readings_in_both_modes(pg_server: PgServer) -> None:
    made: list[str] = []

    def dsn_for(name: str) -> str:
        made.append(f"{name}_{uuid.uuid4().hex[:6]}")
        return pg_server.create(made[-1])

    said: list[str] = []
    try:
        figures = measure(dsn_for, homes=4, days=9, seed=3, echo=said.append)
    finally:
        for name in made:
            pg_server.drop(name)
    assert figures.readings == len(set((ts, sid) for ts, sid, _, _ in town_readings(4, 9, 3)))
    assert figures.readings > 4 * 9 * 100  # a routine day is a few hundred readings
    assert figures.partitions_bytes > figures.readings * 20  # heap rows and the unique index
    line = figures.line()
    assert line.startswith(f"storage: readings={figures.readings} partitions_bytes_per_reading=")
    if figures.why:
        assert figures.timescale_bytes is None and "n/a" in line
        return
    assert figures.timescale_bytes is not None and figures.compressed_bytes is not None
    # (on so few readings the emptied chunks and their indexes weigh more than the data)
    assert figures.compressed_bytes < figures.timescale_bytes
    assert set(figures.columns) == {"ts", "received_at", "value"}
    assert 0 < sum(figures.columns.values()) < figures.compressed_bytes
