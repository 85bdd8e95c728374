"""Backups that restore: back up a running town, restore it into a new server, find every row.

The running system is `anbu demo` on the test's database (its own Mosquitto, phone network,
ingest, worker, web): readings keep arriving, alerts climb, calls are placed. While it runs,
`anbu backup` dumps one snapshot exported by the test, and the test fingerprints every table of
that same snapshot; the backup is restored with `anbu restore` into a throwaway PostgreSQL
started for this test, and every table's fingerprint (row count and a hash over all rows) must
match, including readings, alerts, alert_events, calls, call_events and the access log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from core.db import storage_mode
from simulators.servers import EmbeddedPostgres

ANBU = str(Path(sys.executable).with_name("anbu"))
MUST_HOLD_ROWS = ("readings", "alerts", "alert_events", "calls", "notifications")


def tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'anbu' AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
           ORDER BY 1"""
    ).fetchall()
    return [r[0] for r in rows]


def fingerprints(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str | None]]:
    """Per table of schema anbu: rows, and an order-free hash over every row's text."""
    out = {}
    for name in tables(conn):
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text)))"
                " FROM anbu.{} t"
            ).format(sql.Identifier(name))
        ).fetchone()
        assert row is not None
        out[name] = (int(row[0]), row[1])
    return out


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def anbu(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env["ANBU_DATABASE_URL"] = dsn
    return subprocess.run(
        [ANBU, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A second PostgreSQL, as a district restoring onto a new machine would have."""
    pg = EmbeddedPostgres(tmp_path / "restored-pg")
    pg.init()
    pg.start()
    yield pg
    pg.stop("immediate")


@pytest.fixture
def running_town(db_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`anbu demo` on the test's database, until its first calls and notifications are in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env["ANBU_DATABASE_URL"] = db_url
    env["TMPDIR"] = str(tmp_path)
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen(
        [ANBU, "demo", "--port", "0", "--homes", "3", "--speed", "2000", "--broker", "mosquitto"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (
            count(db_url, "SELECT count(*) FROM anbu.calls WHERE outcome IS NOT NULL")
            and count(db_url, "SELECT count(*) FROM anbu.notifications")
        ):
            if demo.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "demo.log").read_text()[-4000:])
            time.sleep(0.5)
        yield demo
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()


@pytest.mark.storage_modes
def test_backup_of_a_running_town_restores_every_row(
    db_url: str,
    storage: str,
    running_town: subprocess.Popen[str],
    new_server: EmbeddedPostgres,
    tmp_path: Path,
) -> None:
    backup = tmp_path / "district.dump"
    with psycopg.connect(db_url, autocommit=True) as conn:
        has_access_log = "access_log" in tables(conn)
        if has_access_log:  # a care manager's read of a resident's card, as the web records it
            conn.execute(
                """INSERT INTO anbu.access_log (care_manager_id, resident_id, dong_code, view)
                   SELECT (SELECT min(id) FROM anbu.care_manager), id, dong_code, 'card'
                   FROM anbu.resident"""
            )
    with psycopg.connect(db_url) as snap:
        snap.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = snap.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        made = anbu("backup", "--out", str(backup), "--snapshot", str(row[0]), dsn=db_url)
        assert made.returncode == 0, made.stderr[-3000:]
        before = fingerprints(snap)
        mode = storage_mode(snap)
    assert mode == storage
    assert running_town.poll() is None, "the town stopped: the backup was not of a running system"
    for name in (*MUST_HOLD_ROWS, *(("access_log",) if has_access_log else ())):
        assert before[name][0] > 0, f"nothing in anbu.{name}: the test proves nothing about it"
    assert "call_events" not in before or before["call_events"][0] > 0

    target = new_server.create_database("restored")
    done = anbu("restore", str(backup), dsn=target)
    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(target) as conn:
        after = fingerprints(conn)
        assert storage_mode(conn) == storage
    differ = {k: (before[k], after.get(k)) for k in before if after.get(k) != before[k]}
    assert not differ, f"restored tables differ: {differ}"
    assert set(after) == set(before)
    # the restored database is a working anbu: migrations up to date, readings writable
    migrated = anbu("migrate", dsn=target)
    assert migrated.returncode == 0 and "nothing (up to date)" in migrated.stdout, migrated.stdout

    # a second restore over it is refused (nothing changed), and done with --force
    refused = anbu("restore", str(backup), dsn=target)
    assert refused.returncode == 1 and "not empty" in refused.stderr, refused.stderr
    with psycopg.connect(target) as conn:
        assert fingerprints(conn) == after
    forced = anbu("restore", str(backup), "--force", dsn=target)
    assert forced.returncode == 0, forced.stderr[-3000:]
    with psycopg.connect(target) as conn:
        assert fingerprints(conn) == before
