"""`anbu bench calls`: one morning of routine check-ins through the send queue and the phone network.

N residents with a 10:00 plan; scheduling (plans -> rounds -> queued calls) and placing
(queue -> Twilio REST on the local phone network, every call then played out against anbu's
signed webhooks) are timed beside the floor the calls-per-second limit alone imposes.
Run it with the limit raised so the floor does not hide the overhead.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI

import registry
from calls.checkins import CheckinService
from calls.client import make_twilio_client
from calls.service import CallService
from calls.webhooks import build_router
from core.clock import SystemClock, VirtualClock
from core.config import Settings
from core.db import Database, migrate
from simulators.personas import SCRIPTED
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedPostgres, free_port

DONG = "1111051500"
# Monday 2026-03-02 10:00 Asia/Seoul
SLOT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


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


def _serve(app: FastAPI, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("web server did not start")
        time.sleep(0.02)
    return server


def _outside_world(
    settings: Settings, phone_port: int, persona: str, ready: Any, stop: Any, report: Any
) -> None:
    """Child process: the phone network and anbu's webhooks (off the dialler's GIL)."""
    network = PhoneNetwork(settings.twilio_account_sid, settings.twilio_auth_token,
                           port=phone_port, default_persona=SCRIPTED[persona])  # fmt: skip
    network.start()
    assert settings.database_url is not None
    db = Database(settings.database_url, min_size=4, max_size=40)
    db.open()
    service = CallService(db, make_twilio_client(settings), settings, SystemClock())
    service.speech_model()
    app = FastAPI()
    app.include_router(build_router(service, settings))
    web = _serve(app, int(settings.public_base_url.rsplit(":", 1)[1]))
    ready.set()
    stop.wait()
    # calls cut off when the bench ends make their webhooks see disconnects: not news
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    network.wait_idle(10)
    rung = Counter(c.to for c in network.calls)
    report.put(sum(n - 1 for n in rung.values() if n > 1))
    web.should_exit = True
    network.stop()
    db.close()


def run_bench(
    checkins: int,
    cps: float,
    database_url: str | None = None,
    persona: str = "press_1",
    settle_s: float = 30.0,
) -> str:
    """Run the benchmark; returns the last line (also printed with the figures)."""
    with contextlib.ExitStack() as stack:
        if not database_url:  # never fall back to libpq defaults (the machine's own server)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="anbu-bench-")))
            pg = EmbeddedPostgres(tmp)
            pg.init()
            pg.start()
            stack.callback(pg.stop, "immediate")
            database_url = pg.dsn
        migrate(database_url)
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
        )
        ctx = multiprocessing.get_context("fork")
        ready, stop, report = ctx.Event(), ctx.Event(), ctx.Queue()
        child = ctx.Process(
            target=_outside_world, args=(settings, phone_port, persona, ready, stop, report)
        )
        child.start()
        stack.callback(child.join, 30)
        stack.callback(stop.set)
        if not ready.wait(60):
            raise RuntimeError("the phone network did not start")
        db = Database(database_url, min_size=4, max_size=40)
        db.open()
        stack.callback(db.close)
        clock = VirtualClock(SLOT + timedelta(seconds=1), speed=1.0)
        service = CallService(db, make_twilio_client(settings), settings, clock)

        checkin = CheckinService(db, settings, clock)
        t0 = time.perf_counter()
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
        ended = 0
        with psycopg.connect(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + settle_s
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM anbu.calls WHERE ended_at IS NOT NULL"
                ).fetchone()
                ended = int(row[0]) if row else 0
                if ended >= placed or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        settled = time.perf_counter() - t1
        stop.set()
        rung_twice = int(report.get(timeout=120))

        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                """SELECT count(*), count(DISTINCT round_id), count(*) FILTER (WHERE outcome = 'ok')
                   FROM anbu.calls"""
            ).fetchone()
        assert row is not None
        duplicates = (int(row[0]) - int(row[1])) + rung_twice
        floor = checkins / cps
        print(f"residents with a 10:00 plan: {checkins}, rounds scheduled: {rounds}")
        print(f"calls-per-second limit: {cps:g} -> floor {floor:.2f} s")
        print(f"scheduling (plans -> rounds -> queued calls): {scheduling:.2f} s")
        print(f"placing (queue -> REST create, {placed} calls): {placing:.2f} s "
              f"({placing / max(floor, 1e-9):.2f}x the floor)")  # fmt: skip
        print(f"calls played out against the webhooks after {settled:.2f} s: {ended} "
              f"(answered OK: {row[2]})")  # fmt: skip
        line = (
            f"calls: checkins={placed} seconds={scheduling + placing:.2f} "
            f"floor_seconds={floor:.2f} duplicates={duplicates}"
        )
        print(line)
        return line
