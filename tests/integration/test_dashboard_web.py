"""The care managers' pages against real PostgreSQL: login, per-dong access, forms, CSRF, language."""

from __future__ import annotations

from fastapi.testclient import TestClient

from alerts.models import STATE_LABELS
from core.db import Database
from core.domain import AlertState
from tests.integration.dashboard_support import (
    PASSWORD_A,
    PASSWORD_B,
    REASON_EN,
    REASON_KO,
    RESIDENT_NAME,
    Town,
    csrf_of,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture


def _state(database: Database, alert_id: int) -> str:
    with database.connection() as conn:
        row = conn.execute("SELECT state FROM anbu.alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_login_page_is_korean_by_default_and_english_on_request(town: Town) -> None:
    client = TestClient(town.app)
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="ko">' in page.text and "비밀번호" in page.text
    assert "Password" not in page.text

    english = client.get("/login?lang=en")
    assert '<html lang="en">' in english.text and "Password" in english.text
    assert "비밀번호" not in english.text
    # The choice is remembered in the session.
    assert "Password" in client.get("/login").text
    assert "비밀번호" in client.get("/login?lang=ko").text


def test_wrong_password_and_unknown_user_get_the_same_401(town: Town) -> None:
    client = TestClient(town.app)
    bodies = []
    for username, password in ((town.username_a, "wrong"), ("nobody", PASSWORD_A)):
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert "아이디 또는 비밀번호가 올바르지 않습니다" in response.text
        bodies.append(response.text.replace(f'value="{username}"', ""))
    assert bodies[0] == bodies[1]  # nothing tells which part was wrong
    assert client.get("/alerts", follow_redirects=False).status_code == 303


def test_pages_need_a_login(town: Town) -> None:
    client = TestClient(town.app)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    response = client.get(f"/alerts/{town.alert_id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/alerts/{town.alert_id}"


def test_login_returns_to_the_page_asked_for_but_never_off_site(town: Town) -> None:
    client = TestClient(town.app)
    for target, expected in ((f"/alerts/{town.alert_id}", f"/alerts/{town.alert_id}"),
                             ("//evil.example/x", "/"),
                             ("https://evil.example/", "/"),
                             ("", "/")):  # fmt: skip
        client.cookies.clear()
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={"username": town.username_a, "password": PASSWORD_A, "csrf_token": token,
                  "next": target},
            follow_redirects=False,
        )  # fmt: skip
        assert response.headers["location"] == expected


def test_dong_a_sees_its_alert_in_korean_then_english(town: Town) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    page = client.get("/alerts")
    assert page.status_code == 200
    html = page.text
    assert f'href="/alerts/{town.alert_id}"' in html
    assert "주의" in html and STATE_LABELS[AlertState.OPEN][0] in html
    assert REASON_KO in html
    assert "2026-11-22 09:30" in html  # opened 00:30 UTC, shown in Asia/Seoul
    assert '<meta http-equiv="refresh" content="30">' in html
    assert RESIDENT_NAME not in html  # the list shows homes, not names

    english = client.get("/alerts?lang=en").text
    assert "Open alerts" in english and REASON_EN in english and "warning" in english
    assert "진행 중인 알림" not in english


def test_detail_shows_timeline_and_offers_only_legal_actions(town: Town) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    html = client.get(f"/alerts/{town.alert_id}").text
    assert RESIDENT_NAME in html
    assert REASON_KO in html  # the opening event's reason in the timeline
    assert "시스템" in html
    assert f'action="/alerts/{town.alert_id}/acknowledge"' in html
    assert f'action="/alerts/{town.alert_id}/resolve"' not in html  # open: resolve is illegal


def test_acknowledge_then_resolve_through_the_forms(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    detail = f"/alerts/{town.alert_id}"
    token = csrf_of(client.get(detail).text)
    response = client.post(
        f"{detail}/acknowledge", data={"csrf_token": token, "note": "방문 예정"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == detail
    assert _state(database, town.alert_id) == "acknowledged"

    html = client.get(detail).text
    assert f'action="{detail}/resolve"' in html and f'action="{detail}/acknowledge"' not in html
    assert f"담당자 #{town.manager_a}" in html and "방문 예정" in html

    response = client.post(
        f"{detail}/resolve",
        data={"csrf_token": csrf_of(html), "outcome": "visited_ok", "note": ""},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _state(database, town.alert_id) == "resolved"
    assert f'href="{detail}"' not in client.get("/alerts").text


def test_another_dong_gets_404_and_none_of_the_data(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_b, PASSWORD_B)
    listing = client.get("/alerts").text
    assert f"/alerts/{town.alert_id}" not in listing and REASON_KO not in listing

    detail = client.get(f"/alerts/{town.alert_id}")
    assert detail.status_code == 404
    assert RESIDENT_NAME not in detail.text and REASON_KO not in detail.text
    assert "알림을 찾을 수 없습니다" in detail.text

    token = csrf_of(listing)
    for action, extra in (("acknowledge", {}), ("resolve", {"outcome": "false_alarm"})):
        response = client.post(
            f"/alerts/{town.alert_id}/{action}", data={"csrf_token": token, **extra}
        )
        assert response.status_code == 404
    assert _state(database, town.alert_id) == "open"


def test_form_posts_without_the_csrf_token_are_refused(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    url = f"/alerts/{town.alert_id}/acknowledge"
    assert client.post(url, data={"note": "x"}).status_code == 403
    assert client.post(url, data={"csrf_token": "forged"}).status_code == 403
    assert _state(database, town.alert_id) == "open"

    fresh = TestClient(town.app)
    response = fresh.post("/login", data={"username": town.username_a, "password": PASSWORD_A})
    assert response.status_code == 403


def test_resolving_an_open_alert_is_409_in_korean(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    token = csrf_of(client.get("/alerts").text)
    response = client.post(
        f"/alerts/{town.alert_id}/resolve", data={"csrf_token": token, "outcome": "visited_ok"}
    )
    assert response.status_code == 409
    assert "지금 상태에서는 할 수 없는 처리입니다" in response.text
    assert _state(database, town.alert_id) == "open"


def test_logout_ends_the_session(town: Town) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    assert client.get("/alerts", follow_redirects=False).status_code == 200
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/alerts").text)})
    assert client.get("/alerts", follow_redirects=False).status_code == 303
