"""Stopping: `anbu demo` and every `anbu serve` role end cleanly on SIGTERM and SIGINT.

Real processes (`.venv/bin/anbu ...`), real signals. The demo must take its throwaway
PostgreSQL, Mosquitto and temporary folder with it, whether signalled while it starts or while
it runs; each serve role must exit within seconds and leave no child behind; and ingest, stopped
mid-stream, must have acknowledged only what it committed: after a restart every message
published before, during and after the stop is stored exactly once.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import registry
from anbu.bench.ingest import count_rows, messages, publish, register
from core.db import Database
from core.domain import SensorKind
from ingest.store import Message, Store
from simulators import personas
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedMosquitto, free_port
from tests.conftest import INGEST_PASSWORD

ANBU = str(Path(sys.executable).with_name("anbu"))
EXIT_WITHIN_S = 30.0  # "within seconds", with room for a machine shared by many test runs
GATEWAY_PASSWORD = "gw-stopping-password"


class Running:
    """A started `anbu ...` process in a session of its own, its output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [ANBU, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        """Until a line holding `text` is printed; raises if the process exits first."""
        deadline = time.monotonic() + timeout
        if any(text in line for line in self.seen):
            return
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"{text!r} not printed in {timeout} s:\n{self.out()}"
                ) from None
            if line is None:
                raise AssertionError(f"exited before printing {text!r}:\n{self.out()}")
            self.seen.append(line)
            if text in line:
                return

    def out(self) -> str:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)[-4000:]

    def stop(self, sig: int) -> float:
        """Send `sig` to the process (not its group); the seconds it took to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(
                f"still running {EXIT_WITHIN_S} s after {signal.Signals(sig).name}:\n{self.out()}"
            ) from None
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(entry.name), cmd))
    return found


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- anbu demo ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "when"),
    [
        (signal.SIGTERM, "running"),
        (signal.SIGINT, "running"),
        (signal.SIGTERM, "starting"),
    ],
    ids=["sigterm-running", "sigint-running", "sigterm-starting"],
)
def test_demo_takes_its_servers_and_folder_with_it(tmp_path: Path, sig: int, when: str) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env["TMPDIR"] = str(tmp)
    args = ["demo", "--port", "0", "--homes", "3", "--broker", "mosquitto", "--speed", "720"]
    demo = Running(args, env)
    try:
        # "starting": while two weeks of history are being stored, servers up, town not yet
        demo.wait_for("Ctrl-C to stop." if when == "running" else "History: storing", 180)
        pidfiles = list(tmp.glob("anbu-demo-*/pg/pgdata/postmaster.pid"))
        assert pidfiles, f"no throwaway PostgreSQL under {tmp}"
        postmaster = int(pidfiles[0].read_text().split()[0])
        assert alive(postmaster)
        mosquittos = [p for p, cmd in processes_mentioning(str(tmp)) if "mosquitto" in cmd]
        assert mosquittos, "no throwaway Mosquitto"
        took = demo.stop(sig)
    finally:
        demo.kill()
    left = processes_mentioning(str(tmp))
    assert not left, f"left running: {left}\n{demo.out()}"
    assert not alive(postmaster), "the throwaway PostgreSQL is still running"
    assert not any(alive(p) for p in mosquittos), "the throwaway Mosquitto is still running"
    assert list(tmp.iterdir()) == [], f"temporary folders left: {list(tmp.iterdir())}"
    print(f"demo stopped by {signal.Signals(sig).name} while {when} in {took:.1f} s")


# -- anbu serve <role> ---------------------------------------------------------------------------


def serve_env(
    db_url: str, broker: EmbeddedMosquitto, client_id: str, web_port: int
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env.update(
        ANBU_DATABASE_URL=db_url,
        ANBU_MQTT_HOST="127.0.0.1",
        ANBU_MQTT_PORT=str(broker.port),
        ANBU_MQTT_USERNAME="ingest",
        ANBU_MQTT_PASSWORD=INGEST_PASSWORD,
        ANBU_MQTT_CLIENT_ID=client_id,
        ANBU_MQTT_SHARED_GROUP=client_id,
        ANBU_SESSION_SECRET="s3cr3t-for-the-stopping-test-" + client_id * 2,
        ANBU_TWILIO_AUTH_TOKEN="tok3n-for-the-stopping-test-" + client_id * 2,
        ANBU_WEB_PORT=str(web_port),
        ANBU_DATA_KEY=secrets.token_hex(32),
        ANBU_METRICS_TOKEN=secrets.token_hex(24),
    )
    return env


def wait_web(port: int, proc: Running, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"exited before serving:\n{proc.out()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"web not answering:\n{proc.out()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("role", ["ingest", "worker", "web", "all"])
def test_serve_role_stops_within_seconds(
    db_url: str, broker: EmbeddedMosquitto, unique: str, role: str, sig: int
) -> None:
    port = free_port()
    proc = Running(["serve", role], serve_env(db_url, broker, f"stop{unique}", port))
    try:
        if role in ("web", "all"):
            wait_web(port, proc)
        if role in ("ingest", "all"):
            proc.wait_for("mqtt connected", 60)
        if role in ("worker", "all"):
            proc.wait_for("Scheduler started", 60)
        children = children_of(proc.proc.pid)
        took = proc.stop(sig)
    finally:
        proc.kill()
    assert proc.proc.returncode == 0, proc.out()
    assert not [c for c in children if alive(c)], f"children left: {children}"
    print(f"serve {role} stopped by {signal.Signals(sig).name} in {took:.1f} s")


@pytest.fixture
def gateways(broker: EmbeddedMosquitto, db_url: str, unique: str) -> Iterator[list[str]]:
    names = [f"st{unique}{i}" for i in range(4)]
    broker.users.update(dict.fromkeys(names[:-1], GATEWAY_PASSWORD))
    broker.add_user(names[-1], GATEWAY_PASSWORD)
    register(db_url, names)
    yield names


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serve_ingest_stopped_mid_stream_loses_and_doubles_nothing(
    db_url: str, broker: EmbeddedMosquitto, unique: str, gateways: list[str], sig: int
) -> None:
    n = 6000
    batch, total = messages(gateways, 0, n, 1)
    env = serve_env(db_url, broker, f"mid{unique}", free_port())
    ingest = Running(["serve", "ingest"], env)
    publisher: threading.Thread | None = None
    try:
        ingest.wait_for("mqtt connected", 60)
        # the subscription follows the connect: send the first message until it is stored
        # (a second copy is the same (sensor, ts), stored once)
        while count_rows(db_url)[0] == 0:
            publish(broker.port, gateways, batch[:1], GATEWAY_PASSWORD)
            assert ingest.proc.poll() is None, ingest.out()
        publisher = threading.Thread(
            target=publish, args=(broker.port, gateways, batch[1:], GATEWAY_PASSWORD)
        )
        publisher.start()
        while count_rows(db_url)[0] < n // 4:
            assert ingest.proc.poll() is None, ingest.out()
            time.sleep(0.02)
        took = ingest.stop(sig)  # the publisher goes on: those wait in the session
        at_stop = count_rows(db_url)[0]
        assert ingest.proc.returncode == 0, ingest.out()
        assert at_stop < n, "the stream was over before the stop; nothing was tested"
        publisher.join(120)
        again = Running(["serve", "ingest"], env)
        try:
            deadline = time.monotonic() + 120
            while count_rows(db_url)[0] < n and time.monotonic() < deadline:
                assert again.proc.poll() is None, again.out()
                time.sleep(0.1)
        finally:
            again.stop(signal.SIGTERM)
    finally:
        ingest.kill()
        if publisher is not None:
            publisher.join(120)
    rows, distinct, summed = count_rows(db_url)
    assert (rows, distinct) == (n, n), f"lost {n - distinct}, twice {rows - distinct}"
    assert summed == total
    print(f"serve ingest stopped by {signal.Signals(sig).name} at {at_stop}/{n} in {took:.1f} s")


# -- a call in flight across a stop ---------------------------------------------------------------

RESIDENT_PHONE = "+821077700042"


@pytest.fixture
def phone() -> Iterator[PhoneNetwork]:
    network = PhoneNetwork("AC" + "4" * 32, "twilio-token-for-the-stopping-test-0123456789")
    network.start()
    yield network
    network.stop()


def state(dsn: str) -> str:
    """The alerts and findings, for a failure's message."""
    with psycopg.connect(dsn) as conn:
        alerts = conn.execute(
            "SELECT kind, state, severity, next_action_at FROM anbu.alerts"
        ).fetchall()
        findings = conn.execute("SELECT * FROM anbu.findings").fetchall()
        activity = conn.execute("SELECT * FROM anbu.home_activity").fetchall()
    return f"alerts {alerts}\nfindings {findings}\nactivity {activity}"


def call_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, twilio_sid, status, outcome FROM anbu.calls ORDER BY id"
        ).fetchall()


def test_serve_all_stopped_with_a_call_in_flight_keeps_it(
    db_url: str, broker: EmbeddedMosquitto, unique: str, phone: PhoneNetwork
) -> None:
    """A check-in call is ringing when `serve all` gets SIGTERM: its row keeps its state; the
    next process takes the resident's answer (webhooks) and no second call is placed."""
    port = free_port()
    env = serve_env(db_url, broker, f"call{unique}", port)
    env.update(
        ANBU_TWILIO_ACCOUNT_SID=phone.account_sid,
        ANBU_TWILIO_AUTH_TOKEN=phone.auth_token,
        ANBU_TWILIO_API_BASE_URL=phone.base_url,
        ANBU_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        ANBU_SWEEP_INTERVAL_S="1",
        ANBU_DUE_POLL_S="0.5",
    )
    phone.set_persona(RESIDENT_PHONE, personas.PRESS_1)
    phone.pause_lines()  # the call is accepted and stays in flight
    gateway = f"call{unique}"
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"home-{unique}", "1111051500", "김순자", RESIDENT_PHONE)
        registry.add_gateway(conn, gateway, rid)
        registry.add_sensor(conn, gateway, "pir1", SensorKind.MOTION, "living")
        registry.add_care_manager(
            conn, f"cm{unique}", "1111051500", "박담당", "+821088800042", "pw-for-the-test-1"
        )
    db = Database(db_url, 1, 2)
    db.open()
    try:  # last moved 8 hours ago: silence long enough for a check-in call
        now = datetime.now(UTC)
        body = json.dumps({"readings": [{"sensor": "pir1", "kind": "motion",
                                         "ts": (now - timedelta(hours=8)).isoformat(), "value": 1}]})  # fmt: skip
        Store(db).store_batch([Message(f"gw/{gateway}/anbu/readings", body.encode())], now)
    finally:
        db.close()
    first = Running(["serve", "all"], env)
    try:
        deadline = time.monotonic() + 90
        while not (rows := call_rows(db_url)) or rows[0][1] is None:
            assert first.proc.poll() is None and time.monotonic() < deadline, (
                f"{first.out()}\n{state(db_url)}"
            )
            time.sleep(0.1)
        assert len(phone.calls) == 1
        in_flight = call_rows(db_url)
        took = first.stop(signal.SIGTERM)
    finally:
        first.kill()
    assert first.proc.returncode == 0, first.out()
    assert call_rows(db_url) == in_flight, "the stop changed the call in flight"
    assert in_flight[0][3] is None
    second = Running(["serve", "all"], env)
    try:
        wait_web(port, second)
        phone.resume_lines()  # it rings now; the resident presses 1; webhooks reach `second`
        deadline = time.monotonic() + 60
        while call_rows(db_url)[0][3] is None:
            assert second.proc.poll() is None and time.monotonic() < deadline, second.out()
            time.sleep(0.1)
        second.stop(signal.SIGTERM)
    finally:
        second.kill()
    rows = call_rows(db_url)
    assert [r[0] for r in rows] == [in_flight[0][0]], f"a second call was placed: {rows}"
    assert rows[0][3] == "ok" and len(phone.calls) == 1
    print(f"serve all stopped with a call in flight in {took:.1f} s; after restart: {rows[0][2:]}")
