"""The care queue and the technician's queue apart (issue 21): a device finding is the
technician's; the care queue shows a home only when its resident cannot be observed, once,
and not after the home is observed again; never to another dong's care manager."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from core.clock import VirtualClock
from core.db import Database
from core.domain import SensorKind
from dashboards.queue_feed import CHANNEL
from detectors.health import HealthPolicy
from detectors.health_sweep import health_sweep
from tests.integration.dashboard_support import (
    DONG_A,
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    RecordingTelephony,
    Town,
    bearer,
    login_page,
    town,  # noqa: F401 - the fixture
)

NOW = OPENED_AT
TECH_PASSWORD = "기사-pass-T3"


def _sweep(database: Database, now: Any = NOW) -> list[int]:
    """The worker's health pass: the sweep, then its new findings to their alerts."""
    with database.connection() as conn:
        new = health_sweep(conn, now, HealthPolicy())
    service = AlertService(
        database, RecordingTelephony(), EscalationPolicy(), VirtualClock(now),
        "http://dashboard.test",
    )  # fmt: skip
    return service.on_findings([IncomingFinding(n.finding_id, n.resident_id, n.finding)
                                for n in new])  # fmt: skip


def _state(conn: psycopg.Connection[Any], sid: int, rid: int, last: Any) -> None:
    """What ingest writes for a sensor's latest reading."""
    conn.execute(
        """INSERT INTO anbu.sensor_state (sensor_id, resident_id, value, since, last_reading_at,
                                          updated_at)
           VALUES (%s, %s, 1, %s, %s, %s)
           ON CONFLICT (sensor_id) DO UPDATE SET last_reading_at = excluded.last_reading_at""",
        (sid, rid, last, last, last),
    )


def _install(
    database: Database, rid: int, sensors: list[tuple[str, SensorKind, str, Any]]
) -> tuple[str, list[int]]:
    """A gateway online now with these sensors (vendor id, kind, room, last reading)."""
    with database.connection() as conn:
        gw = registry.add_gateway(conn, f"gw-{rid}", rid)
        conn.execute(
            "UPDATE anbu.gateway SET online = true, last_seen_at = %s WHERE id = %s", (NOW, gw)
        )
        ids = []
        for vendor, kind, room, last in sensors:
            sid = registry.add_sensor(conn, gw, vendor, kind, room)
            _state(conn, sid, rid, last)
            ids.append(sid)
    return gw, ids


def _browser(seeded: Town, username: str, password: str) -> TestClient:
    client = TestClient(seeded.app)
    login_page(client, username, password)
    return client


def _technician(seeded: Town, database: Database) -> TestClient:
    with database.connection() as conn:
        registry.add_care_manager(conn, f"tech-{seeded.resident_id}", DONG_A, "박기사",
                                  "+821000000009", TECH_PASSWORD, role="technician")  # fmt: skip
    return _browser(seeded, f"tech-{seeded.resident_id}", TECH_PASSWORD)


def _open_kinds(database: Database, rid: int) -> dict[str, int]:
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT kind, id FROM anbu.alerts WHERE resident_id = %s AND state <> 'resolved'",
            (rid,),
        ).fetchall()
    return {str(k): int(i) for k, i in rows}


def test_a_silent_plug_is_the_technicians_and_never_a_care_item(
    town: Town,  # noqa: F811 - the fixture
    database: Database,
) -> None:
    rid = town.resident_id
    _install(database, rid, [
        ("pir1", SensorKind.MOTION, "living", NOW - timedelta(minutes=10)),
        ("plug1", SensorKind.POWER, "kitchen", NOW - timedelta(hours=30)),
    ])  # fmt: skip
    _sweep(database)
    device = _open_kinds(database, rid)["device_silent"]  # the technician's alert

    manager = _browser(town, town.username_a, PASSWORD_A)
    queue = manager.get("/alerts").text
    assert f'data-alert="{town.alert_id}"' in queue  # the care alert stays
    assert f'data-alert="{device}"' not in queue and "기기 점검" not in queue
    assert "data-unobserved" not in queue  # the home is observed: nothing else of it here
    headers = bearer(manager, town.username_a, PASSWORD_A)
    listed = manager.get("/api/v1/alerts", headers=headers).json()["data"]
    assert [a["id"] for a in listed] == [town.alert_id]
    # a client syncing every alert says so
    for queue_name, ids in (("technician", {device}), ("all", {device, town.alert_id})):
        got = manager.get(f"/api/v1/alerts?queue={queue_name}", headers=headers).json()["data"]
        assert {a["id"] for a in got} == ids

    technician = _technician(town, database)
    sites = technician.get("/sites").text
    assert "부엌 전력 플러그가 30시간째 신호가 없습니다" in sites
    found = technician.get(
        "/api/v1/device-findings", headers=bearer(technician, f"tech-{rid}", TECH_PASSWORD)
    ).json()["data"]
    assert [f["kind"] for f in found] == ["device_silent"]


def test_a_gateway_down_puts_the_home_in_the_care_queue_once_until_it_is_back(
    town: Town,  # noqa: F811 - the fixture
    database: Database,
) -> None:
    rid = town.resident_id
    gw, (pir,) = _install(database, rid, [
        ("pir1", SensorKind.MOTION, "living", NOW - timedelta(hours=2)),
    ])  # fmt: skip
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.gateway SET online = false, status_changed_at = %s, last_seen_at = %s
                WHERE id = %s""",
            (NOW - timedelta(hours=1), NOW - timedelta(hours=1), gw),
        )
    _sweep(database)
    kinds = _open_kinds(database, rid)
    assert {"gateway_offline", "unknown_status"} <= set(kinds)

    manager = _browser(town, town.username_a, PASSWORD_A)
    queue = manager.get("/alerts").text
    assert queue.count(f'data-unobserved="{rid}"') == 1
    item = queue.split(f'data-unobserved="{rid}"', 1)[1].split("</li>", 1)[0]
    assert "활동 확인 불가 가구" in queue
    assert "게이트웨이 연결 끊김" in item and f"게이트웨이 {gw}" in item
    assert "기사 점검 목록에 올라감" in item  # the gateway_offline finding is on the technician's
    assert f'href="/alerts/{kinds["unknown_status"]}"' in item  # its check-in call
    for kind in ("gateway_offline", "unknown_status"):  # never a row of its own
        assert f'data-alert="{kinds[kind]}"' not in queue
    english = manager.get("/alerts?lang=en").text
    assert (
        "activity cannot be seen" in english
        and "gateway offline" in english
        and f"gateway {gw}" in english
    )
    manager.get("/alerts?lang=ko")

    other = _browser(town, town.username_b, PASSWORD_B)
    assert "data-unobserved" not in other.get("/alerts").text  # another dong's home

    with database.connection() as conn:  # its calls went unanswered: a person is needed now
        conn.execute(
            "UPDATE anbu.alerts SET state = 'escalated' WHERE id = %s", (kinds["unknown_status"],)
        )
    queue = manager.get("/alerts").text
    assert f'data-alert="{kinds["unknown_status"]}"' in queue  # a row, counted, acknowledged
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.alerts SET state = 'calling' WHERE id = %s", (kinds["unknown_status"],)
        )

    later = NOW + timedelta(minutes=5)  # the gateway is back and a reading came in
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.gateway SET online = true, status_changed_at = %s, last_seen_at = %s
                WHERE id = %s""",
            (later, later, gw),
        )
        _state(conn, pir, rid, later)
    _sweep(database, later)
    queue = manager.get("/alerts").text
    assert "data-unobserved" not in queue
    # observed again while its call still runs: the alert is a row, never in neither place
    assert f'data-alert="{kinds["unknown_status"]}"' in queue


def test_every_sensor_silent_is_unobserved_and_a_reading_ends_it(
    town: Town,  # noqa: F811 - the fixture
    database: Database,
) -> None:
    rid = town.resident_id
    _, (_, living) = _install(database, rid, [
        ("pir1", SensorKind.MOTION, "bedroom", NOW - timedelta(hours=30)),
        ("pir2", SensorKind.MOTION, "living", NOW - timedelta(hours=28)),
    ])  # fmt: skip
    _sweep(database)
    manager = _browser(town, town.username_a, PASSWORD_A)
    queue = manager.get("/alerts").text
    assert queue.count(f'data-unobserved="{rid}"') == 1
    item = queue.split(f'data-unobserved="{rid}"', 1)[1].split("</li>", 1)[0]
    assert "모든 센서 신호 없음" in item
    assert "침실 동작 센서" in item and "거실 동작 센서" in item
    # no device finding: the whole home is quiet, which may be the resident, not the devices
    assert "기사 점검 대상 아님" in item and "움직이지 못하는 상황일 수도" in item
    other = _browser(town, town.username_b, PASSWORD_B)
    assert "data-unobserved" not in other.get("/alerts").text

    later = NOW + timedelta(minutes=3)
    with database.connection() as conn:
        _state(conn, living, rid, later)
    _sweep(database, later)
    assert "data-unobserved" not in manager.get("/alerts").text


def test_the_live_feed_wakes_for_an_unobserved_home_and_not_for_a_device_finding(
    town: Town,  # noqa: F811 - the fixture
    database: Database,
    db_url: str,
) -> None:
    rid = town.resident_id
    gw, _ = _install(database, rid, [
        ("pir1", SensorKind.MOTION, "living", NOW - timedelta(minutes=10)),
        ("plug1", SensorKind.POWER, "kitchen", NOW - timedelta(hours=30)),
    ])  # fmt: skip
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        _sweep(database)  # a silent plug: the technician's alert opens
        assert "device_silent" in _open_kinds(database, rid)
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        with database.connection() as conn:
            conn.execute(
                """UPDATE anbu.gateway SET online = false, status_changed_at = %s WHERE id = %s""",
                (NOW - timedelta(hours=1), gw),
            )
        _sweep(database)
        woken = {n.payload for n in listener.notifies(timeout=2, stop_after=1)}
    assert woken == {DONG_A}
