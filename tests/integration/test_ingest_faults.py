"""Faults with real processes: kill -9 the ingest worker, restart Mosquitto, restart PostgreSQL.

The worker is `python -m ingest.runner` (a separate process, so SIGKILL is real). Every
published reading has its own (sensor, ts) and a known value, so "0 lost" is checked as:
rows == published, distinct (sensor, ts) == rows, sum of values == published sum. The unique
key alone makes "stored twice" impossible, so what is checked for redelivery is what it could
break: each fault is struck while a batch is committed and not acknowledged (the worker is
killed, or the broker is down, while storing waits on a lock on anbu.readings), so its copies
do come again; the worker counts them refused (`duplicates` > 0), and every row stored before
the fault is still the row first stored (same value, same time of receipt). A reading
published after everything else is the last one the session delivers: once it is stored,
any redelivery has been handled.
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
    replaced_since,
    spawn_worker,
    stored_rows,
    worker_env,
)
from core.db import migrate
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres
from tests.conftest import INGEST_PASSWORD
from tests.integration.test_ingest_store_process import (
    ReadingsLocked,
    clients_connected,
    collect_errors,
    eventually,
    waiting_on_the_lock,
)

N = 10_000
GATEWAY_PASSWORD = "gw-fault-password"
LAST_DAY = 9  # the day of the reading published last (the stream's are on day 0)


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


def publish_last(port: int, gateways: list[str], password: str) -> int:
    """Publish one reading after all the others; the sum of its value."""
    last, value = messages(gateways, LAST_DAY, 1, 1)
    publish(port, gateways, last, password)
    return value


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


def test_kill_nine_mid_stream_loses_nothing_and_refuses_the_redelivered_copies(
    pg_server: object, broker: EmbeddedMosquitto, db_url: str, unique: str
) -> None:
    """SIGKILL while a batch waits on a lock inside its INSERT: the storing process, orphaned,
    commits it when the lock goes, and nobody acknowledges it; the broker sends it again to
    the restarted worker, which refuses every copy and keeps the rows first stored."""
    gateways = [f"k{unique}{i}" for i in range(10)]
    broker.users.update(dict.fromkeys(gateways[:-1], GATEWAY_PASSWORD))
    broker.add_user(gateways[-1], GATEWAY_PASSWORD)  # writes them all, one reload
    register(db_url, gateways)
    env = worker_env(db_url, broker.port, "ingest", INGEST_PASSWORD, f"kill{unique}")
    batch, total = messages(gateways, 0, N, 1)
    worker = spawn_worker(env)
    errors: list[BaseException] = []
    publisher = threading.Thread(
        target=collect_errors(publish, errors),
        args=(broker.port, gateways, batch, GATEWAY_PASSWORD),
    )
    publisher.start()
    try:
        before_kill = wait_rows(db_url, N // 3, 20, worker)
        assert 0 < before_kill < N, "the stream was over before the kill; nothing was tested"
        lock = ReadingsLocked(db_url)
        try:
            eventually(lambda: waiting_on_the_lock(db_url), what="a batch waiting on the lock")
            worker.proc.kill()  # SIGKILL: no goodbye
            worker.proc.wait()
        finally:
            lock.release()  # the orphaned storing process commits what it held, then leaves
        eventually(lambda: clients_connected(db_url) == 0, what="the storing process gone")
        first = stored_rows(db_url)
        at_kill = len(first)
        assert before_kill < at_kill < N, "no batch committed after the kill"
    finally:
        publisher.join(60)
    assert not publisher.is_alive() and errors == [], f"the publisher failed: {errors}"
    worker = spawn_worker(env)
    try:
        wait_rows(db_url, N, 20, worker)
        total += publish_last(broker.port, gateways, GATEWAY_PASSWORD)
        wait_rows(db_url, N + 1, 20, worker)
    finally:
        worker.stop()
    stats = worker.wait_for("stats", 10)["stats"]
    print(f"kill -9 at {at_kill} of {N} stored; restarted worker: {stats}")
    assert_all_once(db_url, N + 1, total)
    assert stats["duplicates"] > 0, "the batch committed after the kill never came again"
    assert stats["stored"] == N + 1 - at_kill
    assert replaced_since(db_url, first) == 0, "a redelivered copy replaced a stored row"


@pytest.mark.parametrize("shared", [True, False], ids=["shared-subscription", "plain"])
def test_mosquitto_restart_mid_stream_loses_nothing(
    own_pg: EmbeddedPostgres, tmp_path: Path, unique: str, shared: bool
) -> None:
    """A first part of the stream is stored before Mosquitto restarts, a second is in the
    worker's hands (received, its first batch waiting on a lock) when it goes down, a third is
    published once it is back.

    The lock goes while the broker is down: the batch commits and cannot be acknowledged, so
    the broker, back with the session, sends it again. Mosquitto 2.0 keeps a persistent
    session's queue and plain subscriptions across a restart, but not shared ones: with $share
    the third part is published once ingest has subscribed again (before that, the broker has
    nobody to route gw/# to); with a plain subscription it is published at once, before
    ingest is even back.
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
    first_part, second_part = N * 3 // 10, N * 6 // 10
    worker: Worker | None = None
    try:
        spawn_worker(env).stop()  # the persistent session exists; the first part queues for it
        publish(mq.port, gateways, batch[:first_part], "pw")
        worker = spawn_worker(env)
        assert wait_rows(dsn, first_part, 20, worker) == first_part
        lock = ReadingsLocked(dsn)
        try:
            publish(mq.port, gateways, batch[first_part:second_part], "pw")
            eventually(lambda: waiting_on_the_lock(dsn), what="a batch waiting on the lock")
            mq.stop()  # SIGTERM: Mosquitto writes its persistence file on the way out
        finally:
            lock.release()
        # the broker is down: what commits now is not acknowledged, and nothing comes again yet
        eventually(lambda: count_rows(dsn)[0] > first_part, what="a batch committed")
        first = stored_rows(dsn)
        mq.start()  # same port, same persistence directory
        if shared:
            worker.wait_for("subscribed", 20)
        publish(mq.port, gateways, batch[second_part:], "pw")
        total += publish_last(mq.port, gateways, "pw")
        wait_rows(dsn, N + 1, 30, worker)
        worker.stop()
        stats = worker.wait_for("stats", 10)["stats"]
        print(f"Mosquitto restarted with {len(first)} of {N} stored; worker: {stats}")
        assert first_part < len(first) < N, "the restart was not mid-stream"
        assert stats["connects"] >= 2
        assert_all_once(dsn, N + 1, total)
        assert stats["duplicates"] > 0, (
            "the batch committed while the broker was down never came again"
        )
        assert stats["stored"] == N + 1
        assert replaced_since(dsn, first) == 0, "a redelivered copy replaced a stored row"
    finally:
        if worker is not None:
            worker.stop()
        mq.stop()


def test_postgres_restart_mid_stream_ingest_recovers_by_itself(
    own_pg: EmbeddedPostgres, tmp_path: Path, unique: str
) -> None:
    """PostgreSQL stops a part of the way into the stream; the rest is published while it is
    down (the broker holds it: nothing is acknowledged), then it starts again."""
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
    half = N // 2
    worker = spawn_worker(env)
    errors: list[BaseException] = []
    publisher = threading.Thread(
        target=collect_errors(publish, errors), args=(mq.port, gateways, batch[:half], "pw")
    )
    try:
        publisher.start()
        at_stop = wait_rows(dsn, N // 6, 20, worker)
        own_pg.stop("fast")  # every connection breaks; batches fail and are retried
        publisher.join(60)
        assert not publisher.is_alive() and errors == [], f"the publisher failed: {errors}"
        publish(mq.port, gateways, batch[half:], "pw")  # all of it while PostgreSQL is down
        own_pg.start()
        total += publish_last(mq.port, gateways, "pw")
        wait_rows(dsn, N + 1, 25, worker)
        worker.stop()
        stats = worker.wait_for("stats", 10)["stats"]
        print(f"PostgreSQL stopped at {at_stop} of {N} stored; worker: {stats}")
        assert 0 < at_stop < N, "PostgreSQL did not stop mid-stream; nothing was tested"
        assert stats["db_errors"] > 0, "no batch met the database down"
        assert_all_once(dsn, N + 1, total)
        assert stats["stored"] == N + 1
    finally:
        worker.stop()
        mq.stop()
