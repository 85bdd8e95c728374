"""`anbu bench ingest`: Mosquitto + a publisher + (a) a bare paho subscriber, (b) real ingest.

Everything runs on this machine in one process tree. Each consumer is measured draining a
queue the broker holds for its persistent session (N messages published while it was away),
so the figure is the consumer's, not the publisher's. PostgreSQL runs durable (fsync on).
The real worker is one `python -m ingest.runner` (receiving, acknowledging) with its storing
process (parsing, storing); the CPU figures give both. The bare subscriber is one process
that parses each payload with the same (stdlib) JSON parser and acknowledges at once.
The batched readings are also stored by a bare binary COPY into the same table (the
database's own bound), the baseline of ingest's batched rate. Then a worker is killed with
SIGKILL mid-stream and restarted, and the rows are counted: every reading the generator made
has a distinct (sensor, ts), so the published readings are exactly the expected rows, each
once, with a known sum of values. `duplicated=` counts the redelivered copies that reached
the storing process and were refused there (the workers' own count), `replaced=` the rows
stored before the kill that a later copy changed (value or time of receipt): it must be 0.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import registry
from core.db import migrate
from core.domain import SensorKind
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres

PASSWORD = "bench-password"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SENSORS = 10
Batch = list[tuple[str, bytes]]


@dataclass
class Env:
    pg: EmbeddedPostgres
    mq: EmbeddedMosquitto
    dsn: str
    gateways: list[str]

    def env(self, client_id: str) -> dict[str, str]:
        return worker_env(self.dsn, self.mq.port, "ingest", PASSWORD, client_id)


def worker_env(dsn: str, port: int, user: str, password: str, client_id: str,
               group: str | None = None) -> dict[str, str]:  # fmt: skip
    """The environment of an ingest worker process (share group: the client id by default)."""
    return {
        **os.environ,
        "ANBU_DATABASE_URL": dsn,
        "ANBU_MQTT_HOST": "127.0.0.1",
        "ANBU_MQTT_PORT": str(port),
        "ANBU_MQTT_USERNAME": user,
        "ANBU_MQTT_PASSWORD": password,
        "ANBU_MQTT_CLIENT_ID": client_id,
        "ANBU_MQTT_SHARED_GROUP": client_id if group is None else group,
    }


@dataclass
class Worker:
    """A consumer process (`python -m ingest.runner`) and the JSON lines it printed."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put({"exited": True})

    def wait_for(self, key: str, timeout: float) -> dict[str, Any]:
        """The first line holding `key`; raises rather than hang."""
        deadline = time.monotonic() + timeout
        for doc in self.seen:
            if key in doc:
                return doc
        while True:
            try:
                doc = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise TimeoutError(f"no {key!r} from the worker in {timeout:.0f} s") from None
            if "exited" in doc:
                raise RuntimeError(f"worker exited ({self.proc.poll()}) before {key!r}")
            self.seen.append(doc)
            if key in doc:
                return doc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """CPU seconds of `pid` and of its live children (an ingest worker and its storing
    process, or the postmaster and its backends and writers)."""
    total = proc_cpu(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_cpu(pg: EmbeddedPostgres) -> float:
    """CPU seconds of the postmaster and every live child (backends, writers)."""
    return children_cpu(int((pg.datadir / "postmaster.pid").read_text().split()[0]))


def start_env(workdir: Path, homes: int, durable: bool) -> Env:
    """PostgreSQL and Mosquitto for a bench; both stopped again if it is stopped meanwhile."""
    pg = EmbeddedPostgres(workdir / "pg", durable=durable)
    pg.init()
    pg.start()
    mq: EmbeddedMosquitto | None = None
    try:
        dsn = pg.create_database("bench")
        migrate(dsn)
        gateways = [f"bgw{i:04d}" for i in range(homes)]
        users = {"ingest": PASSWORD, **{g: PASSWORD for g in gateways}}
        mq = EmbeddedMosquitto(workdir / "mq", users=users)
        mq.start()
        register(dsn, gateways)
    except BaseException:
        if mq is not None:
            mq.stop()
        pg.stop()
        raise
    return Env(pg, mq, dsn, gateways)


def register(dsn: str, gateways: list[str]) -> None:
    """One resident per gateway, each with SENSORS power plugs s0..s9."""
    with psycopg.connect(dsn) as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        for gw in gateways:
            rid = registry.add_resident(
                conn, f"bench-{gw}", "1111051500", f"bench {gw}", "+820000000000"
            )
            registry.add_gateway(conn, gw, rid)
            for s in range(SENSORS):
                registry.add_sensor(conn, gw, f"s{s}", SensorKind.POWER, "kitchen")


def messages(gateways: list[str], day: int, count: int, per: int) -> tuple[Batch, int]:
    """`count` native messages of `per` readings each, and the sum of their values.

    Message m goes to gateway m mod G; its j-th reading is sensor (j + m//G) mod S at second
    day*86400 + (m//G)*ceil(per/S) + j//S: no two readings share a (sensor, ts).
    """
    n_gw, span = len(gateways), -(-per // SENSORS)
    out: Batch = []
    total = 0
    for m in range(count):
        turn = m // n_gw
        items = []
        for j in range(per):
            second = day * 86400 + turn * span + j // SENSORS
            value = (m * per + j) % 997
            total += value
            ts = (T0 + timedelta(seconds=second)).isoformat()
            sensor = f"s{(j + turn) % SENSORS}"
            items.append({"sensor": sensor, "kind": "power", "ts": ts, "value": value})
        body = json.dumps({"readings": items}).encode()
        out.append((f"gw/{gateways[m % n_gw]}/anbu/readings", body))
    return out, total


def publish(port: int, gateways: list[str], batch: Batch, password: str = PASSWORD,
            inflight: int = 200) -> float:  # fmt: skip
    """Publish QoS 1 as the gateways would (one client each); seconds until every PUBACK."""
    clients: dict[str, mqtt.Client] = {}
    for gw in gateways:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{gw}",
                        protocol=mqtt.MQTTv5)  # fmt: skip
        c.username_pw_set(gw, password)
        c.max_inflight_messages_set(inflight)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients[gw] = c
    t0 = time.perf_counter()
    infos = [
        clients[topic.split("/")[1]].publish(topic, payload, qos=1) for topic, payload in batch
    ]
    for info in infos:
        info.wait_for_publish(300)
        if not info.is_published():
            raise RuntimeError("a publish was not acknowledged by the broker in time")
    elapsed = time.perf_counter() - t0
    for c in clients.values():
        c.disconnect()
        c.loop_stop()
    return elapsed


def spawn_worker(env: dict[str, str], *args: str) -> Worker:
    """Start `python -m ingest.runner ARGS` and wait until it has subscribed."""
    cmd = [sys.executable, "-m", "ingest.runner", *args]
    w = Worker(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    w.wait_for("ready", 60)
    return w


def spawn(env: Env, client_id: str, *args: str) -> Worker:
    return spawn_worker(env.env(client_id), *args)


def drain(env: Env, name: str, batch: Batch, bare: bool) -> dict[str, Any]:
    """Create the session, publish while the consumer is away, then time the drain."""
    flags = ["--bare"] if bare else []
    spawn(env, name, *flags).stop()
    pub_s = publish(env.mq.port, env.gateways, batch)
    mq_pid = env.mq.process.pid  # type: ignore[union-attr]
    mq0, pg0 = proc_cpu(mq_pid), postgres_cpu(env.pg)
    w = spawn(env, name, *flags, "--expect", str(len(batch)))
    result = w.wait_for("seconds", 600)
    result["mosquitto_cpu"] = proc_cpu(mq_pid) - mq0
    result["postgres_cpu"] = postgres_cpu(env.pg) - pg0
    result["publish_s"] = pub_s
    w.stop()
    if not bare:  # copies of messages already stored, refused by the unique key
        result["refused"] = int(w.wait_for("stats", 30)["stats"]["duplicates"])
    return result


def count_rows(dsn: str) -> tuple[int, int, float]:
    """Rows in anbu.readings, distinct (sensor, ts) among them, sum of their values."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (sensor_id, ts)), coalesce(sum(value), 0)"
            " FROM anbu.readings"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2])


Rows = dict[tuple[int, datetime], tuple[float, datetime]]


def stored_rows(dsn: str, since: datetime = T0) -> Rows:
    """The stored readings from `since` on: (sensor id, ts) -> (value, received_at)."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT sensor_id, ts, value, received_at FROM anbu.readings WHERE ts >= %s", (since,)
        )
        return {(int(s), ts): (float(v), at) for s, ts, v, at in found.fetchall()}


def replaced_since(dsn: str, before: Rows, since: datetime = T0) -> int:
    """How many of the rows in `before` are gone or differ now (value or time of receipt):
    a redelivered copy must be refused, never stored over the first."""
    now = stored_rows(dsn, since)
    return sum(1 for key, row in before.items() if now.get(key) != row)


@dataclass(frozen=True)
class Killed:
    """What kill_nine saw: rows stored at the kill and after the restart, redelivered copies
    the restarted worker refused, and rows stored before the kill that were replaced since."""

    at_kill: int
    after: int
    refused: int
    replaced: int


def kill_nine(env: Env, batch: Batch, day: int, timeout: float = 300) -> Killed:
    """Publish live; SIGKILL the worker a third of the way; restart it until every reading is
    in and a last one published after them (a redelivery comes before it) is stored too."""
    since = T0 + timedelta(days=day)
    before = count_rows(env.dsn)[0]
    w = spawn(env, "killed")
    publisher = threading.Thread(target=publish, args=(env.mq.port, env.gateways, batch))
    publisher.start()
    n = len(batch)
    deadline = time.monotonic() + timeout
    while count_rows(env.dsn)[0] - before < n // 3:
        if time.monotonic() > deadline or w.proc.poll() is not None:
            raise RuntimeError("the worker stopped storing before the kill")
        time.sleep(0.02)
    w.proc.kill()
    w.proc.wait()
    first = stored_rows(env.dsn, since)  # what the killed worker stored (its child may add more)
    killed_at = count_rows(env.dsn)[0] - before
    publisher.join()
    w = spawn(env, "killed")
    try:
        while count_rows(env.dsn)[0] - before < n and time.monotonic() < deadline:
            time.sleep(0.1)
        last, _ = messages(env.gateways, day + 1, 1, 1)  # after every redelivery on the session
        publish(env.mq.port, env.gateways, last)
        while count_rows(env.dsn)[0] - before < n + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.stop()
    refused = int(w.wait_for("stats", 30)["stats"]["duplicates"])
    after = count_rows(env.dsn)[0] - before - 1
    with psycopg.connect(env.dsn) as conn:  # the last reading is not one of the batch's
        conn.execute("DELETE FROM anbu.readings WHERE ts >= %s", (since + timedelta(days=1),))
    return Killed(killed_at, after, refused, replaced_since(env.dsn, first, since))


def copy_baseline(dsn: str, batch: Batch) -> float:
    """Seconds to store the readings of `batch` with one bare binary COPY into anbu.readings.

    The same rows ingest will store (decoded beforehand, not timed), straight into the same
    table and committed, with none of ingest's work: no MQTT, no parsing, no registry, no
    staging table or conflict check, no sensor_state or home_activity. They are then deleted
    (and the table vacuumed) so that ingest stores them afresh.
    """
    with psycopg.connect(dsn) as conn:
        ids = {
            (gw, vendor): int(sid)
            for sid, gw, vendor in conn.execute(
                "SELECT id, gateway_id, vendor_id FROM anbu.sensor"
            ).fetchall()
        }
        rows = [
            (datetime.fromisoformat(r["ts"]), ids[(topic.split("/")[1], r["sensor"])],
             float(r["value"]))
            for topic, payload in batch
            for r in json.loads(payload)["readings"]
        ]  # fmt: skip
        received = datetime.now(UTC)
        t0 = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY anbu.readings (ts, sensor_id, value, received_at) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["timestamptz", "int8", "float8", "timestamptz"])
            for ts, sid, value in rows:
                copy.write_row((ts, sid, value, received))
        conn.commit()
        elapsed = time.perf_counter() - t0
        first, last = min(r[0] for r in rows), max(r[0] for r in rows)
        conn.execute("DELETE FROM anbu.readings WHERE ts BETWEEN %s AND %s", (first, last))
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM anbu.readings")
    return elapsed


def _line(label: str, r: dict[str, Any], count: int, unit: str) -> str:
    s = r["seconds"]
    consumer = f"consumer {r['cpu'] / s:.0%}"
    if "store_cpu" in r:  # ingest: the receiving process and its storing process
        consumer = f"ingest {r['cpu'] / s:.0%} + storing process {r['store_cpu'] / s:.0%}"
    return (f"{label:24s} {count / s:>10,.0f} {unit}/s  cpu: {consumer}, "
            f"mosquitto {r['mosquitto_cpu'] / s:.0%}, postgres {r['postgres_cpu'] / s:.0%}")  # fmt: skip


def run_bench(n: int = 100_000, batched: int = 8_000, per: int = 100, homes: int = 20,
              kill_n: int = 50_000, durable: bool = True,
              echo: Callable[[str], Any] = print) -> str:  # fmt: skip
    """Run everything and return the last line; `echo` prints the figures as they come."""
    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as tmp:
        env = start_env(Path(tmp), homes, durable)
        try:
            single, sum_single = messages(env.gateways, 0, n, 1)
            bare = drain(env, "bare1", single, bare=True)
            echo(_line("bare, single", bare, n, "msg"))
            real = drain(env, "ingest1", single, bare=False)
            echo(_line("ingest, single", real, n, "msg"))
            del single
            many, sum_many = messages(env.gateways, 1, batched, per)
            bare_b = drain(env, "bare2", many, bare=True)
            echo(_line("bare, batched", bare_b, batched * per, "reading"))
            copy_s = copy_baseline(env.dsn, many)
            echo(f"{'bare COPY, batched':24s} {batched * per / copy_s:>10,.0f} reading/s  "
                 "(one binary COPY of the same rows into anbu.readings, one commit)")  # fmt: skip
            real_b = drain(env, "ingest2", many, bare=False)
            echo(_line("ingest, batched", real_b, batched * per, "reading"))
            del many
            expected, expected_sum = n + batched * per, sum_single + sum_many
            rows, _, _ = count_rows(env.dsn)
            echo(f"rows after the drains: {rows:,} (expected {expected:,})")
            refused, replaced = real["refused"] + real_b["refused"], 0
            if kill_n:
                live, sum_live = messages(env.gateways, 2, kill_n, 1)
                killed = kill_nine(env, live, 2)
                expected, expected_sum = expected + kill_n, expected_sum + sum_live
                refused, replaced = refused + killed.refused, killed.replaced
                echo(f"kill -9 after {killed.at_kill:,} of {kill_n:,} live messages stored; "
                     f"restarted: {killed.after:,} stored, {killed.refused:,} redelivered "
                     f"copies refused, {killed.replaced:,} rows stored before the kill "
                     "replaced since")  # fmt: skip
            rows_all, distinct, value_sum = count_rows(env.dsn)
        finally:
            env.mq.stop()
            env.pg.stop()
    rate, bare_rate = n / real["seconds"], n / bare["seconds"]
    b_rate = batched * per / real_b["seconds"]
    copy_rate = batched * per / copy_s
    mode = "durable (fsync on)" if durable else "fsync off"
    echo(f"PostgreSQL {mode}; {homes} gateways x {SENSORS} sensors; QoS 1; each consumer drains "
         f"a queue published while it was away (publisher: {n / real['publish_s']:,.0f} msg/s); "
         "one ingest worker (a receiving process and its storing process), one bare subscriber")  # fmt: skip
    lost = expected - distinct
    sums = "match" if abs(value_sum - expected_sum) < 0.5 else "DIFFER"
    echo(f"rows: {rows_all:,} stored, {distinct:,} distinct, {expected:,} published; "
         f"sum of values {sums}")  # fmt: skip
    if sums != "match" and lost == 0:
        lost = -1  # the right count of the wrong rows: report it, never hide it
    if rows_all != distinct:
        lost = -1  # a reading stored twice (only without the unique key): never hide it
    # duplicated: redelivered copies that reached the storing process and were refused there
    duplicated = refused
    return (f"ingest: msgs_per_s={rate:.0f} ratio_vs_bare={rate / bare_rate:.2f} "
            f"batched_readings_per_s={b_rate:.0f} copy_readings_per_s={copy_rate:.0f} "
            f"ratio_vs_copy={b_rate / copy_rate:.2f} lost={lost} duplicated={duplicated} replaced={replaced}")  # fmt: skip
