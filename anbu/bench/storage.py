"""`anbu bench storage`: bytes per reading on disk, TimescaleDB compressed and not, beside the
plain-PostgreSQL daily partitions, in the same run on one throwaway PostgreSQL.

The readings are the simulated town's: N homes (a door, four motion sensors, a plug each), each
living its routine for D days (simulators.routines; about 300 readings a home a day, at
irregular moments, as events are), received 50-1500 ms after they were taken. The days end
more than a week ago, so that under TimescaleDB every chunk is one the compression policy would
compress. Sizes are whole relations with their indexes (pg_total_relation_size of every
partition; hypertable_size, which counts the compressed chunks, their indexes and the emptied
chunks they left), divided by the readings stored.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2026, 9, 1, tzinfo=UTC)  # far enough back for every day to be compressible


@dataclass(frozen=True, slots=True)
class StorageFigures:
    readings: int
    partitions_bytes: int
    timescale_bytes: int | None  # None: TimescaleDB not available (see `why`)
    compressed_bytes: int | None
    compress_seconds: float | None
    why: str
    columns: dict[str, int] = field(default_factory=dict)  # compressed bytes of each column

    def per_reading(self, size: int | None) -> str:
        return "n/a" if size is None else f"{size / self.readings:.2f}"

    def line(self) -> str:
        return (
            f"storage: readings={self.readings}"
            f" partitions_bytes_per_reading={self.per_reading(self.partitions_bytes)}"
            f" timescale_bytes_per_reading={self.per_reading(self.timescale_bytes)}"
            f" timescale_compressed_bytes_per_reading={self.per_reading(self.compressed_bytes)}"
            + (f" (timescaledb: {self.why})" if self.why else "")
        )


def town_readings(
    homes: int, days: int, seed: int
) -> Iterator[tuple[datetime, int, float, datetime]]:
    """(ts, sensor_id, value, received_at) for `homes` homes living `days` days from START."""
    from simulators.routines import routine_events
    from simulators.town import local_midnight, make_homes

    rng = random.Random(seed)
    ids: dict[tuple[str, str], int] = {}
    first_day = local_midnight(START + timedelta(hours=12))
    for spec in make_homes(homes, seed):
        for day in range(days):
            for event in routine_events(spec, first_day + timedelta(days=day), rng):
                sensor_id = ids.setdefault((event.gateway, event.sensor), len(ids) + 1)
                delay = timedelta(milliseconds=rng.randint(50, 1500))
                yield event.ts, sensor_id, event.value, event.ts + delay


def _load(conn: Any, rows: list[tuple[datetime, int, float, datetime]]) -> int:
    with conn.cursor().copy(
        "COPY anbu.readings (ts, sensor_id, value, received_at) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["timestamptz", "int8", "float8", "timestamptz"])
        for row in rows:
            copy.write_row(row)
    conn.commit()
    conn.execute("VACUUM ANALYZE anbu.readings")
    (count,) = conn.execute("SELECT count(*) FROM anbu.readings").fetchone() or (0,)
    return int(count)


def measure(
    dsn_for: Callable[[str], str], homes: int, days: int, seed: int, echo: Callable[[str], None]
) -> StorageFigures:
    """Load the same readings into a partitions database and (where the server can run it) a
    TimescaleDB one, compress the latter, and measure both. `dsn_for` creates a database."""
    import psycopg

    from core.db import migrate, storage_mode, timescale_unusable

    rows = sorted(town_readings(homes, days, seed))
    echo(f"storage: {len(rows)} readings of {homes} homes over {days} days generated")

    plain = dsn_for("anbu_plain")
    migrate(plain, storage="partitions")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(
            "SELECT anbu.ensure_reading_partitions(%s::date, %s)", (START.date(), days + 2)
        )
        readings = _load(conn, rows)
        (partitions_bytes,) = conn.execute(
            """SELECT sum(pg_total_relation_size(relid))::bigint
                 FROM pg_partition_tree('anbu.readings') WHERE isleaf"""
        ).fetchone() or (0,)

    ts_dsn = dsn_for("anbu_ts")
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        why = timescale_unusable(conn) or ""
    if why:
        return StorageFigures(readings, int(partitions_bytes), None, None, None, why)
    migrate(ts_dsn, storage="timescaledb")
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        assert storage_mode(conn) == "timescaledb"
        if _load(conn, rows) != readings:
            raise RuntimeError("the two databases hold different readings")
        (before,) = conn.execute("SELECT hypertable_size('anbu.readings')").fetchone() or (0,)
        began = time.perf_counter()
        conn.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('anbu.readings',"
            " older_than => interval '7 days') c"
        )
        compress_s = time.perf_counter() - began
        (after,) = conn.execute("SELECT hypertable_size('anbu.readings')").fetchone() or (0,)
        (left,) = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'readings' AND NOT is_compressed"
        ).fetchone() or (0,)
        if left:
            raise RuntimeError(f"{left} chunks were left uncompressed")
        columns = dict.fromkeys(("ts", "received_at", "value"), 0)
        for (chunk,) in conn.execute(
            """SELECT format('%I.%I', z.schema_name, z.table_name)
                 FROM _timescaledb_catalog.chunk c
                 JOIN _timescaledb_catalog.chunk z ON z.id = c.compressed_chunk_id"""
        ).fetchall():
            sums = conn.execute(
                f"SELECT sum(pg_column_size(ts)), sum(pg_column_size(received_at)),"
                f" sum(pg_column_size(value)) FROM {chunk}"  # nosec B608  # chunk names from TimescaleDB's catalog, quoted by format('%I.%I')
            ).fetchone() or (0, 0, 0)
            for name, size in zip(columns, sums, strict=True):
                columns[name] += int(size or 0)
    return StorageFigures(
        readings, int(partitions_bytes), int(before), int(after), compress_s, "", columns
    )


def run(
    homes: int, days: int, seed: int = 7, echo: Callable[[str], None] = print
) -> StorageFigures:
    """The bench on a throwaway PostgreSQL (TimescaleDB preloaded where installed); printed."""
    from simulators.servers import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as work:
        pg = EmbeddedPostgres(Path(work))
        pg.init()
        pg.start()
        try:
            figures = measure(pg.create_database, homes, days, seed, echo)
        finally:
            pg.stop()
    mb = 1024 * 1024
    echo(f"  plain PostgreSQL, daily partitions: {figures.partitions_bytes / mb:.1f} MiB")
    if figures.timescale_bytes is not None and figures.compressed_bytes is not None:
        echo(f"  TimescaleDB hypertable, uncompressed: {figures.timescale_bytes / mb:.1f} MiB")
        echo(
            f"  TimescaleDB compressed: {figures.compressed_bytes / mb:.1f} MiB"
            f" ({figures.timescale_bytes / figures.compressed_bytes:.1f}x smaller,"
            f" compressed in {figures.compress_seconds:.1f} s)"
        )
        parts = " ".join(f"{k}={v / figures.readings:.2f}" for k, v in figures.columns.items())
        echo(
            f"  compressed, bytes per reading by column: {parts} (the rest: rows, indexes, chunks)"
        )
    echo(figures.line())
    return figures
