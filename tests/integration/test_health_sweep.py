"""Device health, site incidents and the daily review jobs on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.health import HealthPolicy
from detectors.health_sweep import health_sweep, learn_cadences, learn_clocks
from detectors.night import NightPolicy
from detectors.review_nightly import night_review, routine_change_review
from detectors.routine_change import RoutinePolicy
from detectors.site import SitePolicy

pytestmark = pytest.mark.storage_modes

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
SEOUL = ZoneInfo("Asia/Seoul")
POLICY = HealthPolicy(site=SitePolicy(min_gateways=5, min_dong_gateways=3))


def _home(conn: psycopg.Connection[Any], n: int, dong: str = "1111051500") -> tuple[int, int]:
    registry.add_dong(conn, dong, "청운효자동", "종로구")
    rid = registry.add_resident(conn, f"h{n}", dong, "김영희", "+821012345678")
    gw = registry.add_gateway(conn, f"gw{n}", rid)
    sid = registry.add_sensor(conn, gw, "pir1", SensorKind.MOTION, "living")
    _state(conn, sid, rid, NOW - timedelta(minutes=5))
    conn.execute(
        "UPDATE anbu.gateway SET online = true, last_seen_at = %s WHERE id = %s",
        (NOW - timedelta(minutes=5), gw),
    )
    return rid, sid


def _state(conn: psycopg.Connection[Any], sid: int, rid: int, last: datetime,
           battery: float | None = None) -> None:  # fmt: skip
    """What ingest writes (ingest is not imported by detectors' tests)."""
    conn.execute(
        """INSERT INTO anbu.sensor_state (sensor_id, resident_id, value, since, last_reading_at,
                                          battery, updated_at)
           VALUES (%s, %s, 1, %s, %s, %s, %s)
           ON CONFLICT (sensor_id) DO UPDATE SET last_reading_at = excluded.last_reading_at,
               battery = excluded.battery""",
        (sid, rid, last, last, battery, last),
    )


def _sensor(conn: psycopg.Connection[Any], n: int, rid: int, vendor: str, kind: SensorKind,
            room: str, last: datetime) -> int:  # fmt: skip
    sid = registry.add_sensor(conn, f"gw{n}", vendor, kind, room)
    _state(conn, sid, rid, last)
    return sid


def _offline(conn: psycopg.Connection[Any], n: int, at: datetime) -> None:
    conn.execute(
        "UPDATE anbu.gateway SET online = false, status_changed_at = %s WHERE id = %s",
        (at, f"gw{n}"),
    )


def _kinds(found: list[Any]) -> list[tuple[int, str]]:
    return sorted((f.resident_id, f.finding.kind) for f in found)


def test_device_findings_once_per_outage(database: Database) -> None:
    with database.connection() as conn:
        ok, _ = _home(conn, 1)
        low, low_sid = _home(conn, 2)
        _state(conn, low_sid, low, NOW - timedelta(minutes=5), battery=8.0)
        silent, pir_sid = _home(conn, 3)  # a plug stopped, and nobody moved: both
        _state(conn, pir_sid, silent, NOW - timedelta(hours=30))
        silent_sid = _sensor(conn, 3, silent, "plug1", SensorKind.POWER, "kitchen",
                             NOW - timedelta(hours=30))  # fmt: skip
        down, down_sid = _home(conn, 4)
        _offline(conn, 4, NOW - timedelta(minutes=20))
    with database.connection() as conn:
        found = health_sweep(conn, NOW, POLICY)
    assert _kinds(found) == [
        (low, "battery_low"), (silent, "device_silent"), (silent, "unknown_status"),
        (down, "gateway_offline"), (down, "unknown_status"),
    ]  # fmt: skip
    assert all(f.resident_id != ok for f in found)
    plug = next(f for f in found if f.finding.kind == "device_silent")
    assert plug.finding.details["subjects"] == [f"sensor:{silent_sid}"]  # not the still motion
    assert plug.finding.reason_ko.startswith("부엌 전력 플러그가 30시간째 신호가 없습니다")
    unknown = next(f for f in found if f.finding.kind == "unknown_status")
    assert unknown.finding.reason_en == "No data: status unknown; a check-in call will confirm"
    with database.connection() as conn:  # the same outage: nothing new
        assert health_sweep(conn, NOW + timedelta(minutes=1), POLICY) == []
    with database.connection() as conn:  # data came back, then stopped again: a new outage
        _state(conn, silent_sid, silent, NOW + timedelta(minutes=2))
        assert health_sweep(conn, NOW + timedelta(minutes=3), POLICY) == []
        later = NOW + timedelta(hours=40)
        conn.execute("UPDATE anbu.gateway SET last_seen_at = %s", (later,))
        for sid in (1, low_sid, down_sid):  # only the silent home is left to judge
            conn.execute("DELETE FROM anbu.sensor_state WHERE sensor_id = %s", (sid,))
        again = health_sweep(conn, later, POLICY)
    assert (silent, "device_silent") in _kinds(again)


def test_many_gateways_down_at_once_are_one_incident(database: Database) -> None:
    with database.connection() as conn:
        homes = [_home(conn, n)[0] for n in range(8)]
        for n in range(6):
            _offline(conn, n, NOW - timedelta(minutes=20, seconds=-20 * n))
    with database.connection() as conn:
        found = health_sweep(conn, NOW, POLICY)
        incidents = conn.execute(
            "SELECT gateways, dong_codes, ended_at, details FROM anbu.incidents"
        ).fetchall()
    assert found == []  # held back by the incident
    assert len(incidents) == 1
    gateways, dongs, ended, details = incidents[0]
    assert gateways == 6 and dongs == ["1111051500"] and ended is None
    assert sorted(details["gateway_ids"]) == [f"gw{n}" for n in range(6)]
    held = {(v["resident_id"], v["kind"]) for v in details["suppressed"].values()}
    assert (homes[0], "gateway_offline") in held and (homes[0], "unknown_status") in held
    with database.connection() as conn:  # power back for most: the incident ends
        conn.execute("UPDATE anbu.gateway SET online = true WHERE id <> 'gw0'")
        after = health_sweep(conn, NOW + timedelta(minutes=30), POLICY)
        ended = conn.execute("SELECT ended_at FROM anbu.incidents").fetchone()
    assert ended is not None and ended[0] == NOW + timedelta(minutes=30)
    assert _kinds(after) == [(homes[0], "gateway_offline"), (homes[0], "unknown_status")]


def test_cadence_is_learned_from_readings(database: Database) -> None:
    with database.connection() as conn:
        rid, pir = _home(conn, 1)
        sid = _sensor(conn, 1, rid, "plug1", SensorKind.POWER, "kitchen", NOW - timedelta(hours=6))
        new = _sensor(conn, 1, rid, "plug2", SensorKind.POWER, "living", NOW - timedelta(hours=6))
        day = NOW.date()
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date - 15, 16)", (day,))
        for k in range(70):  # a plug that reports every 3 hours, for almost 9 days
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value) VALUES (%s, %s, 1)",
                (NOW - timedelta(hours=3 * (k + 1)), sid),
            )
        for k in range(24):  # one installed 2 days ago: every 2 hours so far
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value) VALUES (%s, %s, 1)",
                (NOW - timedelta(hours=2 * (k + 3)), new),
            )
        assert health_sweep(conn, NOW, POLICY) == []  # 6 h is within the plug default (24 h)
        assert learn_cadences(conn, NOW, POLICY) == 2
        rows = conn.execute(
            "SELECT sensor_id, readings, max_gap_s FROM anbu.sensor_cadence ORDER BY sensor_id"
        ).fetchall()
        assert rows == [(sid, 70, 3 * 3600.0), (new, 24, None)]  # 2 days teach no cadence
    with database.connection() as conn:  # learned: silent after 1.5 x 3 h; the new one waits
        found = health_sweep(conn, NOW + timedelta(minutes=1), POLICY)
    assert _kinds(found) == [(rid, "device_silent")]  # the motion sensor is live: not unknown
    assert found[0].finding.details["subjects"] == [f"sensor:{sid}"]
    assert "평소 최대 4시간" in found[0].finding.reason_ko
    assert found[0].finding.details["silent_after_h"] == 4.5
    assert pir != sid


def test_a_gateway_clock_off_is_learned_nightly_and_raised_once(database: Database) -> None:
    """gw1 stamps its readings 40 minutes behind (and delivers an hour's backlog once), gw2 is
    on time (with the same backlog), gw3 is far ahead: its readings are refused as from the
    future. Learned from a day of readings and dead letters, two nights running: gw1's clock
    and gw3's are off, once each for the technician; set right, gw1's is off no more."""
    with database.connection() as conn:
        slow, pir_slow = _home(conn, 1)
        ok, pir_ok = _home(conn, 2)
        fast, _ = _home(conn, 3)
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date - 2, 4)", (NOW.date(),))

        def day(sid: int, end: datetime, lag: timedelta, minutes: tuple[int, ...]) -> None:
            for h in range(1, 13):  # 12 hours, readings at these minutes
                for m in minutes:
                    at = end - timedelta(hours=h, minutes=-m)
                    conn.execute(
                        "INSERT INTO anbu.readings (ts, sensor_id, value, received_at)"
                        " VALUES (%s, %s, 1, %s)",
                        (at - lag - timedelta(seconds=m), sid, at),
                    )

        def refused(gw: str, end: datetime) -> None:
            for h in range(1, 5):
                conn.execute(
                    "INSERT INTO anbu.dead_letter_budget (gateway_id, hour, refused, kept,"
                    " last_reason) VALUES (%s, %s, 3, 3, %s)",
                    (gw, end - timedelta(hours=h), "readings[0]: timestamp ... is in the future"),
                )

        for night in (NOW - timedelta(days=1), NOW):
            day(pir_slow, night, timedelta(minutes=40), (7, 41))
            day(pir_ok, night, timedelta(seconds=2), (7, 41))
            late = night - timedelta(hours=5, minutes=-50)  # an hour's backlog
            for sid in (pir_slow, pir_ok):
                conn.execute(
                    "INSERT INTO anbu.readings (ts, sensor_id, value, received_at)"
                    " VALUES (%s, %s, 1, %s)",
                    (late - timedelta(hours=3), sid, late),
                )
            refused("gw3", night)
            # the first night counts one; the second makes it a finding
            assert learn_clocks(conn, night, POLICY) == (0 if night < NOW else 2)
        rows = conn.execute(
            "SELECT gateway_id, round(lag_s), refused, nights_off, off_since"
            " FROM anbu.gateway_clock ORDER BY gateway_id"
        ).fetchall()
        assert rows == [  # each hour's freshest reading, the backlog's hour too
            ("gw1", 2407, False, 2, NOW),
            ("gw2", 9, False, 0, None),
            ("gw3", 0, True, 2, NOW),
        ]
    with database.connection() as conn:
        found = health_sweep(conn, NOW + timedelta(minutes=1), POLICY)
    assert _kinds(found) == [(slow, "gateway_clock"), (fast, "gateway_clock")]
    by = {f.resident_id: f.finding for f in found}
    assert by[slow].severity.label == "watch"
    assert by[slow].reason_ko.startswith("게이트웨이 시계가 약 40분 늦습니다")
    assert by[slow].details["subjects"] == ["gateway:gw1"]
    assert by[fast].severity.label == "warning"
    assert "측정값이 거부되고 있어" in by[fast].reason_ko
    with database.connection() as conn:  # the next sweep, and the next night: the same outage
        assert health_sweep(conn, NOW + timedelta(minutes=2), POLICY) == []
        assert learn_clocks(conn, NOW + timedelta(minutes=3), POLICY) == 2
        assert health_sweep(conn, NOW + timedelta(minutes=4), POLICY) == []
    with database.connection() as conn:  # gw1's clock set right: the next night, off no more
        later = NOW + timedelta(days=1)
        day(pir_slow, later, timedelta(seconds=3), (7,))
        refused("gw3", later)
        assert learn_clocks(conn, later, POLICY) == 1  # gw3 still refused
        assert conn.execute(
            "SELECT nights_off, off_since FROM anbu.gateway_clock WHERE gateway_id = 'gw1'"
        ).fetchone() == (0, None)
        after = health_sweep(conn, later + timedelta(minutes=1), POLICY)
        assert (slow, "gateway_clock") not in _kinds(after)
    assert ok != slow


def test_a_quiet_sensor_is_a_device_finding_only_while_the_home_is_active(
    database: Database,
) -> None:
    with database.connection() as conn:
        rid, _ = _home(conn, 1)  # living-room motion 5 min ago: someone is at home
        kitchen = _sensor(conn, 1, rid, "pir2", SensorKind.MOTION, "kitchen",
                          NOW - timedelta(hours=30))  # fmt: skip
        door = _sensor(conn, 1, rid, "door1", SensorKind.DOOR, "entrance",
                       NOW - timedelta(days=3))  # fmt: skip
        for s in (kitchen, door):  # weeks of history: the kitchen is never 10 h without motion
            conn.execute(
                """INSERT INTO anbu.sensor_cadence (sensor_id, learned_at, readings, max_gap_s)
                   VALUES (%s, %s, 500, %s)""",
                (s, NOW - timedelta(hours=1), 10 * 3600.0),
            )
        found = health_sweep(conn, NOW, POLICY)
    assert _kinds(found) == [(rid, "device_silent")]
    details = found[0].finding.details
    assert details["subjects"] == [f"sensor:{kitchen}"]  # a door unused for 3 days is not
    assert found[0].finding.reason_ko.startswith("부엌 동작 센서가 30시간째 신호가 없습니다")
    assert details["rule"] == "home_active" and details["cadence"] == "learned"


def test_review_jobs_store_one_finding_per_night(database: Database) -> None:
    with database.connection() as conn:
        rid, sid = _home(conn, 1)
        start = datetime(2026, 10, 20, tzinfo=SEOUL)
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, 40)", (start.date(),))
        rows = []
        for d in range(30):
            base = start + timedelta(days=d)
            for h in (7, 9, 12, 15, 18, 21):
                rows += [
                    (base + timedelta(hours=h), 1.0),
                    (base + timedelta(hours=h, minutes=2), 0.0),
                ]
            if d == 28:  # wandering in the small hours of day 28
                rows += [(base + timedelta(hours=3, minutes=5 * k + m), float(m == 0))
                         for k in range(8) for m in (0, 1)]  # fmt: skip
        for ts, value in rows:
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value) VALUES (%s, %s, %s)",
                (ts, sid, value),
            )
    morning = (start + timedelta(days=28, hours=8)).astimezone(UTC)
    with database.connection() as conn:
        found = night_review(conn, morning, NightPolicy(), SEOUL)
        assert [(f.resident_id, f.finding.kind) for f in found] == [(rid, "night_activity")]
        assert night_review(conn, morning + timedelta(minutes=5), NightPolicy(), SEOUL) == []
        days = routine_change_review(conn, morning, RoutinePolicy(), SEOUL)
        assert [f.finding.kind for f in days] == []  # day 27 was ordinary
        nxt = routine_change_review(conn, morning + timedelta(days=1), RoutinePolicy(), SEOUL)
        assert [f.finding.kind for f in nxt] == ["routine_change"]
        assert "밤(0–6시) 활동" in nxt[0].finding.reason_ko
        again = routine_change_review(
            conn, morning + timedelta(days=1, hours=1), RoutinePolicy(), SEOUL
        )
        assert again == []
