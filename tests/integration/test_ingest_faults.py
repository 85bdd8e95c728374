"""Faults with real processes: kill -9 the ingest worker, restart Mosquitto, restart PostgreSQL.

The worker is `python -m ingest.runner` (a separate process, so SIGKILL is real). Every
published reading has its own (sensor, ts) and a known value, so "0 lost, 0 duplicated" is
checked as: rows == published, distinct (sensor, ts) == rows, sum of values == published sum.
Restart tests run their own Mosquitto / PostgreSQL (the session ones must not go down).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from anbu.bench.ingest import (
    Worker,
    count_rows,
    messages,
    publish,
    register,
    spawn_worker,
    worker_env,
)
from core.db import migrate
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres
from tests.conftest import INGEST_PASSWORD

N = 10_000
GATEWAY_PASSWORD = "gw-fault-password"


def wait_rows(dsn: str, target: int, timeout: float, worker: Worker | None = None) -> int:
    """Poll until `target` rows are stored (or the timeout); the row count reached."""
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline:
        try:
            rows = count_rows(dsn)[0]
        except psycopg.OperationalError:  # the database is restarting
            rows = -1
        if rows >= target:
            return rows
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.proc.returncode}) at {rows} rows")
        time.sleep(0.05)
    return rows


def dead_letters(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.dead_letters").fetchone()
    assert row is not None
    return int(row[0])


def assert_all_once(dsn: str, expected: int, expected_sum: int) -> None:
    rows, distinct, total = count_rows(dsn)
    assert (rows, distinct) == (expected, expected), (
        f"lost {expected - distinct}, dup {rows - distinct}"
    )
    assert total == expected_sum
    assert dead_letters(dsn) == 0


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.init()
    pg.start()
    yield pg
    pg.stop("immediate")


def test_kill_nine_mid_stream_loses_and_doubles_nothing(
    pg_server: object, broker: EmbeddedMosquitto, db_url: str, unique: str
) -> None:
    gateways = [f"k{unique}{i}" for i in range(10)]
    broker.users.update(dict.fromkeys(gateways[:-1], GATEWAY_PASSWORD))
    broker.add_user(gateways[-1], GATEWAY_PASSWORD)  # writes them all, one reload
    register(db_url, gateways)
    env = worker_env(db_url, broker.port, "ingest", INGEST_PASSWORD, f"kill{unique}")
    batch, total = messages(gateways, 0, N, 1)
    worker = spawn_worker(env)
    publisher = threading.Thread(
        target=publish, args=(broker.port, gateways, batch, GATEWAY_PASSWORD)
    )
    publisher.start()
    try:
        at_kill = wait_rows(db_url, N // 3, 20, worker)
        worker.proc.kill()  # SIGKILL: no goodbye, a batch may be stored but not acknowledged
        worker.proc.wait()
        at_kill = count_rows(db_url)[0]
        assert at_kill < N, "the stream was over before the kill; nothing was tested"
    finally:
        publisher.join(60)
    worker = spawn_worker(env)
    try:
        wait_rows(db_url, N, 20, worker)
        time.sleep(0.5)  # a late redelivery would land now
    finally:
        worker.stop()
    stats = worker.wait_for("stats", 10)["stats"]
    print(f"kill -9 at {at_kill} of {N} stored; restarted worker: {stats}")
    assert_all_once(db_url, N, total)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-subscription", "plain"])
def test_mosquitto_restart_mid_stream_loses_nothing(
    own_pg: EmbeddedPostgres, tmp_path: Path, unique: str, shared: bool
) -> None:
    """Half the stream is queued for the session when Mosquitto restarts, half comes after.

    Mosquitto 2.0 keeps a persistent session's queue and plain subscriptions across a restart,
    but not shared ones: with $share the second half is published once ingest has subscribed
    again (before that, the broker has nobody to route gw/# to); with a plain subscription it
    is published at once, before ingest is even back.
    """
    dsn = own_pg.create_database("faults")
    migrate(dsn)
    gateways = [f"m{i}" for i in range(10)]
    register(dsn, gateways)
    mq = EmbeddedMosquitto(
        tmp_path / "mq", users={"ingest": INGEST_PASSWORD, **dict.fromkeys(gateways, "pw")}
    )
    mq.start()
    group = None if shared else ""
    env = worker_env(dsn, mq.port, "ingest", INGEST_PASSWORD, f"mq{unique}", group)
    batch, total = messages(gateways, 0, N, 1)
    half = N // 2
    worker: Worker | None = None
    try:
        spawn_worker(env).stop()  # the persistent session exists; the first half queues for it
        publish(mq.port, gateways, batch[:half], "pw")
        worker = spawn_worker(env)
        at_restart = wait_rows(dsn, half // 3, 20, worker)
        mq.stop()  # SIGTERM: Mosquitto writes its persistence file on the way out
        mq.start()  # same port, same persistence directory
        if shared:
            worker.wait_for("subscribed", 20)
        publish(mq.port, gateways, batch[half:], "pw")
        wait_rows(dsn, N, 20, worker)
        time.sleep(0.5)
        worker.stop()
        stats = worker.wait_for("stats", 10)["stats"]
        print(f"Mosquitto restarted at {at_restart} of {N} stored; worker: {stats}")
        assert stats["connects"] >= 2
        assert_all_once(dsn, N, total)
    finally:
        if worker is not None:
            worker.stop()
        mq.stop()


def test_postgres_restart_mid_stream_ingest_recovers_by_itself(
    own_pg: EmbeddedPostgres, tmp_path: Path, unique: str
) -> None:
    dsn = own_pg.create_database("faults")
    migrate(dsn)
    gateways = [f"p{i}" for i in range(10)]
    register(dsn, gateways)
    mq = EmbeddedMosquitto(
        tmp_path / "mq", users={"ingest": INGEST_PASSWORD, **dict.fromkeys(gateways, "pw")}
    )
    mq.start()
    env = worker_env(dsn, mq.port, "ingest", INGEST_PASSWORD, f"pg{unique}")
    batch, total = messages(gateways, 0, N, 1)
    worker = spawn_worker(env)
    publisher = threading.Thread(target=publish, args=(mq.port, gateways, batch, "pw"))
    try:
        publisher.start()
        at_stop = wait_rows(dsn, N // 3, 20, worker)
        own_pg.stop("fast")  # every pooled connection breaks; batches fail and are retried
        time.sleep(2.0)  # ingest keeps failing (and not acknowledging) meanwhile
        own_pg.start()
        publisher.join(60)
        assert not publisher.is_alive()
        wait_rows(dsn, N, 25, worker)
        time.sleep(0.5)
        worker.stop()
        stats = worker.wait_for("stats", 10)["stats"]
        print(f"PostgreSQL stopped at {at_stop} of {N} stored for 2 s; worker: {stats}")
        # A batch either failed and was retried (db_errors) or waited in the pool for a
        # connection until PostgreSQL was back; either way the stream was mid-way:
        assert at_stop < N, "the stream was over before PostgreSQL stopped; nothing was tested"
        assert_all_once(dsn, N, total)
    finally:
        worker.stop()
        mq.stop()
