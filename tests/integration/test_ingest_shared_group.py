"""Two ingest worker processes in one shared group ($share/<group>/gw/#), real broker and DB.

Each worker is `python -m ingest.runner` (its own process, and its own storing process) with
its own client id and the same ANBU_MQTT_SHARED_GROUP. The broker shares the stream between
them: every reading is stored exactly once, and both did some of the work. One of them killed
with SIGKILL mid-stream, while a batch it committed is still unacknowledged, loses nothing.

Mosquitto 2.0 goes on giving a dead member its share of the stream: its persistent session
holds it (with the batch it never acknowledged) until the worker comes back with its replica
id, so the other worker does not take over the dead one's readings; they wait.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

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
from simulators.servers import EmbeddedMosquitto
from tests.conftest import INGEST_PASSWORD
from tests.integration.test_ingest_store_process import (
    ReadingsLocked,
    collect_errors,
    eventually,
    gone,
    waiting_on_the_lock,
)

PASSWORD = "gw-share-password"


@pytest.fixture
def gateways(broker: EmbeddedMosquitto, db_url: str, unique: str) -> list[str]:
    names = [f"s{unique}{i}" for i in range(10)]
    broker.users.update(dict.fromkeys(names[:-1], PASSWORD))
    broker.add_user(names[-1], PASSWORD)  # writes them all, one reload
    register(db_url, names)
    return names


def starting(
    db_url: str, port: int, unique: str, group: str, **extra: str
) -> Iterator[Callable[..., Worker]]:
    """Start ingest worker `name` (client id `name` + `unique`) in `group`, with `extra`
    environment variables; every one is stopped at the end."""
    started: list[Worker] = []

    def start(name: str, *args: str) -> Worker:
        env = worker_env(db_url, port, "ingest", INGEST_PASSWORD, f"{name}{unique}", group)
        worker = spawn_worker({**env, **extra}, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def workers(db_url: str, broker: EmbeddedMosquitto, unique: str) -> Iterator[Callable[..., Worker]]:
    """Start a worker in this test's group by name."""
    yield from starting(db_url, broker.port, unique, f"share{unique}")


def storing_child(worker: Worker) -> int:
    """The pid of the worker's storing process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == worker.proc.pid and b"ingest.store_process" in cmdline:
                return int(entry.name)
    raise AssertionError(f"worker {worker.proc.pid} has no storing process")


def stats_of(worker: Worker) -> dict[str, int]:
    """Stop the worker (SIGTERM) and return the counters it printed on the way out."""
    worker.stop()
    assert worker.proc.returncode == 0, f"the worker exited with {worker.proc.returncode}"
    stats: dict[str, int] = worker.wait_for("stats", 10)["stats"]
    return stats


def test_two_worker_processes_share_the_stream_and_store_each_reading_once(
    db_url: str, broker: EmbeddedMosquitto, gateways: list[str], workers: Callable[..., Worker]
) -> None:
    n = 4_000
    batch, total = messages(gateways, 0, n, 1)
    a, b = workers("a"), workers("b")
    publish(broker.port, gateways, batch, PASSWORD)
    eventually(lambda: count_rows(db_url)[0] >= n, timeout=60, what="every reading stored")
    first, second = stats_of(a), stats_of(b)
    print(f"worker a: {first}\nworker b: {second}")
    assert count_rows(db_url) == (n, n, total)
    assert first["stored"] > 0 and second["stored"] > 0, "one worker did all the work"
    assert first["stored"] + second["stored"] == n
    assert first["messages"] + second["messages"] == n  # each message went to one of them
    assert first["duplicates"] == second["duplicates"] == 0


def test_one_of_two_workers_killed_mid_stream_loses_nothing(
    db_url: str, broker: EmbeddedMosquitto, gateways: list[str], workers: Callable[..., Worker]
) -> None:
    n = 10_000
    batch, total = messages(gateways, 0, n, 1)
    # The second half is published while the readings are locked, after a quarter is stored:
    # both workers then hold a batch inside their INSERT, and a's share of the rest is still
    # on its way when it is killed, however fast the two of them stored the first half.
    first_half, second_half = batch[: n // 2], batch[n // 2 :]
    a, b = workers("a"), workers("b")
    errors: list[BaseException] = []
    publisher = threading.Thread(
        target=collect_errors(publish, errors),
        args=(broker.port, gateways, second_half, PASSWORD),
    )
    publish(broker.port, gateways, first_half, PASSWORD)
    try:
        eventually(lambda: count_rows(db_url)[0] >= n // 4, what="a quarter stored")
        child = storing_child(a)
        lock = ReadingsLocked(db_url)
        try:
            publisher.start()
            # both storing processes have a batch inside its INSERT: both are doing the work
            eventually(lambda: waiting_on_the_lock(db_url) >= 2, what="both workers storing")
            os.kill(a.proc.pid, signal.SIGKILL)
            a.proc.wait()
        finally:
            lock.release()  # a's orphaned storing process commits its batch; nobody acks it
        eventually(lambda: gone(child), what="a's storing process gone")
        first = stored_rows(db_url)
        print(f"killed a with {len(first)} of {n} stored")
        assert len(first) < n, "the stream was over before the kill"
    finally:
        if publisher.ident is not None:  # started
            publisher.join(120)
    assert not publisher.is_alive() and errors == [], f"the publisher failed: {errors}"
    print(f"published all; {count_rows(db_url)[0]} stored without a")
    again = workers("a", "--expect", "1")  # a comes back (its replica id, its session)
    # The session resends what a never acknowledged, oldest first: the batch a's storing
    # process committed. The storing process answers in order, so once one batch is answered
    # (the line --expect prints) the copies of that batch have been counted.
    again.wait_for("seconds", 30)
    eventually(lambda: count_rows(db_url)[0] >= n, timeout=60, what="every reading stored")
    s_again, s_b = stats_of(again), stats_of(b)
    print(f"a again: {s_again}\nb: {s_b}")
    assert count_rows(db_url) == (n, n, total)
    assert replaced_since(db_url, first) == 0, "a redelivered copy replaced a stored row"
    assert s_b["stored"] > 0
    assert s_again["duplicates"] > 0, "a's committed batch never came again"
    assert s_b["duplicates"] == 0
