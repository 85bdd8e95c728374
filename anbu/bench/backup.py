"""`anbu bench backup`: how long a district's backup and restore take, in both storage modes.

The readings are the simulated town's (anbu.bench.storage.town_readings: N homes living their
routines for D days, about 300 readings a home a day), loaded into a migrated database on one
throwaway PostgreSQL; under TimescaleDB the chunks older than a week are compressed, as the
policy would. Then `anbu backup`'s code dumps it and `anbu restore`'s restores it into a new
database. Baseline in the same run: the time to read every reading out with COPY (what any
dump must at least do) and to load them with COPY (what any restore must at least do).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _copy_out_seconds(dsn: str) -> float:
    import psycopg

    began = time.perf_counter()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor().copy("COPY (SELECT * FROM anbu.readings) TO STDOUT (FORMAT BINARY)") as copy,
    ):
        for _ in copy:
            pass
    return time.perf_counter() - began


def _mode(pg: Any, mode: str, rows: list[Any], days: int, work: Path) -> Iterator[str]:
    import psycopg

    from anbu.backup import backup, restore
    from anbu.bench.storage import START, _load
    from core.db import migrate

    dsn = pg.create_database(f"bench_{mode}")
    migrate(dsn, storage=mode)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT anbu.ensure_reading_partitions(%s::date, %s)", (START.date(), days + 2)
        )
        began = time.perf_counter()
        readings = _load(conn, rows)
        load_s = time.perf_counter() - began
        if mode == "timescaledb":
            conn.execute(
                "SELECT count(compress_chunk(c)) FROM show_chunks('anbu.readings',"
                " older_than => interval '7 days') c"
            )
    out_s = _copy_out_seconds(dsn)
    made = backup(dsn, work / f"{mode}.dump")
    target = pg.create_database(f"bench_{mode}_restored")
    done = restore(target, made.path)
    with psycopg.connect(target) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.readings").fetchone()
    if not row or int(row[0]) != readings:
        raise RuntimeError(f"{mode}: restored {row} readings of {readings}")
    mb = made.bytes / 1e6
    yield (
        f"backup {mode}: readings={readings} dump_mb={mb:.1f}"
        f" backup_s={made.seconds:.1f} (baseline COPY out {out_s:.1f} s)"
        f" restore_s={done.seconds:.1f} (baseline COPY in {load_s:.1f} s)"
        f" readings_per_s_restored={readings / max(done.seconds, 1e-9):.0f}"
    )


def run_bench(homes: int, days: int, per_day: int = 0, seed: int = 7) -> Iterator[str]:
    """Lines of figures, one per storage mode the server can run (`per_day` is informative:
    the routines decide how many readings a home makes)."""
    import psycopg

    from anbu.bench.storage import town_readings
    from core.db import timescale_unusable
    from simulators.servers import EmbeddedPostgres

    began = time.perf_counter()
    rows = sorted(town_readings(homes, days, seed))
    yield (
        f"backup: {len(rows)} readings of {homes} homes over {days} days generated in"
        f" {time.perf_counter() - began:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="anbu-bench-backup-") as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres(work / "pg")
        pg.init()
        pg.start()
        try:
            with psycopg.connect(pg.dsn) as conn:
                why = timescale_unusable(conn)
            modes = ["partitions"] if why else ["timescaledb", "partitions"]
            if why:
                yield f"backup: timescaledb not measured ({why})"
            for mode in modes:
                yield from _mode(pg, mode, rows, days, work)
        finally:
            pg.stop("immediate")
