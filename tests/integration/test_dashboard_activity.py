"""A resident's week, hour by hour, from the hourly activity summary: the API and the page, own
dong only, local times, and what the week held (findings)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from core.db import Database
from tests.integration.dashboard_support import (
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    RESIDENT_NAME,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

PHONE_A = "+821099990000"  # the town's resident in dong A


def _hours(database: Database, resident_id: int) -> None:
    """Three summarised hours: two this week (one of them only the fridge), one long ago."""
    rows = [
        (datetime(2026, 11, 21, 22, 0, tzinfo=UTC), 12, 9, 2, 1, 20, ["bedroom", "kitchen"]),
        (datetime(2026, 11, 21, 17, 0, tzinfo=UTC), 0, 0, 0, 0, 4, []),  # 02:00 KST, no one
        (datetime(2026, 11, 10, 1, 0, tzinfo=UTC), 30, 30, 0, 0, 30, ["living"]),
    ]
    with database.connection() as conn:
        for hour, act, motion, door, steps, readings, rooms in rows:
            conn.execute(
                """INSERT INTO anbu.activity_hourly (resident_id, hour, activity, motion, door,
                                                     power_steps, readings, rooms)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (resident_id, hour, act, motion, door, steps, readings, rooms),
            )


def test_the_api_gives_the_week_in_local_hours_with_its_findings(
    town: Town, database: Database
) -> None:
    _hours(database, town.resident_id)
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    got = client.get(f"/api/v1/residents/{town.resident_id}/activity", headers=a)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["resident"]["display_name"] == RESIDENT_NAME
    assert PHONE_A not in got.text
    # now is 2026-11-22 09:30 KST: seven local days from 11-16 00:00
    assert body["since"] == "2026-11-16T00:00:00+09:00"
    assert [(h["hour"], h["activity"], h["readings"]) for h in body["hours"]] == [
        ("2026-11-22T02:00:00+09:00", 0, 4),
        ("2026-11-22T07:00:00+09:00", 12, 20),
    ]
    assert body["hours"][1]["rooms"] == ["bedroom", "kitchen"]
    assert [(f["kind"], f["severity"]) for f in body["findings"]] == [("inactivity", "warning")]
    assert datetime.fromisoformat(body["findings"][0]["raised_at"]) == OPENED_AT

    one_day = client.get(f"/api/v1/residents/{town.resident_id}/activity?days=1", headers=a)
    assert [h["hour"][:13] for h in one_day.json()["hours"]] == ["2026-11-22T02", "2026-11-22T07"]
    assert (
        client.get(f"/api/v1/residents/{town.resident_id}/activity?days=0", headers=a).status_code
        == 422
    )
    long_ago = client.get(f"/api/v1/residents/{town.resident_id}/activity?days=31", headers=a)
    assert len(long_ago.json()["hours"]) == 3


def test_another_dongs_care_manager_gets_404(town: Town, database: Database) -> None:
    _hours(database, town.resident_id)
    client = TestClient(town.app)
    b = bearer(client, town.username_b, PASSWORD_B)
    got = client.get(f"/api/v1/residents/{town.resident_id}/activity", headers=b)
    assert got.status_code == 404
    assert "bedroom" not in got.text


def test_the_page_shows_the_week_as_a_grid_in_korean(town: Town, database: Database) -> None:
    _hours(database, town.resident_id)
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get(f"/residents/{town.resident_id}")
    assert page.status_code == 200
    html = page.text
    assert RESIDENT_NAME in html and PHONE_A not in html
    assert "최근 7일 생활 기록" in html
    assert 'data-hour="2026-11-22T07" data-activity="12"' in html
    assert 'data-hour="2026-11-22T02" data-activity="0"' in html  # data, but no one: not blank
    assert 'data-hour="2026-11-22T05" data-activity=""' in html  # no reading at all
    assert "14시간 동안 움직임이 없습니다" in html  # the week's finding
    english = client.get(f"/residents/{town.resident_id}?lang=en").text
    assert "Last 7 days" in english
    other = TestClient(town.app)
    login_page(other, town.username_b, PASSWORD_B)
    assert other.get(f"/residents/{town.resident_id}").status_code == 404
    assert client.get("/residents").text.count(f'href="/residents/{town.resident_id}"') == 1
