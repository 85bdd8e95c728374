"""`anbu bench ingest-scale`: the batched stream stored by one ingest worker, then by two.

The same embedded Mosquitto and PostgreSQL, the same gateways and the same number of batched
messages (100 readings each) for both runs. As in `anbu bench ingest`, each run drains a queue
the broker holds for the workers' persistent sessions (published while they were away), so the
figure is the workers', not the publisher's. With two, the workers have no shared group: each
subscribes its own share of the gateways (ingest.shares), as `ANBU_INGEST_REPLICAS=2` deploys
them (the bench waits the shares' handover out first, about 70 s); each is told how many
messages its share holds and prints the seconds from its first stored batch to its last. The
two start together, so the pair's time is the longer of the two.
Everything, PostgreSQL included, shares this machine's cores: the figure says what a second
worker adds here, not on a machine of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from anbu.bench.ingest import (
    PASSWORD,
    Batch,
    Env,
    Worker,
    count_rows,
    drain,
    messages,
    publish,
    start_env,
    worker_env,
)
from ingest.shares import HANDOVER_S, POLL_S, share

PER = 100


def _start(env: Env, client_id: str, *args: str) -> Worker:
    """An ingest worker, one of two replicas each with its own share; not waited for."""
    worker_vars = worker_env(env.dsn, env.mq.port, "ingest", PASSWORD, client_id, "")
    cmd = [sys.executable, "-m", "ingest.runner", *args]
    return Worker(
        subprocess.Popen(
            cmd, env={**worker_vars, "ANBU_INGEST_REPLICAS": "2"}, stdout=subprocess.PIPE, text=True
        )
    )


def _members(env: Env, names: list[str]) -> None:
    """Both replicas seen and ready, as after a first run: each takes its share at once."""
    with psycopg.connect(env.dsn) as conn:
        for name in names:
            conn.execute(
                """INSERT INTO anbu.ingest_members (client_id, seen_at, ready_at)
                   VALUES (%s, now(), now())
                   ON CONFLICT (client_id) DO UPDATE SET seen_at = now(), ready_at = now()""",
                (name,),
            )


def _stop_all(workers: list[Worker]) -> list[dict[str, int]]:
    """Stop them together: one that saw the other leave first would take its share over."""
    for w in workers:
        w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        w.stop()
    return [w.wait_for("stats", 30)["stats"] for w in workers]


def drain_two(env: Env, names: list[str], batch: Batch) -> list[dict[str, Any]]:
    """Two replicas: sessions made (each subscribed its share), the batch published while they
    are away, then both started at once and timed draining their own queues."""
    _members(env, names)
    first = [_start(env, name) for name in names]
    try:
        for w in first:
            w.wait_for("ready", 60)
        # Until both are ready each took every gateway; one lets a gateway go HANDOVER_S
        # after the other holds it (ingest.shares), and only then is each session its share.
        time.sleep(HANDOVER_S + 2 * POLL_S)
    finally:
        _stop_all(first)
    publish(env.mq.port, env.gateways, batch)
    gateways = [topic.split("/")[1] for topic, _ in batch]
    expect = [sum(1 for g in gateways if g in share(env.gateways, names, name)) for name in names]
    _members(env, names)
    workers = [_start(env, name, "--expect", str(n)) for name, n in zip(names, expect, strict=True)]
    try:
        results = [w.wait_for("seconds", 600) for w in workers]
    finally:
        stats = _stop_all(workers)
    for result, counted in zip(results, stats, strict=True):
        result["refused"] = int(counted["duplicates"])
    return results


def run_scale(batched: int = 8_000, homes: int = 100, durable: bool = True,
              echo: Callable[[str], Any] = print) -> str:  # fmt: skip
    """Run both and return the result line; `echo` prints the figures as they come."""
    names = ["scale-a", "scale-b"]
    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as tmp:
        env = start_env(Path(tmp), homes, durable)
        try:
            one_batch, sum_one = messages(env.gateways, 1, batched, PER)
            one = drain(env, "scale-one", one_batch, bare=False)
            del one_batch
            one_rate = batched * PER / one["seconds"]
            echo(f"one worker:  {one_rate:>10,.0f} readings/s  "
                 f"(receiving {one['cpu'] / one['seconds']:.0%}, storing "
                 f"{one['store_cpu'] / one['seconds']:.0%}, postgres "
                 f"{one['postgres_cpu'] / one['seconds']:.0%} of a core)")  # fmt: skip
            two_batch, sum_two = messages(env.gateways, 2, batched, PER)
            two = drain_two(env, names, two_batch)
            del two_batch
            seconds = max(r["seconds"] for r in two)
            two_rate = batched * PER / seconds
            for name, r in zip(names, two, strict=True):
                echo(f"  {name}: {r['messages']:,} messages in {r['seconds']:.2f} s, "
                     f"{r['refused']:,} copies refused")  # fmt: skip
            echo(f"two workers: {two_rate:>10,.0f} readings/s  (the longer of the two drains)")
            rows, distinct, value_sum = count_rows(env.dsn)
        finally:
            env.mq.stop()
            env.pg.stop()
    expected = 2 * batched * PER
    lost = expected - distinct
    if abs(value_sum - (sum_one + sum_two)) >= 0.5 or rows != distinct:
        lost = -1  # the right count of the wrong rows, or a row stored twice: never hide it
    duplicated = one["refused"] + sum(r["refused"] for r in two)
    cores = len(os.sched_getaffinity(0))
    echo(f"{homes} gateways; {batched:,} messages of {PER} readings each run; "
         f"{cores} cores shared by broker, database and workers")  # fmt: skip
    return (f"ingest_scale: one_worker_readings_per_s={one_rate:.0f} "
            f"two_workers_readings_per_s={two_rate:.0f} ratio={two_rate / one_rate:.2f} "
            f"lost={lost} duplicated={duplicated}")  # fmt: skip
