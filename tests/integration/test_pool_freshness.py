"""The pool checks a connection before handing it out only when it sat idle a while
(core.db.CHECK_IDLE_S): a connection a server restart or an idle timeout cut is replaced, and
one that came back moments ago costs no extra round trip (a round of calls checks out hundreds
a second)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import core.db
from core.db import Database
from tests.conftest import PgServer


def _pool(db_url: str, size: int) -> Iterator[Database]:
    database = Database(db_url, min_size=size, max_size=size)
    database.open()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    yield from _pool(db_url, 1)


def _backend(db: Database) -> int:
    with db.connection() as conn:
        return _pid(conn)


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
    monkeypatch.setattr(core.db, "_heard_from", lambda conn: False)  # and heard nothing
    second = _backend(db)  # no error: the check found it cut and the pool made a new one
    assert second != first


@pytest.fixture
def three(db_url: str) -> Iterator[Database]:
    yield from _pool(db_url, 3)


def _all_back_at_once(database: Database) -> list[int]:
    """Three connections used and given back together: the pids of their backends."""
    with database.connection() as a, database.connection() as b, database.connection() as c:
        return [_pid(conn) for conn in (a, b, c)]


def test_connections_the_server_ended_moments_after_their_return_are_never_handed_out(
    three: Database, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart or a termination sends each connection a FATAL: one poll of its socket finds
    it, so no request fails even for connections back within CHECK_IDLE_S."""
    monkeypatch.setattr(core.db, "CHECK_IDLE_S", 3600.0)
    pids = _all_back_at_once(three)
    for pid in pids:
        _cut(pg_server, pid)
    after = [_backend(three) for _ in range(6)]  # no error: each found and replaced
    assert not set(after) & set(pids)


def test_a_server_gone_silently_costs_one_request_not_one_per_connection(
    three: Database, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the trade: connections that heard nothing (a failover where the old
    server just vanished) are handed out unchecked within CHECK_IDLE_S, so one request finds
    out (its caller's retry or 503 handles it, as for a cut mid-transaction); from then on
    every connection returned before that failure is checked, and no second request fails."""
    monkeypatch.setattr(core.db, "CHECK_IDLE_S", 3600.0)
    monkeypatch.setattr(core.db, "_heard_from", lambda conn: False)  # the FATAL never came
    pids = _all_back_at_once(three)
    for pid in pids:
        _cut(pg_server, pid)
    with pytest.raises(psycopg.OperationalError) as failed:
        _backend(three)
    assert core.db.retryable(failed.value)
    after = [_backend(three) for _ in range(6)]  # no error: checked and replaced
    assert not set(after) & set(pids)


def _pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])
