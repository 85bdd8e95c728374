"""End to end on real parts: a gateway publishes over Mosquitto, ingest stores into PostgreSQL,
silence on a virtual clock opens an alert, check-in calls go through the real twilio client to
the local phone network, and the dong care manager is notified and acknowledges over HTTP."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import registry
from anbu.service import Runtime, build
from core.clock import VirtualClock
from core.config import Settings
from core.domain import SensorKind
from simulators import personas
from simulators.phone import PhoneNetwork
from simulators.servers import EmbeddedMosquitto, free_port

DONG_A, DONG_B = "1111051500", "1111053000"
RESIDENT_PHONE = "+821077700001"
MANAGER_A_PHONE, MANAGER_B_PHONE = "+821088800001", "+821088800002"
START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 09:00 in Seoul


def wait_for(check: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def phone() -> Iterator[PhoneNetwork]:
    network = PhoneNetwork(Settings().twilio_account_sid, Settings().twilio_auth_token)
    network.start()
    yield network
    network.stop()


@pytest.fixture
def runtime(
    settings: Settings, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> Iterator[Runtime]:
    port = free_port()
    s = settings.model_copy(
        update={
            "twilio_api_base_url": phone.base_url,
            "public_base_url": f"http://127.0.0.1:{port}",
            "web_port": port,
            "call_retries": 1,
        }
    )
    rt = build(s, VirtualClock(START, speed=0.0), run_migrations=False)
    gateway = f"gw-{unique}"
    broker.add_user(gateway, "gw-secret")
    with rt.db.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        rid = registry.add_resident(conn, f"home-{unique}", DONG_A, "김순자", RESIDENT_PHONE)
        registry.add_gateway(conn, gateway, rid)
        registry.add_sensor(conn, gateway, "door1", SensorKind.DOOR, "entrance")
        registry.add_sensor(conn, gateway, "pir_living", SensorKind.MOTION, "living")
        registry.add_care_manager(conn, "cm-a", DONG_A, "박담당", MANAGER_A_PHONE, "pw-a")
        registry.add_care_manager(conn, "cm-b", DONG_B, "이담당", MANAGER_B_PHONE, "pw-b")
    rt.start_web()
    rt.start_ingest()
    assert rt.ingest is not None
    assert rt.ingest.subscribed.wait(10)
    yield rt
    rt.stop()


def publish(broker: EmbeddedMosquitto, gateway: str, readings: list[dict[str, object]]) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=gateway,
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(gateway, "gw-secret")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    info = client.publish(f"gw/{gateway}/anbu/readings", json.dumps({"readings": readings}), qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def count(rt: Runtime, sql: str, *args: object) -> int:
    with rt.db.connection() as conn:
        row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def token(base: str, username: str, password: str) -> str:
    r = httpx.post(f"{base}/api/v1/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_silence_reaches_the_care_manager_who_acknowledges(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    phone.set_persona(RESIDENT_PHONE, personas.NO_ANSWER)
    t0 = clock.now()
    publish(broker, f"gw-{unique}", [
        {"sensor": "door1", "kind": "door", "ts": t0.isoformat(), "value": 1},
        {"sensor": "pir_living", "kind": "motion", "ts": (t0 + timedelta(seconds=5)).isoformat(), "value": 1},
    ])  # fmt: skip
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.readings") == 2, what="readings stored")
    assert count(rt, "SELECT count(*) FROM anbu.home_activity") == 1

    # five hours of silence: nothing yet; six hours: a watch alert opens
    clock.advance(timedelta(hours=5))
    assert rt.sweep_once() == 0
    clock.advance(timedelta(hours=1, minutes=1))
    assert rt.sweep_once() == 1
    assert rt.sweep_once() == 0  # the same silence is not raised twice
    assert count(rt, "SELECT count(*) FROM anbu.alerts WHERE state = 'open'") == 1

    # first call: not answered; retry after 10 minutes; not answered: escalate
    for attempt in (1, 2):
        rt.alerts.process_due()
        # the step queued the call and dialled it if a token was free; else the worker's send
        # queue drainer dials it (a step never waits for a token): run it as the worker would
        rt.calls.drain_queue(budget_s=5.0)
        wait_for(lambda n=attempt: count(rt, "SELECT count(*) FROM anbu.calls WHERE outcome IS NOT NULL") == n,
                 what=f"call {attempt} outcome")  # fmt: skip
        rt.alerts.process_due()
        if attempt == 1:
            assert count(rt, "SELECT count(*) FROM anbu.alerts WHERE state = 'calling'") == 1
            rt.alerts.process_due()  # not due yet: no second call before the retry interval
            assert len(phone.calls) == 1
            clock.advance(timedelta(minutes=10))
    assert count(rt, "SELECT count(*) FROM anbu.alerts WHERE state = 'escalated'") == 1
    assert [c.to for c in phone.calls] == [RESIDENT_PHONE, RESIDENT_PHONE]
    assert count(rt, "SELECT count(*) FROM anbu.calls WHERE outcome = 'no_answer'") == 2

    # the care manager of dong A got an SMS with the dashboard link; dong B's did not
    sms = [m for m in phone.messages]
    assert [m.to for m in sms] == [MANAGER_A_PHONE]
    (alert_id,) = [int(x) for x in [count(rt, "SELECT id FROM anbu.alerts")]]
    assert f"/alerts/{alert_id}" in sms[0].body
    assert "김순자" not in sms[0].body and RESIDENT_PHONE not in sms[0].body

    base = rt.settings.public_base_url
    a, b = token(base, "cm-a", "pw-a"), token(base, "cm-b", "pw-b")
    seen_b = httpx.get(f"{base}/api/v1/alerts", headers={"Authorization": f"Bearer {b}"})
    assert seen_b.status_code == 200 and seen_b.json()["data"] == []
    denied = httpx.post(f"{base}/api/v1/alerts/{alert_id}/acknowledge", json={"note": ""},
                        headers={"Authorization": f"Bearer {b}"})  # fmt: skip
    assert denied.status_code == 404
    seen_a = httpx.get(f"{base}/api/v1/alerts", headers={"Authorization": f"Bearer {a}"})
    assert [x["id"] for x in seen_a.json()["data"]] == [alert_id]
    ack = httpx.post(f"{base}/api/v1/alerts/{alert_id}/acknowledge", json={"note": "방문 예정"},
                     headers={"Authorization": f"Bearer {a}"})  # fmt: skip
    assert ack.status_code == 200, ack.text
    with rt.db.connection() as conn:
        trail = conn.execute(
            "SELECT actor, to_state FROM anbu.alert_events WHERE alert_id = %s ORDER BY id",
            (alert_id,),
        ).fetchall()
    assert trail[0] == ("system", "open")
    assert trail[-2][1] == "escalated"
    assert trail[-1][1] == "acknowledged" and trail[-1][0].startswith("care_manager:")
    # acknowledged: the ladder stops climbing
    clock.advance(timedelta(hours=2))
    rt.alerts.process_due()
    assert len(phone.messages) == 1


@pytest.mark.parametrize(
    ("persona", "state", "outcome"),
    [(personas.PRESS_1, "resolved", "resident_ok"), (personas.PRESS_2, "escalated", None)],
)
def test_the_resident_answers(
    runtime: Runtime, phone: PhoneNetwork, persona: personas.Persona, state: str,
    outcome: str | None, unique: str,
) -> None:  # fmt: skip
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    phone.set_persona(RESIDENT_PHONE, persona)
    _silent_since(rt, clock.now())
    clock.advance(timedelta(hours=13))
    assert rt.sweep_once() == 1
    rt.alerts.process_due()
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.calls WHERE outcome IS NOT NULL") == 1,
             what="call outcome")  # fmt: skip
    rt.alerts.process_due()
    with rt.db.connection() as conn:
        row = conn.execute("SELECT state, outcome, severity FROM anbu.alerts").fetchone()
    assert row == (state, outcome, "warning")
    assert len(phone.messages) == (1 if state == "escalated" else 0)


def _due_worker(settings_json: str, now: str, start: Any, out: Any) -> None:
    """One worker process with its own pool: wait for the others, run one due-work pass, and
    report how many alerts it advanced, or the exception that ended it."""
    try:
        settings = Settings.model_validate_json(settings_json)
        worker = build(settings, VirtualClock(datetime.fromisoformat(now), speed=0.0),
                       run_migrations=False)  # fmt: skip
        try:
            start.wait(60)
            out.put((os.getpid(), worker.alerts.process_due(), None))
        finally:
            worker.db.close()
    except BaseException as exc:  # reported to the test, which fails on it
        out.put((os.getpid(), None, f"{type(exc).__name__}: {exc}"))
        raise


def test_two_workers_never_call_a_resident_twice(runtime: Runtime, phone: PhoneNetwork) -> None:
    """Four worker processes, each with its own pool, run the due pass at once: one call."""
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    phone.set_persona(RESIDENT_PHONE, personas.NO_ANSWER)
    _silent_since(rt, clock.now())
    clock.advance(timedelta(hours=7))
    assert rt.sweep_once() == 1
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_due_worker,
                    args=(rt.settings.model_dump_json(), clock.now().isoformat(), start, out))
        for _ in range(4)
    ]  # fmt: skip
    # the line rings on until every pass is over: a worker whose pass starts late must find
    # the call still ringing (not its ended call's next step, which is due and no second call)
    phone.pause_lines()
    try:
        for w in workers:
            w.start()
        reports = [out.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(30)
    finally:
        phone.resume_lines()
    assert [w.exitcode for w in workers] == [0, 0, 0, 0], reports
    assert sorted(pid for pid, _, _ in reports) == sorted(w.pid for w in workers)
    assert [err for _, _, err in reports] == [None] * 4, reports
    # exactly one worker advanced the alert (placed the call); the others found nothing due
    assert sorted(n for _, n, _ in reports) == [0, 0, 0, 1]
    assert phone.wait_idle(15)
    assert [c.to for c in phone.calls] == [RESIDENT_PHONE]
    assert count(rt, "SELECT count(*) FROM anbu.calls") == 1


def test_restart_keeps_the_timer(runtime: Runtime, phone: PhoneNetwork) -> None:
    """The worker that placed the call stops for good (its pool, web and ingest closed); a new
    one with its own pool continues from the rows: the retry is due exactly ten minutes after
    the unanswered call, not before, and the first call is not placed again."""
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    phone.set_persona(RESIDENT_PHONE, personas.NO_ANSWER)
    _silent_since(rt, clock.now())
    clock.advance(timedelta(hours=7))
    assert rt.sweep_once() == 1
    # the call rings only once the pass is over: a no-answer that came back within the pass
    # made the alert due again in it (2 steps, not 1) when the machine was fast enough
    phone.pause_lines()
    try:
        assert rt.alerts.process_due() == 1
    finally:
        phone.resume_lines()
    assert phone.wait_idle(15)
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.calls WHERE outcome IS NOT NULL") == 1,
             what="the first call's outcome")  # fmt: skip
    settings, base = rt.settings, rt.settings.public_base_url
    rt.stop()
    with pytest.raises(RuntimeError, match="has not been called"):
        rt.db.pool  # noqa: B018 - the first worker's pool is closed
    # its web server too: callbacks reach nobody
    with pytest.raises(httpx.ConnectError, match=r"(?i)refused|connection attempts failed"):
        httpx.get(f"{base}/healthz", timeout=2)

    other = build(settings, clock, run_migrations=False)
    try:
        other.start_web()  # the phone's callbacks reach the new worker at the same address
        with psycopg.connect(settings.database_url or "") as conn:
            alert = conn.execute(
                "SELECT state, call_attempts, awaiting_call FROM anbu.alerts"
            ).fetchone()
            outcomes = conn.execute("SELECT outcome FROM anbu.calls").fetchall()
        assert alert == ("calling", 1, True)  # the timer is a row: the call still awaited
        assert outcomes == [("no_answer",)]
        # the new worker reads the outcome and schedules the retry; it calls nobody yet
        assert other.alerts.process_due() == 1
        with psycopg.connect(settings.database_url or "") as conn:
            row = conn.execute("SELECT next_action_at FROM anbu.alerts").fetchone()
        assert row == (clock.now() + timedelta(minutes=10),)
        assert len(phone.calls) == 1
        clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
        assert other.alerts.process_due() == 0
        assert len(phone.calls) == 1
        clock.advance(timedelta(seconds=1))
        phone.pause_lines()  # the retry rings after the pass (its no-answer makes it due again)
        try:
            assert other.alerts.process_due() == 1
            other.calls.drain_queue(budget_s=5.0)  # the worker's drainer, when no token was free
        finally:
            phone.resume_lines()
        assert phone.wait_idle(15)
        assert [c.to for c in phone.calls] == [RESIDENT_PHONE, RESIDENT_PHONE]
        with psycopg.connect(settings.database_url or "") as conn:
            keys = [
                r[0] for r in conn.execute("SELECT idempotency_key FROM anbu.calls ORDER BY id")
            ]
        assert len(keys) == len(set(keys)) == 2
    finally:
        other.stop()


def _silent_since(rt: Runtime, at: datetime) -> None:
    with rt.db.connection() as conn:
        conn.execute(
            """INSERT INTO anbu.home_activity (resident_id, last_activity_at)
               SELECT id, %s FROM anbu.resident""",
            (at,),
        )


def test_quiet_hours_hold_the_call_until_they_end(runtime: Runtime, phone: PhoneNetwork) -> None:
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    phone.set_persona(RESIDENT_PHONE, personas.PRESS_1)
    with rt.db.connection() as conn:  # 09:00 Seoul now; quiet from 15:00 to 10:00
        conn.execute("UPDATE anbu.resident SET quiet_start = '15:00', quiet_end = '10:00'")
    _silent_since(rt, clock.now())
    clock.advance(timedelta(hours=7))  # 16:00 Seoul: a watch alert, inside quiet hours
    assert rt.sweep_once() == 1
    rt.alerts.process_due()
    assert phone.calls == []
    with rt.db.connection() as conn:
        (due,) = conn.execute("SELECT next_action_at FROM anbu.alerts").fetchone() or (None,)
    assert due == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 10:00 Seoul next morning
    clock.advance(timedelta(hours=5))  # 21:00 Seoul: warning, still quiet, still held
    assert rt.sweep_once() == 1
    rt.alerts.process_due()
    assert phone.calls == []
    clock.advance(timedelta(hours=12))  # 09:00 Seoul next day, still quiet: critical rings through
    assert rt.sweep_once() == 1
    rt.alerts.process_due()
    assert phone.wait_idle(15)
    assert len(phone.calls) == 1


def test_device_findings_never_ring_the_resident(runtime: Runtime, phone: PhoneNetwork) -> None:
    rt, clock = runtime, runtime.clock
    from alerts.service import IncomingFinding
    from core.domain import Finding, Severity

    with rt.db.connection() as conn:
        (rid,) = conn.execute("SELECT id FROM anbu.resident").fetchone() or (0,)
        (fid,) = conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko, reason_en)
               VALUES (%s, 'gateway_offline', 'warning', %s, '게이트웨이 오프라인', 'gateway offline')
               RETURNING id""",
            (rid, clock.now()),
        ).fetchone() or (0,)
    finding = Finding(
        "h", "gateway_offline", Severity.WARNING, clock.now(), "게이트웨이 오프라인", "offline"
    )
    assert len(rt.alerts.on_findings([IncomingFinding(fid, rid, finding)])) == 1
    assert isinstance(clock, VirtualClock)
    clock.advance(timedelta(hours=3))
    rt.alerts.process_due()
    assert phone.calls == []
    with rt.db.connection() as conn:
        row = conn.execute("SELECT state, next_action_at FROM anbu.alerts").fetchone()
    assert row == ("open", None)


def test_gateway_offline_is_a_device_alert_and_the_resident_still_gets_a_call(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt, clock = runtime, runtime.clock
    assert isinstance(clock, VirtualClock)
    phone.set_persona(RESIDENT_PHONE, personas.PRESS_1)
    gateway = f"gw-{unique}"
    t0 = clock.now()
    publish(
        broker,
        gateway,
        [{"sensor": "pir_living", "kind": "motion", "ts": t0.isoformat(), "value": 1}],
    )
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.readings") == 1, what="reading stored")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=gateway,
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.username_pw_set(gateway, "gw-secret")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.publish(f"gw/{gateway}/anbu/status", "offline", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.gateway WHERE online = false") == 1,
             what="gateway marked offline")  # fmt: skip
    clock.advance(timedelta(minutes=15))
    assert rt.health_once() >= 1
    with rt.db.connection() as conn:
        kinds = dict(
            conn.execute("SELECT kind, next_action_at IS NOT NULL FROM anbu.alerts").fetchall()
        )
    assert kinds.get("gateway_offline") is False  # the technician's: no call
    assert kinds.get("unknown_status") is True  # the resident is not presumed fine
    rt.alerts.process_due()
    assert phone.wait_idle(15)
    assert len(phone.calls) == 1


def test_a_resident_calling_for_help_reaches_the_care_manager_at_once(
    runtime: Runtime, phone: PhoneNetwork
) -> None:
    """The 돌봄콜 line: press 1 → a critical help request → SMS and a voice call, no call-back."""
    from alerts.intake import Intake

    rt = runtime
    line = "+82215880001"
    sid = phone.dial_in(RESIDENT_PHONE, line, f"{rt.settings.public_base_url}/twilio/line",
                        personas.caller("2"))  # fmt: skip
    assert sid
    assert phone.wait_idle(15)
    intake = Intake(rt.db, rt.alerts, rt.clock, streak=3)
    wait_for(lambda: intake.run_once() >= 1 or count(rt, "SELECT count(*) FROM anbu.alerts") > 0,
             what="help request intake")  # fmt: skip
    with rt.db.connection() as conn:
        (kind, severity) = conn.execute("SELECT kind, severity FROM anbu.alerts").fetchone() or (
            "",
            "",
        )
    assert (kind, severity) == ("help_request", "critical")
    rt.alerts.process_due()
    with rt.db.connection() as conn:
        (state,) = conn.execute("SELECT state FROM anbu.alerts").fetchone() or ("",)
        channels = sorted(r[0] for r in conn.execute("SELECT channel FROM anbu.notifications"))
    assert state == "escalated"
    assert "sms" in channels and "voice" in channels
    # nobody rang the resident back; the care manager's phone rang (now or via the queue)
    rt.calls.drain_queue()
    assert phone.wait_idle(15)
    outbound = [c.to for c in phone.calls if getattr(c, "direction", "outbound") != "inbound"]
    assert RESIDENT_PHONE not in outbound
    assert MANAGER_A_PHONE in outbound
