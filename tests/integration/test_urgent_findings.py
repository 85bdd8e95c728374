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
from itertools import pairwise

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import registry
from anbu.service import Runtime, build
from core.clock import VirtualClock
from core.config import Settings
from core.db import Database
from core.domain import SensorKind
from ingest.store import Message, Store
from ingest.urgent import COLLAPSE, LATE, PER_RESIDENT, waiting_urgent
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
    assert ko == "대상자 댁 거실 응급호출기가 눌렸습니다"  # staff read it: 대상자
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
    assert ko == "대상자 댁 부엌 화재 감지기가 연기를 감지했습니다 (화재 의심)"
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


# -- collapsing, lateness and fairness (review of issue 20) ------------------------------------


def test_a_flood_of_past_presses_raises_a_few_findings_and_one_late(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    # one gateway's credentials: 1,000 presses 7 s apart, the last two hours, in one message
    rt = runtime
    t0 = rt.clock.now()
    presses = [("pendant", "button", t0 - timedelta(seconds=7 * i), 1.0) for i in range(1000)]
    publish(broker, f"gw-{unique}", [readings(*presses)])
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.readings") == 1000, what="stored")
    wait_for(lambda: manager_calls(phone), what="the care manager's call")
    found = rows(rt, "SELECT raised_at, reason_ko, reason_en, details FROM anbu.findings"
                     " ORDER BY raised_at")  # fmt: skip
    fresh = [f for f in found if "late_s" not in f[3]]  # type: ignore[operator]
    late = [f for f in found if "late_s" in f[3]]  # type: ignore[operator]
    # fresh ones: one per 30 s of the last 10 minutes; the late ones: one for the whole batch
    assert len(fresh) <= LATE // COLLAPSE + 1, len(fresh)
    assert all(b[0] - a[0] >= COLLAPSE for a, b in pairwise(fresh))  # type: ignore[operator]
    assert len(late) == 1
    (at, ko, en, details) = late[0]
    assert t0 - at > LATE  # type: ignore[operator]
    assert details["late_s"] == int((t0 - at).total_seconds())  # type: ignore[index, operator]
    assert "늦게 도착했습니다" in str(ko) and "응급호출기가 눌렸습니다" in str(ko)
    assert "delivered" in str(en) and "late" in str(en)
    wait_for(lambda: count(rt, "SELECT count(*) FROM anbu.findings WHERE alerted_at IS NULL") == 0,
             what="every finding handed over")  # fmt: skip
    assert count(rt, "SELECT count(*) FROM anbu.alerts") == 1


@pytest.fixture
def home(database: Database) -> dict[str, int]:
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "home-c", DONG, "홍길동", "+821000000003")
        registry.add_gateway(conn, "gw-c", rid)
        return {
            "resident": rid,
            "pendant": registry.add_sensor(conn, "gw-c", "pendant", SensorKind.BUTTON, "bedroom"),
            "smoke": registry.add_sensor(conn, "gw-c", "smoke1", SensorKind.SMOKE, "kitchen"),
        }


def z2m(device: str, body: dict[str, object], received: datetime) -> Message:
    return Message(f"gw/gw-c/zigbee2mqtt/{device}", json.dumps(body).encode(), False, received)


def native(received: datetime, *items: tuple[str, str, datetime, float]) -> Message:
    return Message("gw/gw-c/anbu/readings", readings(*items), False, received)


def db_rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    with db.connection() as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def test_a_receipt_stamped_press_redelivered_2s_later_raises_once(
    database: Database, home: dict[str, int]
) -> None:
    # Zigbee2MQTT's action carries no device time: a redelivery after the commit but before the
    # broker's ack is stamped on its own receipt, 2 s later: the same press, one finding
    store = Store(database)
    t0 = START
    press = {"action": "single", "linkquality": 90}
    assert store.store_batch([z2m("pendant", press, t0)], t0).urgent == 1
    again = t0 + timedelta(seconds=2)
    assert store.store_batch([z2m("pendant", press, again)], again).urgent == 0
    assert db_rows(database, "SELECT count(*) FROM anbu.readings") == [(2,)]
    assert db_rows(database, "SELECT raised_at FROM anbu.findings") == [(t0,)]
    # a press past the window is a press again
    later = t0 + COLLAPSE
    assert store.store_batch([z2m("pendant", press, later)], later).urgent == 1


def test_an_alarm_flapping_raises_once_per_window_and_a_test_is_its_own(
    database: Database, home: dict[str, int]
) -> None:
    store = Store(database)
    t0 = START
    at = [t0 + timedelta(seconds=5 * i) for i in range(6)]
    flap = [("smoke1", "smoke", at[i], float(i % 2)) for i in range(6)]  # clear, alarm, ...
    assert store.store_batch([native(at[5], *flap)], at[5]).urgent == 1
    # and across batches: alarm again 3 s later, after a clear, within 30 s of the finding's
    t1, t2 = at[5] + timedelta(seconds=1), at[5] + timedelta(seconds=3)
    m = native(t2, ("smoke1", "smoke", t1, 0.0), ("smoke1", "smoke", t2, 1.0))
    assert store.store_batch([m], t2).urgent == 0
    test = native(t2, ("smoke1", "smoke", t2 + timedelta(seconds=1), 2.0))
    assert store.store_batch([test], t2).urgent == 1  # a test is no fire: not collapsed into one
    assert db_rows(database, "SELECT kind, raised_at FROM anbu.findings ORDER BY raised_at") == [
        ("fire_alarm", at[1]),
        ("alarm_test", t2 + timedelta(seconds=1)),
    ]


def test_a_late_press_is_raised_marked_late_and_a_late_replay_collapses(
    database: Database, home: dict[str, int]
) -> None:
    # a gateway that buffered through an outage: its press of 25 minutes ago is still raised
    store = Store(database)
    now = START
    pressed = now - timedelta(minutes=25)
    assert store.store_batch([native(now, ("pendant", "button", pressed, 1.0))], now).urgent == 1
    ((ko, en, details),) = db_rows(
        database, "SELECT reason_ko, reason_en, details FROM anbu.findings"
    )
    assert "침실 응급호출기가 눌렸습니다" in str(ko)
    assert str(ko).endswith(" (11월 24일 08:35에 발생한 신호가 25분 늦게 도착했습니다)")
    assert en == ("the emergency button in the bedroom was pressed"
                  " (happened at 24 Nov 08:35 Seoul time, delivered 25 min late)")  # fmt: skip
    assert isinstance(details, dict) and details["late_s"] == 1500
    assert details["received_at"] == now.isoformat()
    # more past presses, minutes apart, received within the window: no more findings
    soon = now + timedelta(seconds=10)
    replay = native(soon, *[("pendant", "button", pressed - timedelta(minutes=i), 1.0)
                            for i in range(1, 50)])  # fmt: skip
    assert store.store_batch([replay], soon).urgent == 0
    # a fresh press is raised whatever came late before it
    fresh = native(soon, ("pendant", "button", soon, 1.0))
    assert store.store_batch([fresh], soon).urgent == 1
    assert db_rows(database, "SELECT count(*) FROM anbu.findings WHERE details ? 'late_s'") == [
        (1,)
    ]


def test_the_hand_over_is_critical_first_and_a_few_per_resident(
    database: Database, home: dict[str, int]
) -> None:
    # one home's flood (many findings waiting, stored first) and another's fire alarm after it
    with database.connection() as conn:
        other = registry.add_resident(conn, "home-d", DONG, "이영희", "+821000000004")
        flood = home["resident"]
        for i in range(150):
            conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                             reason_en)
                   VALUES (%s, 'help_button', 'critical', %s, '눌림', 'pressed')""",
                (flood, START + timedelta(minutes=i)),
            )
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                         reason_en)
               VALUES (%s, 'alarm_test', 'watch', %s, '시험', 'test'),
                      (%s, 'fire_alarm', 'critical', %s, '화재', 'fire')""",
            (other, START, other, START),
        )
        waiting = waiting_urgent(conn, limit=100)
    kinds = [(rid, f.kind) for _, rid, f in waiting]
    assert (other, "fire_alarm") in kinds
    assert sum(1 for rid, _ in kinds if rid == flood) == PER_RESIDENT
    # critical before watch, whoever stored first
    assert kinds[-1] == (other, "alarm_test")
    assert [f.severity.label for _, _, f in waiting] == ["critical"] * (PER_RESIDENT + 1) + [
        "watch"
    ]


def test_the_listener_steps_the_press_ahead_of_a_backlog_of_due_alerts(
    runtime: Runtime, broker: EmbeddedMosquitto, phone: PhoneNetwork, unique: str
) -> None:
    # quiet hours just ended: 30 other alerts are due, older than the press; the listener
    # steps the press's alert only (the backlog is the due poll's, an hour away here)
    rt = runtime
    t0 = rt.clock.now()
    with rt.db.connection() as conn:
        for i in range(30):
            rid = registry.add_resident(conn, f"back-{unique}-{i}", DONG, "최노인",
                                        f"+8210555{i:05d}")  # fmt: skip
            conn.execute(
                """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at,
                                            updated_at, next_action_at)
                   VALUES (%s, 'inactivity', 'warning', 'open', %s, %s, %s)""",
                (rid, t0 - timedelta(hours=8), t0 - timedelta(hours=8), t0 - timedelta(hours=1)),
            )
    publish(broker, f"gw-{unique}", [readings(("pendant", "button", t0, 1))])
    wait_for(lambda: manager_calls(phone), what="the care manager's call")
    time.sleep(1.0)
    untouched = count(
        rt,
        "SELECT count(*) FROM anbu.alerts WHERE kind = 'inactivity' AND updated_at = %s",
        t0 - timedelta(hours=8),
    )
    assert untouched == 30
    assert all(c.to == MANAGER_PHONE or c.to == RESIDENT_PHONE for c in phone.calls)


# -- review of issue 20: a cancel parts two presses; one resident's in order; the anchor index --


def test_a_press_after_a_cancel_is_raised_in_one_batch_and_across_batches(
    database: Database, home: dict[str, int]
) -> None:
    store = Store(database)
    t0 = START
    at = [t0, t0 + timedelta(seconds=10), t0 + timedelta(seconds=25)]
    batch = [("pendant", "button", at[0], 1.0), ("pendant", "button", at[1], 0.0),
             ("pendant", "button", at[2], 1.0)]  # fmt: skip
    assert store.store_batch([native(at[2], *batch)], at[2]).urgent == 3
    # the same, each in a batch of its own: the stored cancel parts the presses
    t1 = t0 + timedelta(minutes=5)
    for s, v in ((0, 1.0), (10, 0.0), (25, 1.0)):
        ts = t1 + timedelta(seconds=s)
        assert store.store_batch([native(ts, ("pendant", "button", ts, v))], ts).urgent == 1
    # a press 5 s after the last one, no cancel between: still collapsed
    ts = t1 + timedelta(seconds=30)
    assert store.store_batch([native(ts, ("pendant", "button", ts, 1.0))], ts).urgent == 0
    assert db_rows(database, "SELECT kind FROM anbu.findings ORDER BY raised_at") == [
        ("help_button",), ("button_cancel",), ("help_button",),
        ("help_button",), ("button_cancel",), ("help_button",),
    ]  # fmt: skip


def test_one_residents_button_findings_are_handed_over_in_the_order_they_happened(
    database: Database, home: dict[str, int]
) -> None:
    # stored press, press, then the cancel between them (two ingest workers): handed over by
    # time, so the cancel is judged before the press after it
    with database.connection() as conn:
        other = registry.add_resident(conn, "home-e", DONG, "이영희", "+821000000005")
        for rid, kind, sev, s in ((home["resident"], "help_button", "critical", 0),
                                  (home["resident"], "help_button", "critical", 25),
                                  (other, "water_leak", "warning", -60),
                                  (home["resident"], "button_cancel", "watch", 10)):  # fmt: skip
            conn.execute(
                """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                             reason_en)
                   VALUES (%s, %s, %s, %s, '눌림', 'pressed')""",
                (rid, kind, sev, START + timedelta(seconds=s)),
            )
        waiting = waiting_urgent(conn)
    assert [(rid, f.kind) for _, rid, f in waiting] == [
        (home["resident"], "help_button"), (home["resident"], "button_cancel"),
        (home["resident"], "help_button"), (other, "water_leak"),
    ]  # fmt: skip


def test_the_anchor_lookup_has_its_index(database: Database) -> None:
    [(definition,)] = db_rows(
        database,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'anbu' "
        "AND indexname = 'findings_urgent_anchor'",
    )
    assert "(details ->> 'sensor_id'::text)" in str(definition) and "raised_at" in str(definition)
    with database.connection() as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute(
            """EXPLAIN SELECT 1 FROM anbu.findings f WHERE f.resident_id = 1
                  AND f.kind = 'help_button' AND (f.details->>'sensor_id') = '7'
                  AND f.raised_at > now() - interval '1 minute'"""
        ).fetchall()
    assert "findings_urgent_anchor" in " ".join(str(r[0]) for r in plan)


def test_the_hand_over_counts_only_the_findings_it_handed_over(
    settings: Settings, phone: PhoneNetwork, unique: str
) -> None:
    # a finding another pass holds is skipped, and not counted: the listener, told there was
    # work, would otherwise pass again and again for nothing
    s = settings.model_copy(update={"twilio_api_base_url": phone.base_url})
    rt = build(s, VirtualClock(START), run_migrations=False)
    try:
        with rt.db.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            rid = registry.add_resident(conn, f"home-{unique}", DONG, "김순자", RESIDENT_PHONE)
            ids = [
                int(conn.execute(
                    """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at,
                                                 reason_ko, reason_en)
                       VALUES (%s, %s, %s, %s, '눌림', 'pressed') RETURNING id""",
                    (rid, kind, sev, START + timedelta(seconds=i)),
                ).fetchone()[0])  # type: ignore[index]
                for i, (kind, sev) in enumerate((("help_button", "critical"),
                                                 ("button_cancel", "watch")))
            ]  # fmt: skip
        with rt.db.connection() as holder, holder.transaction():
            holder.execute("SELECT 1 FROM anbu.findings WHERE id = %s FOR UPDATE", (ids[0],))
            assert rt.hand_over_urgent() == 1  # the cancel; the press is another pass's
        assert rt.hand_over_urgent() == 1  # the press, let go
        assert rt.hand_over_urgent() == 0
        assert count(rt, "SELECT count(*) FROM anbu.findings WHERE alerted_at IS NULL") == 0
    finally:
        rt.stop()
