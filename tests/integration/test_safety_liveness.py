"""Safety devices' liveness on real PostgreSQL (issue 20): a pendant or a fire or gas detector
is known alive only by its check-ins, stored by ingest; the health sweep makes a silent or
unavailable one a device finding for the technician, and the resident card shows each one's
last check-in (Asia/Seoul) and whether it is online."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.health import HealthPolicy
from detectors.health_sweep import health_sweep
from ingest.store import Message, Store
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

NOW = OPENED_AT  # the app's clock: 2026-11-22 00:30 UTC, 09:30 in Seoul
SENSORS = (
    ("pir1", SensorKind.MOTION, "living"),
    ("sos1", SensorKind.BUTTON, "living"),
    ("smoke_kitchen", SensorKind.SMOKE, "kitchen"),
    ("smoke_bed", SensorKind.SMOKE, "bedroom"),
    ("gas1", SensorKind.GAS, "kitchen"),
    ("co1", SensorKind.CO, "bedroom"),  # installed, never heard yet
)


def _native(gw: str, *items: tuple[str, SensorKind, datetime, float]) -> Message:
    body = {"readings": [{"sensor": s, "kind": k.value,
                          "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": v}
                         for s, k, ts, v in items]}  # fmt: skip
    return Message(f"gw/{gw}/anbu/readings", json.dumps(body).encode())


def _home(database: Database, town: Town, unique: str) -> tuple[str, dict[str, int]]:
    """The town's resident with a gateway, a motion sensor and safety devices, and what their
    gateway sent, stored by ingest's own store."""
    gw = f"gw-{unique}"
    with database.connection() as conn:
        registry.add_gateway(conn, gw, town.resident_id)
        ids = {v: registry.add_sensor(conn, gw, v, k, room) for v, k, room in SENSORS}
        conn.execute(
            "UPDATE anbu.gateway SET online = true, last_seen_at = %s WHERE id = %s",
            (NOW - timedelta(minutes=1), gw),
        )
    h = timedelta(hours=1)
    store = Store(database)
    # the kitchen detector: clear for three weeks (its state never changed), a check-in 1 h ago
    kitchen = [("smoke_kitchen", SensorKind.SMOKE, NOW - d * 24 * h, 0.0) for d in (21, 14, 7)]
    batches = [
        _native(gw, *kitchen, ("smoke_kitchen", SensorKind.SMOKE, NOW - h, 0.0)),
        # the bedroom detector's last check-in 25 h ago; the pendant pressed 30 h ago, since
        # then nothing (its alarm is ingest's business: here only its silence counts)
        _native(
            gw,
            ("smoke_bed", SensorKind.SMOKE, NOW - 25 * h, 0.0),
            ("sos1", SensorKind.BUTTON, NOW - 30 * h, 1.0),
        ),
        # the gas detector checked in 2 h ago, then reported unavailable (Zigbee2MQTT)
        _native(gw, ("gas1", SensorKind.GAS, NOW - 2 * h, 0.0)),
        # nobody moved for 5 h: a quiet home makes no safety device silent sooner or later
        _native(gw, ("pir1", SensorKind.MOTION, NOW - 5 * h, 1.0)),
    ]
    for m in batches:
        assert store.store_batch([m], NOW).stored >= 1
    offline = Message(f"gw/{gw}/zigbee2mqtt/gas1/availability", b'{"state":"offline"}')
    store.store_batch([offline], NOW)
    return gw, ids


def _sweep(database: Database, at: datetime) -> list[Any]:
    with database.connection() as conn:
        return health_sweep(conn, at, HealthPolicy())


def test_silent_or_unavailable_safety_devices_are_device_findings_once(
    database: Database, town: Town, unique: str
) -> None:
    _, ids = _home(database, town, unique)
    found = {n.finding.kind: n for n in _sweep(database, NOW)}
    assert set(found) == {"device_silent", "device_offline"}, found
    silent = found["device_silent"]
    assert silent.resident_id == town.resident_id
    assert sorted(silent.finding.details["subjects"]) == sorted(
        [f"sensor:{ids['sos1']}", f"sensor:{ids['smoke_bed']}"]
    )  # not the kitchen detector (heard 1 h ago), nor the never-heard CO detector
    assert silent.finding.severity.label == "warning"
    # the worst first: the pendant, silent since 30 h, then the bedroom detector
    assert silent.finding.reason_ko.startswith("거실 응급호출기가 30시간째 신호가 없습니다 "
                                               "(안전 기기 기준 24시간)")  # fmt: skip
    assert silent.finding.reason_ko.endswith("외 1건")
    items = {i["sensor_id"]: i for i in silent.finding.details["items"]}
    assert items[ids["smoke_bed"]]["rule"] == "safety_heartbeat"
    offline = found["device_offline"]
    assert offline.finding.details["subjects"] == [f"sensor:{ids['gas1']}"]
    assert offline.finding.reason_ko.startswith("부엌 가스 감지기가 오프라인입니다")
    # the same outage is not reported again
    assert _sweep(database, NOW + timedelta(minutes=1)) == []
    with database.connection() as conn:
        stored = conn.execute(
            "SELECT kind, reason_ko FROM anbu.findings WHERE resident_id = %s AND kind LIKE %s",
            (town.resident_id, "device%"),
        ).fetchall()
    assert sorted(k for k, _ in stored) == ["device_offline", "device_silent"]


def test_a_check_in_ends_the_silence_and_a_new_one_is_reported_again(
    database: Database, town: Town, unique: str
) -> None:
    gw, ids = _home(database, town, unique)
    assert _sweep(database, NOW)
    later = NOW + timedelta(hours=1)
    Store(database).store_batch(
        [_native(gw, ("smoke_bed", SensorKind.SMOKE, later, 0.0))], later
    )  # the bedroom detector checks in: only the pendant is still silent, already reported
    assert _sweep(database, later + timedelta(minutes=1)) == []
    # a day later, the kitchen detector has missed its check-ins too: a new finding names it
    day = NOW + timedelta(hours=25, minutes=30)
    moved = day - timedelta(minutes=5)  # the gateway is heard, the resident moves
    Store(database).store_batch([_native(gw, ("pir1", SensorKind.MOTION, moved, 1.0))], moved)
    new = [n for n in _sweep(database, day) if n.finding.kind == "device_silent"]
    assert len(new) == 1
    assert f"sensor:{ids['smoke_kitchen']}" in new[0].finding.details["subjects"]
    assert f"sensor:{ids['sos1']}" not in new[0].finding.details["subjects"]


def test_the_resident_card_shows_each_safety_device_with_its_last_check_in(
    database: Database, town: Town, unique: str
) -> None:
    _, ids = _home(database, town, unique)
    page = TestClient(town.app)
    login_page(page, town.username_a, PASSWORD_A)
    html = page.get(f"/residents/{town.resident_id}").text
    assert "안전 기기" in html and "마지막 신호" in html

    def row(vendor: str) -> str:
        found = re.search(rf'<tr id="safety-{ids[vendor]}"[^>]*>.*?</tr>', html, re.DOTALL)
        assert found, vendor
        return found.group(0)

    kitchen = row("smoke_kitchen")
    assert "화재 감지기" in kitchen and "부엌" in kitchen
    assert "2026-11-22 08:30" in kitchen  # 23:30 UTC, in Seoul
    assert 'data-state="online"' in kitchen and "연결됨" in kitchen
    assert 'data-state="silent"' in row("smoke_bed") and "신호 없음" in row("smoke_bed")
    assert "응급호출기" in row("sos1") and "2026-11-21 03:30" in row("sos1")
    assert 'data-state="offline"' in row("gas1") and "가스 감지기" in row("gas1")
    assert 'data-state="never"' in row("co1") and "일산화탄소 감지기" in row("co1")
    assert f'id="safety-{ids["pir1"]}"' not in html  # activity sensors are not safety devices
    # the worst first: offline, silent, never heard, online
    order = [int(m) for m in re.findall(r'<tr id="safety-(\d+)"', html)]
    assert order[0] == ids["gas1"] and order[-1] == ids["smoke_kitchen"]

    api = TestClient(town.app)
    card = api.get(
        f"/api/v1/residents/{town.resident_id}",
        headers=bearer(api, town.username_a, PASSWORD_A),
    ).json()
    devices = {d["sensor_id"]: d for d in card["safety_devices"]}
    assert set(devices) == {ids[v] for v in ("sos1", "smoke_kitchen", "smoke_bed", "gas1", "co1")}
    k = devices[ids["smoke_kitchen"]]
    assert (k["kind"], k["kind_ko"], k["room_ko"], k["online"]) == (
        "smoke", "화재 감지기", "부엌", True
    )  # fmt: skip
    assert k["last_seen_local"] == "2026-11-22 08:30"
    assert k["last_seen_at"].startswith("2026-11-21T23:30:00")
    assert [devices[ids[v]]["online"] for v in ("sos1", "smoke_bed", "gas1", "co1")] == [False] * 4
    assert devices[ids["co1"]]["last_seen_at"] is None


def test_the_enrolment_form_offers_the_new_kinds_in_korean(town: Town) -> None:
    from dashboards.enrolment_text import kind_label

    labels = {k.value: kind_label("ko", k.value) for k in SensorKind}
    assert labels["button"] == "응급호출기"
    assert labels["smoke"] == "화재 감지기"
    assert labels["gas"] == "가스 감지기"
    assert labels["co"] == "일산화탄소 감지기"
    assert labels["water_leak"] == "누수 감지기"
    assert labels["tamper"] == "분리 감지 센서"
    assert all(label != kind for kind, label in labels.items())  # every kind has its words


def test_a_pendant_never_pressed_is_watched_from_its_first_battery_report(
    database: Database, town: Town, unique: str
) -> None:
    """A Zigbee pendant reports its battery and link for months before any press: that report
    starts its state row (at rest), so its silence is a finding like any other's; a later
    press still raises (the row at rest is not an alarm)."""
    gw = f"gz-{unique}"
    with database.connection() as conn:
        registry.add_gateway(conn, gw, town.resident_id)
        sid = registry.add_sensor(conn, gw, "sos-zb", SensorKind.BUTTON, "bedroom")
    heard = NOW - timedelta(hours=30)
    report = Message(f"gw/{gw}/zigbee2mqtt/sos-zb", b'{"battery": 87, "linkquality": 120}')
    Store(database).store_batch([report], heard)
    with database.connection() as conn:  # the gateway itself is fine: heard a minute ago
        conn.execute(
            "UPDATE anbu.gateway SET online = true, last_seen_at = %s WHERE id = %s",
            (NOW - timedelta(minutes=1), gw),
        )
    with database.connection() as conn:
        row = conn.execute(
            "SELECT value, last_reading_at, battery FROM anbu.sensor_state WHERE sensor_id = %s",
            (sid,),
        ).fetchone()
    assert row == (0.0, heard, 87.0)
    silent = [n for n in _sweep(database, NOW) if n.finding.kind == "device_silent"]
    assert silent and f"sensor:{sid}" in silent[0].finding.details["subjects"]
    assert silent[0].finding.reason_ko.startswith("침실 응급호출기가 ")
    assert "(안전 기기 기준 24시간)" in silent[0].finding.reason_ko
    press = Message(f"gw/{gw}/zigbee2mqtt/sos-zb", b'{"action": "single", "battery": 86}')
    assert Store(database).store_batch([press], NOW).urgent == 1
