"""The JSON API against real PostgreSQL: tokens, per-dong access, transitions and their audit."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from core.db import Database
from tests.integration.dashboard_support import (
    DONG_A,
    PASSWORD_A,
    PASSWORD_B,
    REASON_KO,
    RESIDENT_NAME,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture


def _events(database: Database, alert_id: int) -> list[tuple[str, str | None, str]]:
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT actor, from_state, to_state FROM anbu.alert_events
               WHERE alert_id = %s ORDER BY id""",
            (alert_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def test_health_and_openapi_need_no_login(town: Town) -> None:
    client = TestClient(town.app)
    assert client.get("/healthz").json() == {"status": "ok", "database": True}
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "anbu 안부"
    assert "/api/v1/alerts/{alert_id}/resolve" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_the_api_refuses_callers_without_a_valid_token(town: Town) -> None:
    client = TestClient(town.app)
    for path in ("/api/v1/me", "/api/v1/alerts", f"/api/v1/alerts/{town.alert_id}"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    forged = {"Authorization": "Bearer eyJjbSI6MX0.forged.signature"}
    assert client.get("/api/v1/alerts", headers=forged).status_code == 401
    response = client.post(f"/api/v1/alerts/{town.alert_id}/acknowledge", json={})
    assert response.status_code == 401


def test_token_login_is_generic_on_failure_and_accepts_form_or_json(town: Town) -> None:
    client = TestClient(town.app)
    wrong = client.post("/api/v1/token", data={"username": town.username_a, "password": "x"})
    unknown = client.post("/api/v1/token", data={"username": "nobody", "password": PASSWORD_A})
    empty = client.post("/api/v1/token", json={})
    assert wrong.status_code == unknown.status_code == empty.status_code == 401
    assert wrong.json() == unknown.json() == empty.json()

    by_json = client.post(
        "/api/v1/token", json={"username": town.username_a, "password": PASSWORD_A}
    )
    assert by_json.status_code == 200 and by_json.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {by_json.json()['access_token']}"}
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["id"] == town.manager_a and me["dong_code"] == DONG_A


def test_each_care_manager_sees_only_their_own_dong(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    b = bearer(client, town.username_b, PASSWORD_B)

    listed = client.get("/api/v1/alerts", headers=a).json()["data"]
    assert [x["id"] for x in listed] == [town.alert_id]
    assert listed[0]["severity"] == "warning" and listed[0]["severity_ko"] == "주의"
    assert listed[0]["state"] == "open" and listed[0]["actions"] == ["acknowledge"]
    assert listed[0]["reason_ko"] == REASON_KO
    detail = client.get(f"/api/v1/alerts/{town.alert_id}", headers=a).json()
    assert detail["resident_name"] == RESIDENT_NAME
    assert [e["to_state"] for e in detail["events"]] == ["open"]

    assert client.get("/api/v1/alerts", headers=b).json()["data"] == []
    assert client.get("/api/v1/alerts?include_resolved=true", headers=b).json()["data"] == []
    hidden = client.get(f"/api/v1/alerts/{town.alert_id}", headers=b)
    assert hidden.status_code == 404 and RESIDENT_NAME not in hidden.text
    ack = client.post(f"/api/v1/alerts/{town.alert_id}/acknowledge", json={}, headers=b)
    assert ack.status_code == 404
    body = {"outcome": "false_alarm"}
    res = client.post(f"/api/v1/alerts/{town.alert_id}/resolve", json=body, headers=b)
    assert res.status_code == 404
    assert _events(database, town.alert_id) == [("system", None, "open")]


def test_acknowledge_then_resolve_is_audited(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/alerts/{town.alert_id}"

    ack = client.post(f"{url}/acknowledge", json={"note": "오후 방문"}, headers=a)
    assert ack.status_code == 200, ack.text
    assert ack.json()["alert"]["state"] == "acknowledged"
    assert ack.json()["alert"]["actions"] == ["resolve"]
    again = client.post(f"{url}/acknowledge", json={}, headers=a)
    assert again.status_code == 409
    refused = again.json()  # who acted first, and when: the care manager acting second is told
    taken_at = datetime.fromisoformat(refused["changed_at"])
    assert refused["state"] == "acknowledged"
    assert refused["changed_by"] == f"care_manager:{town.manager_a}"
    local = taken_at.astimezone(ZoneInfo("Asia/Seoul")).strftime("%Y-%m-%d %H:%M")
    assert f"현재 상태: 담당자 확인함 (담당자 #{town.manager_a}, {local})." in refused["detail"]
    assert (
        f"Current state: acknowledged (care manager #{town.manager_a}, {local})."
        in (refused["detail_en"])
    )

    res = client.post(f"{url}/resolve", json={"outcome": "visited_ok", "note": "건강함"}, headers=a)
    assert res.status_code == 200, res.text
    assert res.json()["alert"]["state"] == "resolved"

    actor = f"care_manager:{town.manager_a}"
    assert _events(database, town.alert_id) == [
        ("system", None, "open"),
        (actor, "open", "acknowledged"),
        (actor, "acknowledged", "resolved"),
    ]
    with database.connection() as conn:
        row = conn.execute(
            "SELECT acknowledged_by, resolved_by, outcome FROM anbu.alerts WHERE id = %s",
            (town.alert_id,),
        ).fetchone()
    assert row == (town.manager_a, town.manager_a, "visited_ok")

    assert client.get("/api/v1/alerts", headers=a).json()["data"] == []
    everything = client.get("/api/v1/alerts?include_resolved=true", headers=a).json()["data"]
    assert [x["id"] for x in everything] == [town.alert_id]


def test_resolving_an_open_alert_is_409_and_changes_nothing(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    url = f"/api/v1/alerts/{town.alert_id}/resolve"
    response = client.post(url, json={"outcome": "visited_ok"}, headers=a)
    assert response.status_code == 409
    assert "할 수 없는 처리" in response.json()["detail"]
    assert client.post(url, json={"outcome": "made_up"}, headers=a).status_code == 422
    assert _events(database, town.alert_id) == [("system", None, "open")]


def test_the_session_cookie_works_but_writes_need_the_csrf_header(town: Town) -> None:
    client = TestClient(town.app)
    login_page(client, town.username_a, PASSWORD_A)
    assert client.get("/api/v1/me").json()["id"] == town.manager_a
    url = f"/api/v1/alerts/{town.alert_id}/acknowledge"
    assert client.post(url, json={}).status_code == 403
    token = client.get("/alerts").text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post(url, json={}, headers={"X-CSRF-Token": token}).status_code == 200


def test_a_deactivated_care_manager_loses_access(town: Town, database: Database) -> None:
    client = TestClient(town.app)
    a = bearer(client, town.username_a, PASSWORD_A)
    with database.connection() as conn:
        conn.execute("UPDATE anbu.care_manager SET active = false WHERE id = %s", (town.manager_a,))
    assert client.get("/api/v1/alerts", headers=a).status_code == 401
    login = client.post("/api/v1/token", data={"username": town.username_a, "password": PASSWORD_A})
    assert login.status_code == 401
