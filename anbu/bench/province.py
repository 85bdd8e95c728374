"""`anbu bench province`: a province's gateways, their brokers and ingest workers, for a
bounded run, and what held.

Tens of thousands of gateways (30,000 by default: docs/scale.md's province), each its own
MQTT connection and account (as anbu provisions them: the broker checks each password with
the iterations its control topic gives, CONTROL_TOPIC_ITERATIONS), a door, a motion sensor and
two plugs each, publish native readings through `anbu loadgen`'s Fleet (one thread, one socket
a gateway). Every broker and every publisher process holds one open file a gateway: where a
process may not open as many as there are gateways (20,000 on the machine this was written
on, which no process here may raise), the gateways are split over brokers, each with its own
ingest worker (`python -m ingest.runner`: its receiving and storing processes) and its own
publisher process, as docs/scale.md's regions would be; all store into one durable
PostgreSQL. The phases:

1. every gateway connects (seconds; each broker's memory after);
2. steady: the province's morning peak (480 messages a second: 30,000 homes x 277 readings a
   day x 5, docs/scale.md) for `steady_s`;
3. surge: ten times that for `surge_s` (gateways emptying what they kept through an outage);
4. the brokers restarted mid-stream at the steady rate (every gateway and every worker
   connect again; what was published before, during and after must all be stored).

Every published message is one reading with its own (sensor, ts): at the end the bench waits
for storage to hold every one, then reports, per phase, the delay from publish to ingest
(`received_at - ts` of the stored rows, median and 99th percentile) and the CPU each part used
(in % of one core). Everything shares this machine's cores: the figures say what held here,
not what a machine of each part's own would carry.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from anbu.bench.ingest import (
    PASSWORD,
    Worker,
    children_cpu,
    postgres_cpu,
    proc_cpu,
    worker_env,
)
from core.db import migrate
from simulators.loadgen import Fleet, fd_room, register_load_homes, run_load
from simulators.replay import ReplayTarget
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres

PEAK_PER_S = 480.0  # the province's morning peak, messages of one reading a second
PREFIX = "prov-"


@dataclass
class Phase:
    name: str
    began: datetime
    ended: datetime
    messages: int
    seconds: float
    cpu: dict[str, float]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Region:
    """One broker, its gateways, their publisher process and the broker's ingest worker."""

    mq: EmbeddedMosquitto
    names: list[str]
    publisher: Worker | None = None
    worker: Worker | None = None

    def stop(self) -> None:
        for proc in (self.publisher, self.worker):
            if proc is not None:
                proc.stop()
        self.mq.stop()


class Parts:
    """The CPU clocks of the parts: brokers, ingest workers, PostgreSQL, the publishers."""

    def __init__(self, regions: list[Region], pg: EmbeddedPostgres) -> None:
        self.regions, self.pg = regions, pg
        self.retired = 0.0  # CPU seconds of broker processes stopped since

    def retire_brokers(self) -> None:
        """Before the brokers are restarted: keep their clocks, which new processes restart."""
        self.retired += sum(proc_cpu(_pid(r.mq)) for r in self.regions)

    def read(self) -> dict[str, float]:
        return {
            "brokers": self.retired + sum(proc_cpu(_pid(r.mq)) for r in self.regions),
            "ingest": sum(children_cpu(_pid(r.worker)) for r in self.regions),
            "postgres": postgres_cpu(self.pg),
            "publishers": sum(proc_cpu(_pid(r.publisher)) for r in self.regions),
        }


def _pid(part: EmbeddedMosquitto | Worker | None) -> int:
    proc = part.process if isinstance(part, EmbeddedMosquitto) else part.proc if part else None
    assert proc is not None
    return proc.pid


def _phase(name: str, parts: Parts, run: Callable[[], int]) -> Phase:
    began, c0, t0 = datetime.now(UTC), parts.read(), time.monotonic()
    messages = run()
    seconds = time.monotonic() - t0
    c1 = parts.read()
    cpu = {k: (c1[k] - c0[k]) / seconds for k in c0}
    return Phase(name, began, datetime.now(UTC), messages, seconds, cpu)


def _stored(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.readings").fetchone()
    return int(row[0]) if row else 0


def wait_stored(dsn: str, expected: int, timeout: float) -> tuple[int, float]:
    """Poll until storage holds `expected` readings (or `timeout`); (count, seconds waited)."""
    t0 = time.monotonic()
    while (n := _stored(dsn)) < expected and time.monotonic() - t0 < timeout:
        time.sleep(0.5)
    return n, time.monotonic() - t0


def delays(dsn: str, phase: Phase) -> tuple[float, float, float]:
    """Median, 99th percentile and largest publish-to-ingest delay (ms) of a phase's rows."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d)
               FROM (SELECT extract(epoch FROM received_at - ts) * 1000 AS d
                     FROM anbu.readings WHERE ts >= %s AND ts < %s) AS x""",
            (phase.began, phase.ended),
        ).fetchone()
    assert row is not None
    return (float(row[0] or 0), float(row[1] or 0), float(row[2] or 0))


class Restart(threading.Thread):
    """The brokers stopped (SIGTERM: each saves its sessions and queues, as systemd stops
    it) `after_s` into a phase and started again `down_s` later; join() re-raises a failure."""

    def __init__(self, parts: Parts, after_s: float, down_s: float) -> None:
        super().__init__(name="restart-brokers", daemon=True)
        self.parts, self.after_s, self.down_s = parts, after_s, down_s
        self.cancel = threading.Event()
        self.stopped_at: float | None = None  # every broker stopped
        self.started_at: list[float] = []  # each region's broker listening again
        self.failed: BaseException | None = None
        self.subscriptions = [_subscriptions(r.worker) for r in parts.regions]

    def run(self) -> None:
        try:
            if self.cancel.wait(self.after_s):
                return
            self.parts.retire_brokers()
            for r in self.parts.regions:
                r.mq.stop(timeout=120)
            self.stopped_at = time.monotonic()
            if self.cancel.wait(self.down_s):
                return
            for r in self.parts.regions:
                r.mq.start()
                self.started_at.append(time.monotonic())
        except BaseException as exc:  # handed to join()
            self.failed = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.failed is not None:
            raise RuntimeError("restarting the brokers failed") from self.failed


def _ask(regions: list[Region], key: str, timeout: float, **command: Any) -> list[dict[str, Any]]:
    """Give every region's publisher `command`; wait for each one's answer holding `key`."""
    for r in regions:
        assert r.publisher is not None and r.publisher.proc.stdin is not None
        r.publisher.proc.stdin.write(json.dumps({"key": key, **command}) + "\n")
        r.publisher.proc.stdin.flush()
    return [r.publisher.wait_for(key, timeout) for r in regions if r.publisher is not None]


def _subscriptions(worker: Worker | None) -> int:
    """How many times the worker has subscribed so far (it prints {"subscribed": n} each
    time it subscribes again after a reconnect); lines not yet read are read now."""
    if worker is None:
        return 0
    while True:
        try:
            worker.seen.append(worker.lines.get_nowait())
        except queue.Empty:
            break
    return max([1, *(int(d["subscribed"]) for d in worker.seen if "subscribed" in d)])


def _resubscribed(worker: Worker | None, before: int) -> bool:
    """Whether the worker subscribed again since it had subscribed `before` times."""
    deadline = time.monotonic() + 10
    while _subscriptions(worker) <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _start_region(tmp: Path, n: int, names: list[str], dsn: str) -> Region:
    users = {"ingest": PASSWORD, **dict.fromkeys(names, PASSWORD)}
    region = Region(EmbeddedMosquitto(tmp / f"mq{n}", users=users, hash_once=True), names)
    region.mq.start()
    try:
        vars_ = worker_env(dsn, region.mq.port, "ingest", PASSWORD, f"province-ingest-{n}", "")
        region.worker = Worker(subprocess.Popen([sys.executable, "-m", "ingest.runner"],
                                                env=vars_, stdout=subprocess.PIPE, text=True))  # fmt: skip
        region.worker.wait_for("ready", 120)
        cmd = [sys.executable, "-m", "anbu.bench.province", str(region.mq.port), names[0],
               str(len(names))]  # fmt: skip
        region.publisher = Worker(subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, text=True))  # fmt: skip
    except BaseException:
        region.stop()
        raise
    return region


def run(gateways: int = 30_000, steady_s: float = 300.0, surge_s: float = 60.0,
        restart_s: float = 120.0, rate: float = PEAK_PER_S, brokers: int = 0,
        echo: Callable[[str], Any] = print) -> str:  # fmt: skip
    """Run the phases and return the result line; `echo` prints the figures as they come.
    `brokers` 0: as few as this machine's open-file limit allows (one process holds one
    socket a gateway: a broker, and the publisher process of its gateways)."""
    limit = fd_room(gateways + 4096)
    brokers = brokers or -(-gateways // max(limit - 1024, 1))
    echo(f"open files a process: {limit:,}; {brokers} broker(s), each with its own ingest "
         "worker and its gateways' publisher process")  # fmt: skip
    names = [f"{PREFIX}{n:05d}" for n in range(gateways)]
    per = -(-gateways // brokers)
    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=True)
        pg.init()
        pg.start()
        regions: list[Region] = []
        restart: Restart | None = None
        try:
            dsn = pg.create_database("bench")
            migrate(dsn)
            t0 = time.monotonic()
            with psycopg.connect(dsn) as conn:
                register_load_homes(conn, names)
            echo(f"registered {gateways:,} homes (a door, a motion sensor, two plugs each) "
                 f"in {time.monotonic() - t0:.1f} s")  # fmt: skip
            for n in range(brokers):
                regions.append(_start_region(Path(tmp), n, names[n * per : (n + 1) * per], dsn))
            connect_s = max(d["connected"] for d in _ask(regions, "connected", 900, do="connect"))
            broker_mb = [rss_mb(_pid(r.mq)) for r in regions]
            echo(f"{gateways:,} gateways connected in {connect_s:.1f} s; broker memory "
                 + ", ".join(f"{mb:.0f} MB" for mb in broker_mb))  # fmt: skip
            parts = Parts(regions, pg)
            phases: list[Phase] = []
            answers: list[dict[str, Any]] = []
            for name, factor, length in (("steady", 1, steady_s), ("surge", 10, surge_s),
                                         ("restart", 1, restart_s)):  # fmt: skip
                if length <= 0:
                    continue

                def body(name: str = name, factor: int = factor, length: float = length) -> int:
                    nonlocal restart
                    if name == "restart":
                        restart = Restart(parts, length / 4, 1.0)
                        restart.start()
                    got = _ask(regions, name, length + 300, do="load", seconds=length,
                               rate=rate * factor / brokers)  # fmt: skip
                    if restart is not None:
                        restart.join()
                    answers[:] = got
                    return sum(int(a[name]) for a in got)

                phases.append(p := _phase(name, parts, body))
                acked = sum(int(a["acknowledged"]) for a in answers)
                unrouted = sum(int(a["unrouted"]) for a in answers)
                refused = sum(int(a["rejected"]) for a in answers)
                echo(f"{name}: {p.messages:,} messages in {p.seconds:.1f} s "
                     f"({p.messages / p.seconds:,.0f}/s), {acked:,} acknowledged "
                     f"({unrouted:,} with no subscriber, {refused:,} refused); cpu % of a core: "
                     + ", ".join(f"{k} {v:.0%}" for k, v in p.cpu.items()))  # fmt: skip
            reconnect_s = -1.0
            if restart is not None and restart.stopped_at is not None:
                back = [a.get("all_connected_at") or 0.0 for a in answers]
                if min(back) > restart.stopped_at:  # every fleet whole again since the stop
                    reconnect_s = max(b - s for b, s in zip(back, restart.started_at, strict=True))
                again = [_resubscribed(r.worker, n)
                         for r, n in zip(regions, restart.subscriptions, strict=True)]  # fmt: skip
                echo(f"after the brokers' restart every gateway was connected again in "
                     f"{reconnect_s:.1f} s from its broker listening (-1: not all); ingest "
                     f"workers subscribed again: {again}")  # fmt: skip
            published = sum(p.messages for p in phases)
            stored, waited = wait_stored(dsn, published, 300)
            echo(f"published {published:,}, stored {stored:,} "
                 f"({waited:.1f} s after the last acknowledgement)")  # fmt: skip
            worst = 0.0
            for p in phases:
                p50, p99, top = delays(dsn, p)
                worst = max(worst, p99)
                echo(f"{p.name}: publish to ingest median {p50:.0f} ms, p99 {p99:.0f} ms, "
                     f"max {top:.0f} ms")  # fmt: skip
        finally:
            if restart is not None and restart.is_alive():
                restart.cancel.set()
                threading.Thread.join(restart)
            for r in regions:
                r.stop()
            pg.stop()
    refused = sum(int(r.worker.wait_for("stats", 30)["stats"]["duplicates"])
                  for r in regions if r.worker)  # fmt: skip
    lost = published - stored
    cores = len(os.sched_getaffinity(0))
    echo(f"{cores} cores shared by the brokers, the database, the ingest workers and the "
         f"{gateways:,} gateways' publishers")  # fmt: skip
    return (f"province: gateways={gateways} brokers={brokers} connect_seconds={connect_s:.1f} "
            f"messages={published} stored={stored} lost={lost} duplicated={refused} "
            f"reconnect_seconds={reconnect_s:.1f} worst_p99_delay_ms={worst:.0f}")  # fmt: skip


def publisher(port: int, first: str, count: int) -> None:
    """A region's publisher process: `count` gateways from `first` on, commands on stdin
    (JSON lines: connect, or load at a rate for some seconds), an answer line each. Between
    commands it keeps pumping, so its gateways keep their keepalives."""
    start = int(first.removeprefix(PREFIX))
    names = [f"{PREFIX}{n:05d}" for n in range(start, start + count)]
    target = ReplayTarget("127.0.0.1", port, PASSWORD, PREFIX)
    fleet = Fleet(target, names, opening=64, first=start)
    commands: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def read() -> None:
        for line in sys.stdin:
            commands.put(line)
        commands.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            try:
                line = commands.get_nowait()
            except queue.Empty:
                fleet.pump(0.05)
                continue
            if line is None:
                return
            command = json.loads(line)
            key = command["key"]
            if command["do"] == "connect":
                answer: dict[str, Any] = {key: fleet.connect_all(900)}
            else:
                r = run_load(target, names, command["rate"], command["seconds"], fleet=fleet)
                answer = {key: r.messages, "acknowledged": r.acknowledged,
                          "unrouted": r.unrouted, "rejected": r.rejected,
                          "all_connected_at": fleet.all_connected_at}  # fmt: skip
            print(json.dumps(answer), flush=True)
    finally:
        fleet.close()


if __name__ == "__main__":
    publisher(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
