"""The dong's weekly review on real PostgreSQL: each resident's last 7 days against the 4 weeks
before, the week's findings, own dong only, the API and the page."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

import registry
from core.db import Database
from tests.integration.dashboard_support import (
    DONG_A,
    DONG_B,
    PASSWORD_A,
    PASSWORD_B,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

SEOUL = ZoneInfo("Asia/Seoul")
# the town's clock: 2026-11-22 09:30 in Seoul; the week is 11-16 00:00 to now


def _hour(conn: object, rid: int, local: datetime, activity: int) -> None:
    conn.execute(  # type: ignore[attr-defined]
        """INSERT INTO anbu.activity_hourly (resident_id, hour, activity, motion, door,
                                             power_steps, readings, rooms)
           VALUES (%s, %s, %s, %s, 0, 0, %s, '{living}')""",
        (rid, local, activity, activity, activity + 1),
    )


def _seed(database: Database, town: Town) -> tuple[int, int, int]:
    """The town's resident: 10 a day for four weeks, 4 a day this week and 5 one small hour;
    a newcomer of three days with a routine change; a resident of dong B."""
    with database.connection() as conn:
        newcomer = registry.add_resident(conn, "newcomer", DONG_A, "박새내", "+821011112222")
        other = registry.add_resident(conn, "other-dong", DONG_B, "최다른", "+821033334444")
        first = datetime(2026, 10, 19, 10, 0, tzinfo=SEOUL)
        for d in range(34):  # 10-19 .. 11-21 at 10:00
            day = first + timedelta(days=d)
            _hour(
                conn, town.resident_id, day, 10 if day < datetime(2026, 11, 16, tzinfo=SEOUL) else 4
            )
        _hour(conn, town.resident_id, datetime(2026, 11, 20, 3, 0, tzinfo=SEOUL), 5)
        for d in range(3):
            _hour(conn, newcomer, datetime(2026, 11, 19 + d, 9, 0, tzinfo=SEOUL), 20)
            _hour(conn, other, datetime(2026, 11, 19 + d, 9, 0, tzinfo=SEOUL), 7)
        conn.execute(
            """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko,
                                          reason_en)
               VALUES (%s, 'routine_change', 'watch', %s, '생활 변화', 'routine change')""",
            (newcomer, datetime(2026, 11, 20, 4, 0, tzinfo=SEOUL)),
        )
    return town.resident_id, newcomer, other


def test_the_api_puts_the_week_beside_the_usual_one(town: Town, database: Database) -> None:
    usual, newcomer, other = _seed(database, town)
    client = TestClient(town.app)
    got = client.get("/api/v1/review", headers=bearer(client, town.username_a, PASSWORD_A))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["since"] == "2026-11-16T00:00:00+09:00"
    rows = {r["resident_id"]: r for r in body["data"]}
    assert (body["has_more"], body["next_cursor"]) == (False, None)
    assert list(rows) == [newcomer, usual]  # for review first; dong B is not there
    assert "+821011112222" not in got.text
    new = rows[newcomer]
    assert (new["activity"], new["usual"], new["change"], new["days_with_data"]) == (
        60,
        None,
        None,
        3,
    )
    assert new["findings"] == {"routine_change": 1} and new["for_review"]
    old = rows[usual]
    # 6 days x 4 + 5 in the small hours = 29 against 28 days x 10 / 4 = 70 a week
    assert (old["activity"], old["usual"], old["night"], old["days_with_data"]) == (29, 70.0, 5, 6)
    assert round(old["change"], 3) == round(29 / 70 - 1, 3)
    assert old["findings"] == {"inactivity": 1} and not old["for_review"]

    b = client.get("/api/v1/review", headers=bearer(client, town.username_b, PASSWORD_B)).json()
    assert [(r["resident_id"], r["activity"]) for r in b["data"]] == [(other, 21)]


def test_the_page_lists_the_week_in_korean(town: Town, database: Database) -> None:
    usual, newcomer, _ = _seed(database, town)
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    html = client.get("/review").text
    assert "주간 검토" in html and "최다른" not in html
    assert f'<tr id="review-{newcomer}" class="for-review">' in html
    assert "생활 변화 검토 1" in html and "안부 확인 1" in html
    assert f'data-change="{29 / 70 - 1:.2f}">−59 %' in html
    assert "기준 없음" in html  # the newcomer has no usual week yet
    assert f'href="/residents/{usual}"' in html
    english = client.get("/review?lang=en").text
    assert "Weekly review" in english and "no usual yet" in english
    assert 'href="/review"' in client.get("/alerts").text  # in the navigation


def test_the_review_comes_a_page_at_a_time_of_one_week(town: Town, database: Database) -> None:
    """limit=1: the rows one by one, in the review's order, none twice and none dropped; the
    cursor holds the week (a day on it reads the same week) and serves for a day."""
    usual, newcomer, _ = _seed(database, town)
    client = TestClient(town.app)
    headers = bearer(client, town.username_a, PASSWORD_A)
    first = client.get("/api/v1/review?limit=1", headers=headers).json()
    assert [r["resident_id"] for r in first["data"]] == [newcomer] and first["has_more"]
    clock = town.app.state.deps.clock
    clock.advance(timedelta(hours=20))  # the next page later that day: the same week
    second = client.get(
        "/api/v1/review", params={"limit": 1, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    assert [r["resident_id"] for r in second["data"]] == [usual]
    assert (second["has_more"], second["next_cursor"]) == (False, None)
    assert (second["since"], second["until"]) == (first["since"], first["until"])
    clock.advance(timedelta(hours=5))  # past a day
    late = client.get(
        "/api/v1/review", params={"limit": 1, "cursor": first["next_cursor"]}, headers=headers
    )
    assert late.status_code == 400, late.text
    other_list = client.get("/api/v1/residents?limit=1", headers=headers).json()["next_cursor"]
    wrong = client.get("/api/v1/review", params={"cursor": other_list}, headers=headers)
    assert wrong.status_code == 400
