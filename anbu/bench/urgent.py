"""`anbu bench urgent`: from an emergency button's MQTT message to the care manager's phone.

Real parts on this machine: durable PostgreSQL, Mosquitto, one ingest worker
(`python -m ingest.runner`), the anbu worker and web app (as `anbu serve worker|web` run them)
and the local phone network, which stamps each call when the REST request creates it. While a
town of homes streams motion readings, N residents press their pendants one after another;
each press is timed from just before its gateway publishes it to the call to its dong care
manager created at the phone network. Beside it, in the same run, the path an inactivity finding
takes: homes seeded to fall silent past the first inactivity level during the presses; each is
timed from its finding being stored by the worker's sweep (seen by a 20 ms poll) to its first
call (the check-in call to the resident), and from the silence crossing the level, sweep
cadence included.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import registry
from anbu.bench.ingest import spawn_worker, worker_env
from anbu.service import build
from core.config import Settings
from core.db import migrate
from core.domain import SensorKind
from simulators.personas import NO_ANSWER
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedMosquitto, EmbeddedPostgres, free_port

PASSWORD = "bench-password"
TOWN_DONG = "1111051500"
SID, TOKEN = "AC" + "c" * 32, "bench-token"
WATCH_H = 6.0  # the first inactivity level (InactivityPolicy's default)


def _phone(i: int) -> str:
    return f"+8210{i:08d}"


def _manager_phone(i: int) -> str:
    return f"+8219{i:08d}"


def _seed(dsn: str, homes: int, presses: int, silent: int) -> dict[int, tuple[str, str]]:
    """A town dong with `homes` streaming homes and `silent` homes that fall silent; one dong per
    pressing resident, each with its own care manager (whose call then names the press).
    Returns the silent and pressing residents: id -> (home, phone)."""
    watched: dict[int, tuple[str, str]] = {}
    with psycopg.connect(dsn) as conn:
        registry.add_dong(conn, TOWN_DONG, "청운효자동", "종로구")
        registry.add_care_manager(conn, "cm-town", TOWN_DONG, "담당", _manager_phone(0), "pw-x")
        n = 0
        for i in range(homes):
            n += 1
            rid = registry.add_resident(conn, f"town-{i}", TOWN_DONG, "주민", _phone(n))
            registry.add_gateway(conn, f"tg{i:04d}", rid)
            registry.add_sensor(conn, f"tg{i:04d}", "pir", SensorKind.MOTION, "living")
        for i in range(silent):
            n += 1
            rid = registry.add_resident(conn, f"silent-{i}", TOWN_DONG, "주민", _phone(n))
            watched[rid] = (f"silent-{i}", _phone(n))
            registry.add_gateway(conn, f"sg{i:03d}", rid)
            registry.add_sensor(conn, f"sg{i:03d}", "pir", SensorKind.MOTION, "living")
        for i in range(presses):
            n += 1
            dong = f"11110{i + 1:05d}"
            registry.add_dong(conn, dong, f"벤치{i}동", "종로구")
            registry.add_care_manager(conn, f"cm-{i}", dong, "담당", _manager_phone(i + 1), "pw-x")
            rid = registry.add_resident(conn, f"press-{i}", dong, "주민", _phone(n))
            watched[rid] = (f"press-{i}", _phone(n))
            registry.add_gateway(conn, f"pg{i:03d}", rid)
            registry.add_sensor(conn, f"pg{i:03d}", "pendant", SensorKind.BUTTON, "living")
    return watched


def _phone_network(port: int, ready: Any, stop: Any, report: Any) -> None:
    """Child process: the phone network; reports (to, created at) of every call at the end."""
    network = PhoneNetwork(SID, TOKEN, port=port, default_persona=NO_ANSWER)
    network.start()
    ready.set()
    stop.wait()
    network.wait_idle(10)
    report.put([(c.to, c.created_at.timestamp()) for c in network.calls])
    network.stop()


def _client(port: int, gateway: str) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{gateway}",
                    protocol=mqtt.MQTTv5)  # fmt: skip
    c.username_pw_set(gateway, PASSWORD)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _body(sensor: str, kind: str, ts: datetime, value: float) -> bytes:
    reading = {"sensor": sensor, "kind": kind, "ts": ts.isoformat(), "value": value}
    return json.dumps({"readings": [reading]}).encode()


def _town(port: int, homes: int, rate: float, stop: Any, sent: Any, started: Any) -> None:
    """Child process: every town home's gateway publishes motion, `rate` messages a second."""
    clients = [_client(port, f"tg{i:04d}") for i in range(homes)]
    n, t0 = 0, time.monotonic()
    started.value = time.time()
    while not stop.is_set():
        i = n % homes
        clients[i].publish(f"gw/tg{i:04d}/anbu/readings",
                           _body("pir", "motion", datetime.now(UTC), n % 2), qos=1)  # fmt: skip
        n += 1
        ahead = t0 + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    sent.value = n
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _watch_findings(dsn: str, kind: str, seen: dict[int, float], stop: threading.Event) -> None:
    """When each resident's first `kind` finding was first visible (polled every 20 ms)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            for (rid,) in conn.execute(
                "SELECT DISTINCT resident_id FROM anbu.findings WHERE kind = %s", (kind,)
            ).fetchall():
                seen.setdefault(int(rid), time.time())
            stop.wait(0.02)


def _stages(dsn: str, pressed: dict[int, float], first: dict[str, float]) -> dict[str, list[float]]:
    """Where a press's time goes: its batch stored (the reading's received_at), its alert opened
    (opened_at), the care manager's call created."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT r.home, extract(epoch FROM rd.received_at), extract(epoch FROM a.opened_at)
                 FROM anbu.resident r
                 JOIN anbu.gateway g ON g.resident_id = r.id
                 JOIN anbu.sensor s ON s.gateway_id = g.id
                 JOIN anbu.readings rd ON rd.sensor_id = s.id
                 LEFT JOIN anbu.alerts a ON a.resident_id = r.id AND a.kind = 'help_button'
                WHERE r.home LIKE 'press-%%'"""
        ).fetchall()
    out: dict[str, list[float]] = {"publish -> stored by ingest": [],
                                   "stored -> alert opened": [],
                                   "alert opened -> manager's call": []}  # fmt: skip
    for home, stored, opened in rows:
        i = int(str(home).split("-")[1])
        out["publish -> stored by ingest"].append(float(stored) - pressed[i])
        if opened is not None:
            out["stored -> alert opened"].append(float(opened) - float(stored))
            call = first.get(_manager_phone(i + 1))
            if call is not None:
                out["alert opened -> manager's call"].append(call - float(opened))
    return out


def _figures(name: str, values: list[float], expected: int) -> str:
    if not values:
        return f"{name:42s} n=0/{expected}"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"{name:42s} n={len(values)}/{expected} p50={statistics.median(ordered):.3f} s "
            f"p99={p99:.3f} s max={ordered[-1]:.3f} s")  # fmt: skip


def run_bench(presses: int = 30, homes: int = 500, rate: float = 500.0, silent: int = 10,
              spacing_s: float = 2.0, settle_s: float = 15.0, cps: float | None = None,
              echo: Callable[[str], Any] = print) -> str:  # fmt: skip
    """Run the benchmark; returns the last line (also echoed with the figures)."""
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True)
            )
        )
        pg = EmbeddedPostgres(tmp / "pg", durable=True)
        pg.init()
        pg.start()
        stack.callback(pg.stop, "immediate")
        dsn = pg.create_database("bench")
        migrate(dsn)
        watched = _seed(dsn, homes, presses, silent)
        gateways = ([f"tg{i:04d}" for i in range(homes)] + [f"sg{i:03d}" for i in range(silent)]
                    + [f"pg{i:03d}" for i in range(presses)])  # fmt: skip
        mq = EmbeddedMosquitto(tmp / "mq", users={"ingest": PASSWORD,
                                                  **dict.fromkeys(gateways, PASSWORD)})  # fmt: skip
        mq.start()
        stack.callback(mq.stop)

        ctx = multiprocessing.get_context("fork")
        phone_port, web_port = free_port(), free_port()
        ready, stop_phone, report = ctx.Event(), ctx.Event(), ctx.Queue()
        phone = ctx.Process(target=_phone_network, args=(phone_port, ready, stop_phone, report))
        phone.start()
        stack.callback(phone.join, 30)
        stack.callback(stop_phone.set)
        if not ready.wait(60):
            raise RuntimeError("the phone network did not start")

        ingest = spawn_worker(worker_env(dsn, mq.port, "ingest", PASSWORD, "ingest-urgent"))
        stack.callback(ingest.stop)
        settings = Settings(
            database_url=dsn, twilio_account_sid=SID, twilio_auth_token=TOKEN,
            twilio_api_base_url=f"http://127.0.0.1:{phone_port}",
            public_base_url=f"http://127.0.0.1:{web_port}", web_port=web_port,
            sweep_interval_s=5.0,
        )  # fmt: skip
        if cps is not None:
            settings = settings.model_copy(update={"call_cps": cps})
        rt = build(settings, run_migrations=False)
        stack.callback(rt.stop)
        rt.start_web()

        # the silent homes' last motion: each crosses the first level during the presses
        start = datetime.now(UTC) + timedelta(seconds=10)
        window = presses * spacing_s
        crossing = {i: start + timedelta(seconds=window * (i + 0.5) / max(silent, 1))
                    for i in range(silent)}  # fmt: skip
        for i, at in crossing.items():
            c = _client(mq.port, f"sg{i:03d}")
            c.publish(f"gw/sg{i:03d}/anbu/readings",
                      _body("pir", "motion", at - timedelta(hours=WATCH_H), 1), qos=1).wait_for_publish(10)  # fmt: skip
            c.disconnect()
            c.loop_stop()
        rt.start_worker()

        stop_town, town_sent, town_t0 = ctx.Event(), ctx.Value("l", 0), ctx.Value("d", 0.0)
        town = ctx.Process(target=_town,
                           args=(mq.port, homes, rate, stop_town, town_sent, town_t0))  # fmt: skip
        town.start()
        stack.callback(town.join, 30)
        stack.callback(stop_town.set)

        seen: dict[int, float] = {}
        stop_watch = threading.Event()
        watcher = threading.Thread(target=_watch_findings,
                                   args=(dsn, "inactivity", seen, stop_watch), daemon=True)  # fmt: skip
        watcher.start()
        stack.callback(stop_watch.set)

        pads = [_client(mq.port, f"pg{i:03d}") for i in range(presses)]
        time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
        pressed: dict[int, float] = {}
        for i, pad in enumerate(pads):
            sent_at = time.time()
            pad.publish(f"gw/pg{i:03d}/anbu/readings",
                        _body("pendant", "button", datetime.now(UTC), 1), qos=1)  # fmt: skip
            pressed[i] = sent_at
            time.sleep(spacing_s)
        time.sleep(settle_s)
        stop_town.set()
        town.join(30)
        town_s = time.time() - town_t0.value
        stop_watch.set()
        watcher.join(5)
        for pad in pads:
            pad.disconnect()
            pad.loop_stop()
        stop_phone.set()
        calls: list[tuple[str, float]] = report.get(timeout=60)

        first: dict[str, float] = {}
        for to, created in sorted(calls, key=lambda c: c[1]):
            first.setdefault(to, created)
        press_s = [first[_manager_phone(i + 1)] - at for i, at in pressed.items()
                   if _manager_phone(i + 1) in first]  # fmt: skip
        phones = {rid: phone for rid, (_, phone) in watched.items()}
        homes_of = {rid: home for rid, (home, _) in watched.items()}
        silent_s, crossing_s = [], []
        for rid, found in seen.items():
            home = homes_of.get(rid, "")
            if not home.startswith("silent-") or phones[rid] not in first:
                continue
            silent_s.append(first[phones[rid]] - found)
            crossing_s.append(first[phones[rid]] - crossing[int(home.split("-")[1])].timestamp())
        resident_s = [first[phones[rid]] - pressed[int(homes_of[rid].split("-")[1])]
                      for rid in phones if homes_of[rid].startswith("press-")
                      and phones[rid] in first]  # fmt: skip
        stages = _stages(dsn, pressed, first)
        echo(f"town: {homes} homes streaming {town_sent.value / town_s:,.0f} msg/s "
             f"({town_sent.value:,} messages); one ingest worker; worker polls every "
             f"{settings.due_poll_s:g} s, sweep every {settings.sweep_interval_s:g} s; "
             f"{settings.call_cps:g} calls/s allowed")  # fmt: skip
        echo(_figures("button press -> care manager's call", press_s, presses))
        for name, values in stages.items():
            echo(_figures(f"  {name}", values, presses))
        echo(_figures("button press -> resident's check-in call", resident_s, presses))
        echo(_figures("inactivity finding stored -> first call", silent_s, silent))
        echo(_figures("inactivity level crossed -> first call", crossing_s, silent))
        p99 = sorted(press_s)[min(len(press_s) - 1, round(0.99 * (len(press_s) - 1)))] if press_s else float("nan")  # fmt: skip
        line = (f"urgent: presses={presses} called={len(press_s)} "
                f"p99_s={p99:.3f} max_s={max(press_s, default=float('nan')):.3f} "
                f"inactivity_p50_s={statistics.median(silent_s) if silent_s else float('nan'):.3f}")  # fmt: skip
        echo(line)
        return line
