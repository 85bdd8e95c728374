"""Safety devices on real parts (issue 20): a gateway publishes an emergency button press or an
alarm over Mosquitto; ingest stores it and its finding in one transaction and notifies the
worker, whose listener opens the alert and runs its step, and the dong care manager's phone
rings at the local phone network. The worker's polls are set an hour apart, and the test runs
no tick itself: only the listener can have done it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
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

DONG = "1111051500"
RESIDENT_PHONE = "+821077700011"
MANAGER_PHONE = "+821088800011"
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
            # no poll of the worker runs during a test: only the urgent listener acts
            "due_poll_s": 3600.0,
            "sweep_interval_s": 3600.0,
            "call_queue_poll_s": 3600.0,
        }
    )
    rt = build(s, VirtualClock(START, speed=1.0), run_migrations=False)
    gateway = f"gw-{unique}"
    broker.add_user(gateway, "gw-secret")
    with rt.db.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"home-{unique}", DONG, "김순자", RESIDENT_PHONE)
        registry.add_gateway(conn, gateway, rid)
        registry.add_sensor(conn, gateway, "pendant", SensorKind.BUTTON, "living")
        registry.add_sensor(conn, gateway, "smoke1", SensorKind.SMOKE, "kitchen")
        registry.add_sensor(conn, gateway, "pir1", SensorKind.MOTION, "living")
        registry.add_care_manager(conn, "cm-a", DONG, "박담당", MANAGER_PHONE, "pw-a")
    phone.set_persona(RESIDENT_PHONE, personas.NO_ANSWER)
    phone.set_persona(MANAGER_PHONE, personas.NO_ANSWER)
    rt.start_web()
    rt.start_ingest()
    rt.start_worker()
    assert rt.ingest is not None and rt.urgent is not None
    assert rt.ingest.subscribed.wait(10)
    assert rt.urgent.listening.wait(10)
    yield rt
    rt.stop()


def publish(broker: EmbeddedMosquitto, gateway: str, payloads: list[bytes]) -> None:
    """Each payload as one QoS 1 message on the gateway's native topic."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=gateway,
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(gateway, "gw-secret")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    infos = [client.publish(f"gw/{gateway}/anbu/readings", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def readings(*items: tuple[str, str, datetime, float]) -> bytes:
    body = [{"sensor": s, "kind": k, "ts": ts.isoformat(), "value": v} for s, k, ts, v in items]
    return json.dumps({"readings": body}).encode()


def rows(rt: Runtime, sql: str, *args: object) -> list[tuple[object, ...]]:
    with rt.db.connection() as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def count(rt: Runtime, sql: str, *args: object) -> int:
    return int(rows(rt, sql, *args)[0][0])  # type: ignore[call-overload]


def manager_calls(phone: PhoneNetwork) -> list[str]:
    return [c.sid for c in phone.calls if c.to == MANAGER_PHONE]


def test_a_press_rings_the_care_manager_without_a_tick(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt = runtime
    assert rt.ticker is not None
    due_runs = rt.ticker.runs("due"), rt.ticker.runs("reconcile"), rt.ticker.runs("outbox")
    t0 = rt.clock.now()
    sent = time.monotonic()
    publish(broker, f"gw-{unique}", [readings(("pendant", "button", t0, 1))])
    wait_for(lambda: manager_calls(phone), what="the care manager's call")
    took = time.monotonic() - sent
    assert took < 5.0, took
    (finding,) = rows(
        rt,
        """SELECT kind, severity, raised_at, reason_ko, reason_en, details,
                                    alerted_at IS NOT NULL FROM anbu.findings""",
    )
    kind, severity, raised_at, ko, en, details, alerted = finding
    assert (kind, severity, raised_at, alerted) == ("help_button", "critical", t0, True)
    assert ko == "어르신 댁 거실 응급호출기가 눌렸습니다"
    assert en == "the emergency button in the living room was pressed"
    assert isinstance(details, dict)
    assert details["room"] == "living" and details["value"] == 1.0
    assert details["reading_ts"] == t0.isoformat() and isinstance(details["sensor_id"], int)
    assert rows(rt, "SELECT kind, severity FROM anbu.alerts") == [("help_button", "critical")]
    channels = {r[0] for r in rows(rt, "SELECT channel FROM anbu.notifications")}
    assert {"sms", "voice"} <= channels
    # the listener did it: no poll of the worker ran
    assert (rt.ticker.runs("due"), rt.ticker.runs("reconcile"), rt.ticker.runs("outbox")) == (
        due_runs
    )
    # no activity, no inactivity: a press is not a sign the sweep reads as a person moving on
    assert count(rt, "SELECT count(*) FROM anbu.readings") == 1


def test_a_redelivered_press_raises_once_and_each_press_raises(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt = runtime
    t0 = rt.clock.now()
    press = readings(("pendant", "button", t0, 1))
    publish(broker, f"gw-{unique}", [press, press])
    wait_for(lambda: manager_calls(phone), what="the care manager's call")
    publish(broker, f"gw-{unique}", [press])  # delivered again, later
    second = readings(("pendant", "button", t0 + timedelta(seconds=30), 2))
    publish(broker, f"gw-{unique}", [second])
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.findings") == 2, what="second press")
    time.sleep(0.5)
    assert rows(rt, "SELECT kind, raised_at FROM anbu.findings ORDER BY raised_at") == [
        ("help_button", t0),
        ("help_button", t0 + timedelta(seconds=30)),
    ]
    assert count(rt, "SELECT count(*) FROM anbu.alerts") == 1
    assert count(rt, "SELECT count(*) FROM anbu.findings WHERE alerted_at IS NULL") == 0


def test_an_ongoing_alarm_raises_once_and_again_after_it_clears(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt = runtime
    t0 = rt.clock.now()
    gw = f"gw-{unique}"
    at = [t0 + timedelta(seconds=10 * i) for i in range(6)]
    # in one batch: clear, alarm, alarm; then repeats in later messages, a clear, an alarm
    publish(broker, gw, [readings(("smoke1", "smoke", at[0], 0), ("smoke1", "smoke", at[1], 1),
                                  ("smoke1", "smoke", at[2], 1))])  # fmt: skip
    wait_for(lambda: manager_calls(phone), what="the care manager's call")
    publish(broker, gw, [readings(("smoke1", "smoke", at[3], 1))])
    publish(broker, gw, [readings(("smoke1", "smoke", at[1], 1))])  # a late redelivery
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.readings") == 4, what="repeats stored")
    assert rows(rt, "SELECT raised_at FROM anbu.findings") == [(at[1],)]
    (ko,) = rows(rt, "SELECT reason_ko FROM anbu.findings")[0]
    assert ko == "어르신 댁 부엌 화재감지기가 연기(화재)를 감지했습니다"
    publish(broker, gw, [readings(("smoke1", "smoke", at[4], 0)),
                         readings(("smoke1", "smoke", at[5], 1))])  # fmt: skip
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.findings") == 2, what="a new alarm")
    assert rows(rt, "SELECT kind, raised_at FROM anbu.findings ORDER BY raised_at") == [
        ("fire_alarm", at[1]),
        ("fire_alarm", at[5]),
    ]


def test_a_test_press_is_no_fire_and_calls_nobody(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt = runtime
    t0 = rt.clock.now()
    publish(broker, f"gw-{unique}", [readings(("smoke1", "smoke", t0, 2))])
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.findings WHERE alerted_at IS NOT NULL"),
             what="the test's finding handed over")  # fmt: skip
    ((kind, severity, ko, en),) = rows(rt, "SELECT kind, severity, reason_ko, reason_en FROM anbu.findings")  # fmt: skip
    assert (kind, severity) == ("alarm_test", "watch")
    assert "시험 버튼" in str(ko) and "자체 점검" in str(ko) and "화재 아님" in str(ko)
    assert "not a fire" in str(en)
    time.sleep(1.0)
    assert phone.calls == []
    assert phone.messages == []
    assert count(rt, "SELECT count(*) FROM anbu.alerts WHERE kind = 'fire_alarm'") == 0


def test_a_bad_message_beside_a_press_is_dead_lettered_and_the_press_alerted(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt = runtime
    t0 = rt.clock.now()
    # the press shares its message with a reading of an unknown sensor: one batch, one
    # transaction, whatever the broker's timing
    publish(broker, f"gw-{unique}", [
        b"{not json",
        readings(("ghost", "button", t0, 1), ("pir1", "motion", t0, 1),
                 ("pendant", "button", t0 + timedelta(seconds=1), 1)),
    ])  # fmt: skip
    wait_for(lambda: manager_calls(phone), what="the care manager's call")
    assert count(rt, "SELECT count(*) FROM anbu.dead_letters") == 2
    assert rows(rt, "SELECT kind FROM anbu.findings") == [("help_button",)]
    assert count(rt, "SELECT count(*) FROM anbu.readings") == 2


def test_the_listener_comes_back_after_its_connection_is_killed(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    rt = runtime
    assert rt.urgent is not None
    with rt.db.connection() as conn:
        killed = conn.execute(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'anbu-urgent-listener'"""
        ).fetchone()
    assert killed == (1,)
    wait_for(lambda: rt.urgent is not None and rt.urgent.connects >= 2, what="a new connection")
    assert rt.urgent.listening.is_set()
    publish(broker, f"gw-{unique}", [readings(("pendant", "button", rt.clock.now(), 1))])
    wait_for(lambda: manager_calls(phone), what="the care manager's call after the reconnect")
