"""Residents' care settings on real PostgreSQL: status, quiet hours and caps through the API and
the page, per-dong access, refusals in Korean first, and an audit row for every change."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import registry
from core.crypto import Keyring, new_key
from core.db import Database
from dashboards.i18n import text
from tests.integration.dashboard_support import (
    DONG_B,
    OPENED_AT,
    PASSWORD_A,
    PASSWORD_B,
    RESIDENT_NAME,
    Town,
    bearer,
    csrf_of,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture

PHONE_A = "+821099990000"  # the town's resident in dong A
NOTES_A = "당뇨, 보행 보조기 사용"
NAME_B, PHONE_B, NOTES_B = "박영희", "+821055554444", "고혈압"
SEOUL_TOMORROW_6PM = "2026-11-23T18:00:00+09:00"  # the app's clock stands at OPENED_AT
RESIDENT_FIELDS = {
    "id", "home", "display_name", "dong_code", "status", "status_ko", "status_until",
    "suppresses_inactivity", "quiet_start", "quiet_end",
    "watch_h_max", "warning_h_max", "critical_h_max",
}  # fmt: skip


@pytest.fixture
def resident_b(town: Town, database: Database, unique: str) -> int:
    """A resident in dong B; dong A's resident gets health notes. Both have phones."""
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.resident SET notes = %s WHERE id = %s", (NOTES_A, town.resident_id)
        )
        return registry.add_resident(
            conn, f"homeb-{unique}", DONG_B, NAME_B, PHONE_B, notes=NOTES_B,
            keyring=Keyring.of(new_key()),
        )  # fmt: skip


def _settings(database: Database, resident_id: int) -> tuple[Any, ...]:
    with database.connection() as conn:
        row = conn.execute(
            """SELECT status, status_until, quiet_start, quiet_end, watch_h_max,
                      warning_h_max, critical_h_max
               FROM anbu.resident WHERE id = %s""",
            (resident_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _changes(database: Database, resident_id: int) -> list[tuple[Any, ...]]:
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT care_manager_id, at, field, old_value, new_value
               FROM anbu.resident_changes WHERE resident_id = %s ORDER BY id""",
            (resident_id,),
        ).fetchall()
    return [tuple(r) for r in rows]


UNTOUCHED = ("active", None, None, None, None, None, None)


def test_the_list_shows_only_the_own_dong_and_never_phone_or_notes(
    town: Town, resident_b: int
) -> None:
    client = TestClient(town.app)
    a = client.get("/api/v1/residents", headers=bearer(client, town.username_a, PASSWORD_A))
    assert a.status_code == 200
    (mine,) = a.json()["data"]
    assert set(mine) == RESIDENT_FIELDS
    assert mine["id"] == town.resident_id and mine["display_name"] == RESIDENT_NAME
    assert mine["status"] == "active" and mine["status_ko"] == "관리 중"
    assert mine["suppresses_inactivity"] is False and mine["critical_h_max"] is None
    for secret in (PHONE_A, NOTES_A, NAME_B, PHONE_B, NOTES_B, "99990000"):
        assert secret not in a.text

    b = client.get("/api/v1/residents", headers=bearer(client, town.username_b, PASSWORD_B))
    assert [r["id"] for r in b.json()["data"]] == [resident_b]
    for secret in (RESIDENT_NAME, PHONE_A, NOTES_A, PHONE_B, NOTES_B):
        assert secret not in b.text

    assert client.get("/api/v1/residents").status_code == 401


def test_away_with_an_end_date_is_stored_and_audited(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/residents/{town.resident_id}/status"
    until = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    response = client.post(url, json={"status": "away", "until": SEOUL_TOMORROW_6PM}, headers=a)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "away" and body["status_ko"] == "부재"
    assert datetime.fromisoformat(body["status_until"]) == until
    assert body["suppresses_inactivity"] is True
    assert _settings(database, town.resident_id)[:2] == ("away", until)
    manager = town.manager_a
    assert _changes(database, town.resident_id) == [
        (manager, OPENED_AT, "status", "active", "away"),
        (manager, OPENED_AT, "status_until", None, "2026-11-23T09:00:00+00:00"),
    ]

    # The same again changes nothing and records nothing.
    again = client.post(url, json={"status": "away", "until": SEOUL_TOMORROW_6PM}, headers=a)
    assert again.status_code == 200 and len(_changes(database, town.resident_id)) == 2

    # Hospital, until a time given without an offset: local (Seoul) time.
    hospital = client.post(
        url, json={"status": "hospital", "until": "2026-12-01T12:00:00"}, headers=a
    )
    assert hospital.status_code == 200, hospital.text
    later = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert _settings(database, town.resident_id)[:2] == ("hospital", later)

    # Back to active: the end date is cleared.
    active = client.post(url, json={"status": "active"}, headers=a)
    assert active.status_code == 200 and active.json()["status_until"] is None
    assert _settings(database, town.resident_id) == UNTOUCHED
    assert [c[2:] for c in _changes(database, town.resident_id)[2:]] == [
        ("status", "away", "hospital"),
        ("status_until", "2026-11-23T09:00:00+00:00", "2026-12-01T03:00:00+00:00"),
        ("status", "hospital", "active"),
        ("status_until", "2026-12-01T03:00:00+00:00", None),
    ]


def test_away_without_an_end_date_and_other_bad_statuses_are_422(
    town: Town, database: Database
) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/residents/{town.resident_id}/status"

    response = client.post(url, json={"status": "away"}, headers=a)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["detail"], problem["detail_en"]) == (
        "부재·입원은 종료 예정 시각이 필요합니다.",
        "Away and hospital need an end date.",
    )
    assert (problem["status"], problem["code"], problem["instance"]) == (422, "until_required", url)
    refused = {
        "until_past": {"status": "hospital", "until": "2026-11-21T09:00:00+09:00"},
        "until_too_far": {"status": "away", "until": "2027-06-01T00:00:00+09:00"},
        "bad_status": {"status": "ended"},
        "until_with_active": {"status": "active", "until": SEOUL_TOMORROW_6PM},
    }
    for code, body in refused.items():
        response = client.post(url, json=body, headers=a)
        assert response.status_code == 422, code
        assert response.json()["detail_en"] == text("en", f"invalid_{code}"), code

    for unreadable in (
        {"status": "away", "until": "next week"},
        {"status": "away", "until": SEOUL_TOMORROW_6PM, "phone": "+821000000000"},
        {},
    ):
        response = client.post(url, json=unreadable, headers=a)
        assert response.status_code == 422
        assert response.json()["detail"] == "입력값을 읽을 수 없습니다. 형식을 확인해 주세요."
        assert response.json()["errors"]
    assert _settings(database, town.resident_id) == UNTOUCHED
    assert _changes(database, town.resident_id) == []


def test_another_dongs_resident_is_404_and_nothing_changes(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    b = bearer(client, town.username_b, PASSWORD_B)
    writes = {
        "status": {"status": "away", "until": SEOUL_TOMORROW_6PM},
        "quiet-hours": {"start": "22:00", "end": "07:00"},
        "levels": {"watch_h_max": 4, "warning_h_max": 8, "critical_h_max": 12},
    }
    for path, body in writes.items():
        hidden = client.post(f"/api/v1/residents/{town.resident_id}/{path}", json=body, headers=b)
        missing = client.post(f"/api/v1/residents/987654321/{path}", json=body, headers=b)
        assert hidden.status_code == missing.status_code == 404, path
        seen, absent = hidden.json(), missing.json()
        # the same answer but for the path the client asked: nothing tells them apart
        assert seen.pop("instance") != absent.pop("instance")
        assert (
            seen
            == absent
            == {
                "type": "urn:anbu:problem:not_found",
                "title": "Not Found",
                "status": 404,
                "code": "not_found",
                "detail": "대상자를 찾을 수 없습니다.",
                "detail_en": "Resident not found.",
                "errors": [],
            }
        )
        assert RESIDENT_NAME not in hidden.text
    assert _settings(database, town.resident_id) == UNTOUCHED
    assert _changes(database, town.resident_id) == []


def test_caps_must_rise_then_are_set_and_cleared(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/residents/{town.resident_id}/levels"

    falling = client.post(
        url, json={"watch_h_max": 8, "warning_h_max": 6, "critical_h_max": 20}, headers=a
    )
    assert falling.status_code == 422
    assert falling.json()["detail"] == "상한은 관심 ≤ 주의 ≤ 심각 순서여야 합니다."
    for bad in (0.5, 30, -2):
        response = client.post(
            url, json={"watch_h_max": None, "warning_h_max": None, "critical_h_max": bad},
            headers=a,
        )  # fmt: skip
        assert response.status_code == 422
        assert response.json()["detail"] == "각 상한은 1시간 이상 24시간 이하여야 합니다."
    missing = client.post(url, json={"critical_h_max": 12}, headers=a)  # all three, always
    assert missing.status_code == 422
    assert _settings(database, town.resident_id) == UNTOUCHED

    caps = {"watch_h_max": 4, "warning_h_max": 7.5, "critical_h_max": 12}
    response = client.post(url, json=caps, headers=a)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in caps} == {
        "watch_h_max": 4.0, "warning_h_max": 7.5, "critical_h_max": 12.0,
    }  # fmt: skip
    assert _settings(database, town.resident_id)[4:] == (4.0, 7.5, 12.0)

    response = client.post(
        url, json={"watch_h_max": None, "warning_h_max": None, "critical_h_max": 7.3}, headers=a
    )
    assert response.status_code == 200 and response.json()["critical_h_max"] == 7.3
    cleared = {"watch_h_max": None, "warning_h_max": None, "critical_h_max": None}
    response = client.post(url, json=cleared, headers=a)
    assert response.status_code == 200
    assert _settings(database, town.resident_id) == UNTOUCHED
    assert [c[2:] for c in _changes(database, town.resident_id)] == [
        ("watch_h_max", None, "4"),
        ("warning_h_max", None, "7.5"),
        ("critical_h_max", None, "12"),
        ("watch_h_max", "4", None),
        ("warning_h_max", "7.5", None),
        ("critical_h_max", "12", "7.3"),
        ("critical_h_max", "7.3", None),
    ]


def test_quiet_hours_are_set_refused_when_half_or_too_long_and_cleared(
    town: Town, database: Database
) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/residents/{town.resident_id}/quiet-hours"

    response = client.post(url, json={"start": "22:00", "end": "07:00"}, headers=a)
    assert response.status_code == 200, response.text
    assert (response.json()["quiet_start"], response.json()["quiet_end"]) == (
        "22:00:00",
        "07:00:00",
    )
    assert _settings(database, town.resident_id)[2:4] == (time(22, 0), time(7, 0))

    for body, words in (
        ({"start": "22:00", "end": None}, "Quiet hours need both a start and an end, or neither."),
        ({"start": "20:00", "end": "10:00"}, "Quiet hours may last at most 12 hours."),
        ({"start": "09:00", "end": "09:00"}, "Quiet hours cannot start and end at the same time."),
    ):
        response = client.post(url, json=body, headers=a)
        assert response.status_code == 422 and response.json()["detail_en"] == words
    assert _settings(database, town.resident_id)[2:4] == (time(22, 0), time(7, 0))

    response = client.post(url, json={"start": None, "end": None}, headers=a)
    assert response.status_code == 200 and response.json()["quiet_start"] is None
    assert [c[2:] for c in _changes(database, town.resident_id)] == [
        ("quiet_start", None, "22:00"),
        ("quiet_end", None, "07:00"),
        ("quiet_start", "22:00", None),
        ("quiet_end", "07:00", None),
    ]


def test_an_ended_resident_is_not_changed(town: Town, database: Database) -> None:
    with database.connection() as conn:
        conn.execute("UPDATE anbu.resident SET status = 'ended' WHERE id = %s", (town.resident_id,))
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    response = client.post(
        f"/api/v1/residents/{town.resident_id}/status", json={"status": "active"}, headers=a
    )
    assert response.status_code == 409
    assert response.json()["detail"] == "서비스가 종료된 대상자는 변경할 수 없습니다."
    assert _settings(database, town.resident_id)[0] == "ended"
    assert _changes(database, town.resident_id) == []


def test_registry_writes_are_scoped_to_the_managers_dong(town: Town, database: Database) -> None:
    with (
        database.connection() as conn,
        pytest.raises(registry.ResidentNotFound, match=str(town.resident_id)),
    ):
        registry.set_level_caps(conn, town.resident_id, None, None, 12, town.manager_b)
    with database.connection() as conn:
        changed = registry.set_quiet_hours(
            conn, town.resident_id, time(21, 30), time(6, 0), town.manager_a
        )
    assert changed == ["quiet_start", "quiet_end"]
    first, _ = _changes(database, town.resident_id)
    assert first[0] == town.manager_a  # no clock given: the wall clock's time
    assert abs(first[1] - datetime.now(UTC)) < timedelta(minutes=1)


def test_the_session_cookie_writes_need_the_csrf_header(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/residents/{town.resident_id}/status"
    body = {"status": "away", "until": SEOUL_TOMORROW_6PM}
    assert client.get("/api/v1/residents").status_code == 200
    assert client.post(url, json=body).status_code == 403
    assert _changes(database, town.resident_id) == []
    token = csrf_of(client.get("/residents").text)
    assert client.post(url, json=body, headers={"X-CSRF-Token": token}).status_code == 200


def test_openapi_documents_the_residents_endpoints(town: Town) -> None:
    paths = TestClient(town.app).get("/openapi.json").json()["paths"]
    for path in ("status", "quiet-hours", "levels"):
        assert "post" in paths[f"/api/v1/residents/{{resident_id}}/{path}"]
    assert "get" in paths["/api/v1/residents"]


# -- the page ---------------------------------------------------------------------------------


def test_the_page_lists_the_dong_in_korean_and_sets_status_through_its_form(
    town: Town, database: Database, resident_b: int
) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get("/residents")
    assert page.status_code == 200
    html = page.text
    assert "대상자 관리" in html and RESIDENT_NAME in html and "관리 중" in html
    assert f'action="/residents/{town.resident_id}/status"' in html
    assert f'action="/residents/{resident_b}/status"' not in html
    for secret in (PHONE_A, NOTES_A, NAME_B, PHONE_B, NOTES_B):
        assert secret not in html
    assert 'href="/residents"' in client.get("/alerts").text  # reachable from the alerts

    response = client.post(
        f"/residents/{town.resident_id}/status",
        data={"csrf_token": csrf_of(html), "status": "away", "until": "2026-11-23T18:00"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/residents"
    until = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 18:00 in Seoul
    assert _settings(database, town.resident_id)[:2] == ("away", until)
    html = client.get("/residents").text
    assert "부재" in html and "2026-11-23 18:00" in html and "활동 미감지 알림 중지 중" in html
    assert 'value="2026-11-23T18:00"' in html

    english = client.get("/residents?lang=en").text
    assert "Residents" in english and "inactivity alerts paused" in english
    assert "대상자 관리" not in english

    # Active from the same form, its date field still filled in: the end date is cleared.
    response = client.post(
        f"/residents/{town.resident_id}/status",
        data={"csrf_token": csrf_of(html), "status": "active", "until": "2026-11-23T18:00"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _settings(database, town.resident_id) == UNTOUCHED


def test_the_form_refuses_away_without_an_end_date_in_korean(
    town: Town, database: Database
) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    token = csrf_of(client.get("/residents").text)
    url = f"/residents/{town.resident_id}/status"
    response = client.post(url, data={"csrf_token": token, "status": "away", "until": ""})
    assert response.status_code == 422
    assert "부재·입원은 종료 예정 시각이 필요합니다." in response.text
    assert RESIDENT_NAME in response.text  # the list again, with the error above it
    garbled = client.post(url, data={"csrf_token": token, "status": "away", "until": "내일"})
    assert garbled.status_code == 422 and "종료 예정 시각을 읽을 수 없습니다." in garbled.text
    assert client.post(url, data={"status": "active"}).status_code == 403  # no CSRF token
    assert _settings(database, town.resident_id) == UNTOUCHED
    assert _changes(database, town.resident_id) == []


def test_the_page_gives_another_dong_404_and_changes_nothing(
    town: Town, database: Database
) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_b, PASSWORD_B)
    listing = client.get("/residents").text
    assert RESIDENT_NAME not in listing and "등록된 대상자가 없습니다." in listing
    response = client.post(
        f"/residents/{town.resident_id}/status",
        data={"csrf_token": csrf_of(listing), "status": "away", "until": "2026-11-23T18:00"},
    )
    assert response.status_code == 404 and "대상자를 찾을 수 없습니다." in response.text
    assert RESIDENT_NAME not in response.text
    assert _settings(database, town.resident_id) == UNTOUCHED
    assert TestClient(town.app).get("/residents", follow_redirects=False).status_code == 303


def test_away_through_the_form_closes_the_open_inactivity_alert_but_not_a_help_request(
    town: Town, database: Database, resident_b: int
) -> None:
    from tests.integration.dashboard_support import seed_alert

    clock = town.app.state.deps.clock
    help_request = seed_alert(database, clock, town.resident_id, "help_request")
    elsewhere = seed_alert(database, clock, resident_b, "inactivity")  # dong B's, untouched
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    assert f'href="/alerts/{town.alert_id}"' in client.get("/alerts").text
    html = client.get("/residents").text
    assert "열려 있던 활동 미감지 알림은 종결되고" in html  # the page says what setting away does

    response = client.post(
        f"/residents/{town.resident_id}/status",
        data={"csrf_token": csrf_of(html), "status": "away", "until": "2026-11-23T18:00"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    listing = client.get("/alerts").text
    assert f'href="/alerts/{town.alert_id}"' not in listing
    assert f'href="/alerts/{help_request}"' in listing
    detail = client.get(f"/alerts/{town.alert_id}").text
    assert "2026-11-23 18:00까지 부재로 상태를 바꿈: 종결" in detail
    assert "status set to away by care manager until 2026-11-23 18:00 KST: closed" in detail
    with database.connection() as conn:
        states = dict(
            conn.execute(
                "SELECT id, state || ':' || coalesce(outcome, '') FROM anbu.alerts"
            ).fetchall()
        )
    assert states == {
        town.alert_id: "resolved:away",
        help_request: "open:",
        elsewhere: "open:",
    }

    # Back to active from the same form: nothing reopens.
    response = client.post(
        f"/residents/{town.resident_id}/status",
        data={"csrf_token": csrf_of(html), "status": "active", "until": ""},
        follow_redirects=False,
    )
    assert response.status_code == 303
    with database.connection() as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM anbu.alerts WHERE state <> 'resolved'"
        ).fetchone() or (None,)
    assert count == 2
