"""The pool checks a connection before handing it out only when it sat idle a while
(core.db.CHECK_IDLE_S): a connection a server restart or an idle timeout cut is replaced, and
one that came back moments ago costs no extra round trip (a round of calls checks out hundreds
a second)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import core.db
from core.db import Database
from tests.conftest import PgServer


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=1, max_size=1)
    database.open()
    try:
        yield database
    finally:
        database.close()


def _backend(db: Database) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _cut(pg_server: PgServer, pid: int) -> None:
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # the backend is gone before the test goes on
        for _ in range(100):
            row = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is None:
                return
            conn.execute("SELECT pg_sleep(0.02)")
    raise AssertionError(f"backend {pid} still there")


def test_a_connection_idle_a_while_is_checked_and_a_cut_one_replaced(
    db: Database, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(db)
    _cut(pg_server, first)
    monkeypatch.setattr(core.db, "CHECK_IDLE_S", 0.0)  # every connection counts as idle long
    second = _backend(db)  # no error: the check found it cut and the pool made a new one
    assert second != first


def test_a_connection_back_moments_ago_is_handed_out_unchecked(
    db: Database, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the trade: a connection cut within CHECK_IDLE_S of its return fails
    its next use (the caller's retry or 503 handles it, as for a cut mid-transaction), and
    the pool replaces it at once."""
    monkeypatch.setattr(core.db, "CHECK_IDLE_S", 3600.0)
    first = _backend(db)
    _cut(pg_server, first)
    with pytest.raises(psycopg.OperationalError) as failed:
        _backend(db)
    assert core.db.retryable(failed.value)
    assert _backend(db) != first
