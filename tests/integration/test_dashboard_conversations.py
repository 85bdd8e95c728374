"""What residents said on their routine conversations, as care managers see it: the queue of
service requests (page and API: accept, link to a provider, close; own dong only; two care
managers at once), the weeks on the resident's card, and the runs the weekly review raises."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

import registry
from alerts import requests
from core.db import Database
from tests.integration.dashboard_support import (
    DONG_B,
    PASSWORD_A,
    PASSWORD_B,
    Town,
    bearer,
    csrf_of,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

SEOUL = ZoneInfo("Asia/Seoul")  # the town's clock: 2026-11-22 09:30 in Seoul (a Sunday)


def _talk(database: Database, rid: int, at: datetime, **answers: str) -> int:
    """A routine call on `at` with these answers (question=label; need words after a '|')."""
    with database.connection() as conn:
        [call_id] = conn.execute(
            """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status, outcome,
                                       created_at, updated_at)
               VALUES (%s, %s, 'routine', 'completed', 'ok', %s, %s) RETURNING id""",
            (f"routine:{rid}:{at.isoformat()}", rid, at, at),
        ).fetchone()  # type: ignore[misc]
        for question, answer in answers.items():
            label, _, words = answer.partition("|")
            conn.execute(
                """INSERT INTO anbu.call_answers (call_id, question, resident_id, label,
                                                  confidence, speech, answered_at)
                   VALUES (%s, %s, %s, %s, 1.0, %s, %s)""",
                (call_id, question, rid, label, words or None, at),
            )
        requests.take_needs(conn, at)
    return int(call_id)


def test_a_stated_need_is_accepted_linked_and_closed_in_the_dong_s_queue(
    town: Town, database: Database
) -> None:
    at = datetime(2026, 11, 20, 10, 0, tzinfo=SEOUL)
    _talk(database, town.resident_id, at, meal="yes", need="meals|반찬 좀 갖다 줘")
    with database.connection() as conn:
        other = registry.add_resident(conn, "other-dong", DONG_B, "최다른", "+821033334444")
    _talk(database, other, at, need="cleaning|청소 좀 해 줘")
    client = TestClient(town.app)
    headers = bearer(client, town.username_a, PASSWORD_A)
    listed = client.get("/api/v1/service-requests", headers=headers).json()
    [mine] = listed["data"]  # dong B's request is not in dong A's queue
    assert (mine["category"], mine["category_ko"], mine["words"], mine["state"]) == (
        "meals",
        "식사·반찬 지원",
        "반찬 좀 갖다 줘",
        "open",
    )
    path = f"/api/v1/service-requests/{mine['id']}"
    assert client.post(f"{path}/link", headers=headers, json={}).status_code == 422  # who?
    accepted = client.post(f"{path}/accept", headers=headers)
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    again = client.post(f"{path}/accept", headers=headers)  # someone already accepted it
    assert again.status_code == 409 and "accepted" in again.text
    linked = client.post(f"{path}/link", headers=headers, json={"provider": "우산동 복지관"})
    assert (linked.json()["state"], linked.json()["provider"]) == ("linked", "우산동 복지관")
    # another dong's care manager cannot see it, nor act on it
    b = bearer(client, town.username_b, PASSWORD_B)
    assert client.post(f"{path}/close", headers=b).status_code == 404
    closed = client.post(f"{path}/close", headers=headers, json={"note": "도시락 배달 시작"})
    assert closed.json()["state"] == "closed" and closed.json()["note"] == "도시락 배달 시작"
    assert client.get("/api/v1/service-requests", headers=headers).json()["data"] == []
    every = client.get("/api/v1/service-requests?state=all", headers=headers).json()["data"]
    assert [r["state"] for r in every] == ["closed"]


def test_the_queue_page_in_korean_with_its_forms(town: Town, database: Database) -> None:
    at = datetime(2026, 11, 21, 10, 0, tzinfo=SEOUL)
    _talk(database, town.resident_id, at, need="escort|병원 갈 때 같이 가 줘")
    browser = TestClient(town.app)
    login_page(browser, town.username_a, PASSWORD_A)
    page = browser.get("/requests")
    assert page.status_code == 200
    assert (
        "연계 요청" in page.text
        and "병원 동행" in page.text
        and "병원 갈 때 같이 가 줘" in page.text
    )
    assert "escort" not in page.text.replace('data-state="open"', "")  # no raw codes
    [(rid,)] = _ids(database)
    token = csrf_of(page.text)
    done = browser.post(f"/requests/{rid}/accept", data={"csrf_token": token},
                        follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    forged = browser.post(f"/requests/{rid}/close", data={"csrf_token": "x"})
    assert forged.status_code == 403
    assert "수락" in browser.get("/requests").text


def _ids(database: Database) -> list[tuple[int]]:
    with database.connection() as conn:
        return conn.execute("SELECT id FROM anbu.service_requests").fetchall()


def test_weeks_of_answers_on_the_card_and_runs_raised_for_the_weekly_review(
    town: Town, database: Database
) -> None:
    rid = town.resident_id
    for days_ago, mood, meal in ((16, "good", "yes"), (9, "so_so", "no"), (2, "bad", "no")):
        at = datetime(2026, 11, 22, 10, 0, tzinfo=SEOUL) - timedelta(days=days_ago)
        _talk(database, rid, at, meal=meal, mood=mood, pain="no", sleep="good")
    client = TestClient(town.app)
    review = client.get("/api/v1/review", headers=bearer(client, town.username_a, PASSWORD_A))
    [row] = [r for r in review.json()["data"] if r["resident_id"] == rid]
    # meals skipped twice in a row, mood going down over three weeks: for the review
    assert row["talk"] == {"meal": "run", "mood": "worse"} and row["for_review"]
    browser = TestClient(town.app)
    login_page(browser, town.username_a, PASSWORD_A)
    assert "식사 못 드심 2회 연속" in browser.get("/review").text
    card = browser.get(f"/residents/{rid}").text
    assert "안부 대화 (최근 8주)" in card
    assert "못 드심" in card and "안 좋음" in card and "보통" in card
