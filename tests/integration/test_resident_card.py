"""The resident card's top (issue 21): how to reach the resident and their recent care record,
for their own dong's care manager only, each read recorded."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

import registry
from calls.checkins import add_plan
from core.db import Database
from core.domain import SensorKind
from dashboards.resident_card import next_checkin
from tests.integration.dashboard_support import (
    DONG_A,
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    Town,
    login_page,
    town,  # noqa: F401 - the fixture
)

SEOUL = ZoneInfo("Asia/Seoul")


def _fill(database: Database, town: Town) -> None:  # noqa: F811
    rid = town.resident_id
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.resident SET birth_year = 1941, address = '서울 종로구 자하문로 1',
                   mobile_phone = '+821012345678', landline_phone = '+8227301234',
                   access_notes = '현관 비밀번호 1234*'
               WHERE id = %s""",
            (rid,),
        )
        for position, name, relation, phone, may in (
            (2, "이둘째", "아들", "+821055556666", False),
            (1, "박첫째", "딸", "+821033334444", True),
        ):
            conn.execute(
                """INSERT INTO anbu.emergency_contact (resident_id, position, name,
                       relationship, phone, may_call) VALUES (%s, %s, %s, %s, %s, %s)""",
                (rid, position, name, relation, phone, may),
            )
        add_plan(conn, rid, [1, 2, 3, 4, 5, 6, 7], time(10, 0))
        at = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
        row = conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status, outcome,
                   created_at, updated_at)
               VALUES ('card-1', %s, 'routine', 'completed', 'ok', %s, %s) RETURNING id""",
            (rid, at, at),
        ).fetchone()
        assert row is not None
        conn.execute(
            """INSERT INTO anbu.call_answers (call_id, question, resident_id, label,
                   confidence, speech, answered_at)
               VALUES (%s, 'meal', %s, 'yes', 1.0, '아침에 죽 먹었어요', %s)""",
            (row[0], rid, at),
        )


def _last_card_read(database: Database, resident_id: int) -> list[str]:
    """The fields the last read of the resident's card recorded."""
    with database.connection() as conn:
        row = conn.execute(
            """SELECT fields FROM anbu.access_log WHERE resident_id = %s AND view = 'card'
               ORDER BY id DESC LIMIT 1""",
            (resident_id,),
        ).fetchone()
    assert row is not None
    return list(row[0])


def test_the_card_shows_how_to_reach_them_and_what_they_said(
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    _fill(database, town)
    client = TestClient(town.app, base_url="http://dashboard.test")
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get(f"/residents/{town.resident_id}")
    assert page.status_code == 200
    html = page.text
    assert "1941년생 (만 84~85세)" in html  # 2026 in Seoul; the birthday is not on file
    assert 'href="tel:+821012345678">010-1234-5678</a>' in html
    assert 'href="tel:+8227301234">02-730-1234</a>' in html
    assert "서울 종로구 자하문로 1" in html
    assert html.index("박첫째") < html.index("이둘째")  # in the order they are called
    assert "연락 동의" in html and "연락 미동의" in html
    assert 'href="tel:+821055556666"' not in html  # no consent: the number, not a call link
    assert "010-5555-6666" in html
    assert "1234*" not in html  # the way in is opened only on a press
    assert f'href="/residents/{town.resident_id}?show=access"' in html
    assert "아침에 죽 먹었어요" in html  # what the resident said on the call
    assert f'href="/alerts/{town.alert_id}"' in html  # the open alert, linked
    row = _last_card_read(database, town.resident_id)
    assert {"phones", "emergency_contacts", "address", "transcripts"} <= set(row)
    assert "access_notes" not in row

    opened = client.get(f"/residents/{town.resident_id}?show=access")
    assert "현관 비밀번호 1234*" in opened.text
    fields = _last_card_read(database, town.resident_id)
    assert "access_notes" in fields


def test_a_district_wide_role_reads_the_answers_not_the_words(
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    _fill(database, town)
    with database.connection() as conn:
        registry.add_care_manager(
            conn, "sup-card", DONG_A, "최감독", "+821000000009", PASSWORD_A, role="supervisor"
        )
    client = TestClient(town.app, base_url="http://dashboard.test")
    login_page(client, "sup-card", PASSWORD_A)
    html = client.get(f"/residents/{town.resident_id}").text
    assert "010-1234-5678" in html  # the card itself
    assert "아침에 죽 먹었어요" not in html  # not the resident's own words
    row = _last_card_read(database, town.resident_id)
    assert "transcripts" not in row


def test_the_card_lists_the_homes_sensors_with_their_last_signal_and_battery(
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    rid = town.resident_id
    heard = OPENED_AT - timedelta(minutes=5)  # the town's clock
    with database.connection() as conn:
        registry.add_gateway(conn, f"gw-card-{rid}", rid)
        door = registry.add_sensor(conn, f"gw-card-{rid}", "door-1", SensorKind.DOOR, "entrance")
        pir = registry.add_sensor(conn, f"gw-card-{rid}", "pir-1", SensorKind.MOTION, "living")
        registry.add_sensor(conn, f"gw-card-{rid}", "plug-1", SensorKind.POWER, "kitchen")
        bed = registry.add_sensor(conn, f"gw-card-{rid}", "pir-2", SensorKind.MOTION, "bedroom")
        registry.add_gateway(conn, f"gw-card2-{rid}", rid)  # down for hours
        plug = registry.add_sensor(conn, f"gw-card2-{rid}", "plug-2", SensorKind.POWER, "living")
        conn.execute(
            """UPDATE anbu.gateway SET online = false, last_seen_at = %s,
                   status_changed_at = %s WHERE id = %s""",
            (heard - timedelta(hours=3), heard - timedelta(hours=3), f"gw-card2-{rid}"),
        )
        long_ago = heard - timedelta(days=10)
        for sensor, battery, online, at in (
            (door, 87.0, True, heard),
            (pir, 12.0, False, heard),
            (bed, None, True, long_ago),
            (plug, None, True, heard - timedelta(hours=3)),
        ):
            conn.execute(
                """INSERT INTO anbu.sensor_state (sensor_id, resident_id, value, since,
                       last_reading_at, battery, online, updated_at)
                   VALUES (%s, %s, 1, %s, %s, %s, %s, %s)""",
                (sensor, rid, at, at, battery, online, at),
            )
    client = TestClient(town.app, base_url="http://dashboard.test")
    login_page(client, town.username_a, PASSWORD_A)
    html = client.get(f"/residents/{rid}").text
    assert f'id="sensor-{door}" data-kind="door" data-state="online"' in html
    assert f'id="sensor-{pir}" data-kind="motion" data-state="offline"' in html
    assert "87%" in html and "12%" in html
    assert html.index(f'id="sensor-{pir}"') < html.index(f'id="sensor-{door}"')  # worst first
    assert 'data-kind="power" data-state="never"' in html
    # silent ten days, while someone came through the door just now: a device finding's rule
    # says nothing (the rest of the home is not active), the card says it is quiet
    assert f'id="sensor-{bed}" data-kind="motion" data-state="' in html
    assert f'id="sensor-{bed}" data-kind="motion" data-state="online"' not in html
    assert f'id="sensor-{plug}" data-kind="power" data-state="gateway_down"' in html
    assert html.index(f'id="sensor-{plug}"') < html.index(f'id="sensor-{pir}"')


def test_a_paused_resident_has_no_next_call_promised(
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    _fill(database, town)
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.resident SET status = 'hospital', status_until = now() + interval '3 days'
               WHERE id = %s""",
            (town.resident_id,),
        )
    client = TestClient(town.app, base_url="http://dashboard.test")
    login_page(client, town.username_a, PASSWORD_A)
    html = client.get(f"/residents/{town.resident_id}").text
    assert "정기 안부전화를 걸지 않습니다" in html


def test_another_dongs_manager_reads_nothing_of_it(
    town: Town,  # noqa: F811
    database: Database,
) -> None:
    _fill(database, town)
    client = TestClient(town.app, base_url="http://dashboard.test")
    login_page(client, town.username_b, PASSWORD_B)
    page = client.get(f"/residents/{town.resident_id}")
    assert page.status_code == 404
    assert "010-1234-5678" not in page.text and "박첫째" not in page.text


def test_the_next_check_in_is_the_nearest_planned_slot_in_seoul() -> None:
    # Monday 2026-12-07 09:30 in Seoul
    now = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
    plans = [([1, 4], time(10, 0)), ([3], time(9, 0))]
    assert next_checkin(plans, now, SEOUL) == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    later = now + timedelta(hours=1)  # 10:30: Monday's slot has passed; Wednesday 09:00
    assert next_checkin(plans, later, SEOUL) == datetime(2026, 12, 9, 0, 0, tzinfo=UTC)
    assert next_checkin([], now, SEOUL) is None
