"""`anbu bench calls`: one morning of routine check-ins, from plans to every outcome recorded.

N residents with a 10:00 plan. Scheduling (plans -> rounds -> queued calls) and placing
(queue -> Twilio REST on the local phone network) run here; the phone network plays every call
out against anbu's signed webhooks, served by `web_workers` processes sharing the port as
`anbu-web@` instances share nginx's upstream (SO_REUSEPORT spreads the connections). The round
ends when the last call's outcome is recorded; the baseline is the floor the calls-per-second
limit alone sets (N / CPS). Each process reports its CPU time, each web worker the webhooks it
answered, so the figures say where a round's time goes.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import uvicorn

import registry
from anbu.service import WEB_KEEP_ALIVE_S, build
from calls.checkins import CheckinService
from calls.client import make_twilio_client
from calls.service import CallService
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database, migrate
from simulators.personas import SCRIPTED
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedPostgres, free_port

DONG = "1111051500"
# Monday 2026-03-02 10:00 Asia/Seoul
SLOT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
GOAL_FLOOR_MULTIPLE = 2.0  # a round completes within twice the floor
DIALLER_POOL, WEB_POOL = 40, 16  # database connections of the dialler and of each web worker


def _seed(dsn: str, n: int) -> None:
    with psycopg.connect(dsn) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO anbu.resident (home, dong_code, display_name, phone)
                   VALUES (%s, %s, %s, %s)""",
                [(f"bench-{i}", DONG, f"주민{i}", f"+8210{i:08d}") for i in range(n)],
            )
            cur.execute(
                """INSERT INTO anbu.checkin_plans (resident_id, weekdays, local_time)
                   SELECT id, ARRAY[1, 4]::smallint[], '10:00' FROM anbu.resident"""
            )


def _cpu_s() -> float:
    """This process's CPU time, every thread, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot (/proc/stat), 0 where unreadable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class _Counted:
    """ASGI wrapper counting the HTTP requests a worker answered."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def _web_worker(settings: Settings, port: int, ready: Any, stop: Any, report: Any) -> None:
    """Child process: one web worker as an anbu-web@ instance runs it (the whole app, its
    middleware and every route), answering Twilio's webhooks."""
    runtime = build(settings, run_migrations=False)
    runtime.calls.speech_model()
    app = runtime.web_app()
    counted = _Counted(app)
    config = uvicorn.Config(counted, log_level="warning", access_log=False, backlog=2048,
                            timeout_keep_alive=WEB_KEEP_ALIVE_S)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [_listening_socket(port)]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("web worker did not start")
        time.sleep(0.02)
    cpu0 = _cpu_s()  # the round's share, not the start (the speech model's training)
    ready.release()
    stop.wait()
    report.put(("web", os.getpid(), counted.requests, _cpu_s() - cpu0))
    # calls cut off when the bench ends make their webhooks see disconnects: not news
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    server.should_exit = True
    thread.join(10)
    runtime.db.close()


def _phone_network(
    settings: Settings, phone_port: int, persona: str, ready: Any, stop: Any, report: Any
) -> None:
    """Child process: the carrier, ringing every line and posting its webhooks."""
    network = PhoneNetwork(settings.twilio_account_sid, settings.twilio_auth_token,
                           port=phone_port, default_persona=SCRIPTED[persona])  # fmt: skip
    network.start()
    cpu0 = _cpu_s()
    ready.release()
    stop.wait()
    network.wait_idle(10)
    calls = network.calls
    rung = Counter(c.to for c in calls)
    twice = sum(n - 1 for n in rung.values() if n > 1)
    errors = Counter(e for c in calls for e in c.errors)
    report.put(("phone", os.getpid(), twice, errors, _cpu_s() - cpu0))
    network.stop()


@dataclass(frozen=True, slots=True)
class _Round:
    placed: int
    completed: int
    ok: int
    last_outcome_s: float  # from the start of scheduling to the last outcome's ended_at (wall)
    waited_s: float


def _settle(database_url: str, placed: int, started: datetime, t0: float, stall_s: float) -> _Round:
    """Wait until every placed call has its outcome recorded, or nothing moved for `stall_s`."""
    count = """SELECT count(*) FILTER (WHERE ended_at IS NOT NULL AND outcome IS NOT NULL),
                      count(*) FILTER (WHERE outcome = 'ok'), max(ended_at)
               FROM anbu.calls"""
    with psycopg.connect(database_url, autocommit=True) as conn:
        last, moved = -1, time.monotonic()
        while True:
            row = conn.execute(count).fetchone()
            assert row is not None
            completed, ok, last_end = int(row[0]), int(row[1]), row[2]
            if completed != last:
                last, moved = completed, time.monotonic()
            if completed >= placed or time.monotonic() - moved > stall_s:
                break
            time.sleep(1.0)  # the figure is the last ended_at, not when this saw it: a
            # tighter poll only scanned the calls table (7 ms) ten times a second, 8 % of the
            # server's CPU over a round
    last_s = (last_end - started).total_seconds() if last_end else float("nan")
    return _Round(placed, completed, ok, last_s, time.perf_counter() - t0)


def run_bench(
    checkins: int,
    cps: float,
    database_url: str | None = None,
    persona: str = "press_1",
    settle_s: float = 30.0,
    web_workers: int = 2,
) -> str:
    """Run the benchmark; returns the last line (also printed with the figures).
    `settle_s`: how long the round may go without a new outcome before it is called stalled."""
    if web_workers < 1:
        raise ValueError("web_workers must be at least 1")
    with contextlib.ExitStack() as stack:
        if not database_url:  # never fall back to libpq defaults (the machine's own server)
            tmp = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True)
                )
            )
            pg = EmbeddedPostgres(tmp)
            pg.init()
            pg.start()
            stack.callback(pg.stop, "immediate")
            database_url = pg.dsn
        migrate(database_url)
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
        needed = DIALLER_POOL + WEB_POOL * web_workers + 5  # + this process's own
        if row is None or needed > int(row[0]):
            raise ValueError(
                f"{web_workers} web workers need {needed} database connections; "
                f"the server allows {row[0] if row else '?'} (fewer workers, or max_connections)"
            )
        _seed(database_url, checkins)
        phone_port, port = free_port(), free_port()
        settings = Settings(
            database_url=database_url,
            twilio_account_sid="AC" + "b" * 32,
            twilio_auth_token="bench-token",
            twilio_api_base_url=f"http://127.0.0.1:{phone_port}",
            public_base_url=f"http://127.0.0.1:{port}",
            call_cps=cps,
            call_dial_workers=16,
            db_pool_max=WEB_POOL,
        )
        ctx = multiprocessing.get_context("fork")
        ready, stop, report = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
        children = [
            ctx.Process(target=_web_worker, args=(settings, port, ready, stop, report))
            for _ in range(web_workers)
        ]
        children.append(
            ctx.Process(
                target=_phone_network,
                args=(settings, phone_port, persona, ready, stop, report),
            )
        )
        for child in children:
            child.start()
            stack.callback(child.join, 30)
        stack.callback(stop.set)
        for _ in children:
            if not ready.acquire(timeout=60):
                raise RuntimeError("the web workers or the phone network did not start")
        db = Database(database_url, min_size=4, max_size=DIALLER_POOL)
        db.open()
        stack.callback(db.close)
        clock = VirtualClock(SLOT + timedelta(seconds=1), speed=1.0)
        service = CallService(db, make_twilio_client(settings), settings, clock)
        checkin = CheckinService(db, settings, clock)

        cpu0, busy0 = _cpu_s(), _machine_busy_s()
        started, t0 = datetime.now(UTC), time.perf_counter()
        rounds = checkin.schedule(until=clock.now(), since=SLOT - timedelta(minutes=1))
        while checkin.advance(limit=2000) > 0:
            pass
        scheduling = time.perf_counter() - t0

        t1 = time.perf_counter()
        placed = 0
        while placed < checkins:
            got = service.drain_queue(budget_s=5.0)
            placed += got
            if got == 0:
                break
        placing = time.perf_counter() - t1
        done = _settle(database_url, placed, started, t0, settle_s)
        dialler_cpu, busy = _cpu_s() - cpu0, _machine_busy_s() - busy0
        stop.set()
        reports = [report.get(timeout=120) for _ in children]

        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT round_id) FROM anbu.calls"
            ).fetchone()
        assert row is not None
        webs = sorted(r for r in reports if r[0] == "web")
        [phone] = [r for r in reports if r[0] == "phone"]
        duplicates = (int(row[0]) - int(row[1])) + int(phone[2])
        floor = checkins / cps
        seconds = done.last_outcome_s if done.completed else done.waited_s
        webhooks = sum(r[2] for r in webs)
        web_cpu = sum(r[3] for r in webs)
        print(f"residents with a 10:00 plan: {checkins}, rounds scheduled: {rounds}")
        print(f"calls-per-second limit: {cps:g} -> floor {floor:.2f} s (the baseline)")
        print(f"scheduling (plans -> rounds -> queued calls): {scheduling:.2f} s")
        print(f"placing (queue -> REST create, {placed} calls): {placing:.2f} s "
              f"({placing / max(floor, 1e-9):.2f}x the floor)")  # fmt: skip
        print(f"round: {done.completed} of {placed} outcomes recorded (answered OK: {done.ok}), "
              f"the last {seconds:.2f} s after scheduling began = "
              f"{seconds / max(floor, 1e-9):.2f}x the floor (goal <= {GOAL_FLOOR_MULTIPLE:g}x); "
              f"(waited {done.waited_s:.2f} s by this process's monotonic clock); "
              f"lost {placed - done.completed}; the phone network's errors: "
              f"{dict(phone[3]) or 'none'}")  # fmt: skip
        print(f"webhooks: {webhooks} ({webhooks / max(placed, 1):.2f} per call) over "
              f"{web_workers} web worker(s)")  # fmt: skip
        for i, (_, _, requests, cpu) in enumerate(webs, 1):
            print(f"  web worker {i}: {requests} webhooks, {requests / max(seconds, 1e-9):.0f}/s "
                  f"over the round, {cpu:.1f} CPU s = {1000 * cpu / max(requests, 1):.2f} ms "
                  f"per webhook (one core's ceiling {requests / max(cpu, 1e-9):.0f}/s)")  # fmt: skip
        print(f"CPU seconds over the round: dialler {dialler_cpu:.1f}, web {web_cpu:.1f}, "
              f"phone network {phone[4]:.1f}, the rest of the machine (PostgreSQL) "
              f"{max(0.0, busy - dialler_cpu - web_cpu - phone[4]):.1f}; "
              f"{os.cpu_count()} cores x {seconds:.1f} s = "
              f"{(os.cpu_count() or 1) * seconds:.1f}")  # fmt: skip
        line = (
            f"calls: checkins={placed} completed={done.completed} seconds={seconds:.2f} "
            f"floor_seconds={floor:.2f} duplicates={duplicates}"
        )
        print(line)
        return line
