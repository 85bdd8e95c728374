"""Service accounts (issue 22): machine credentials made and revoked by a district admin, through
the real app over a real PostgreSQL.

A token reads only its own dongs and takes only what its scopes grant; what it writes is recorded
under its id, what it reads of a resident goes to the access log under it; revoking is at once;
only the token's SHA-256 is kept; the principal behind it can never log in.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

import registry
from core.db import Database
from tests.integration.dashboard_support import (
    DONG_A,
    DONG_B,
    PASSWORD_A,
    Town,
    bearer,
    login_page,
    town,
)

__all__ = ["town"]  # the fixture
ADMIN_PASSWORD = "admin-pass-9z"
OTHER_DISTRICT = "1168064000"  # 강남구 (another district)


@pytest.fixture
def admin(town: Town, database: Database, unique: str) -> dict[str, str]:
    with database.connection() as conn:
        registry.add_care_manager(
            conn, f"adm{unique}", DONG_A, "박관리", "+821000000009", ADMIN_PASSWORD, role="admin"
        )
        registry.add_dong(conn, OTHER_DISTRICT, "역삼1동", "강남구")
    return bearer(TestClient(town.app), f"adm{unique}", ADMIN_PASSWORD)


def _make(client: TestClient, admin: dict[str, str], scopes: list[str], dongs: list[str]) -> Any:
    made = client.post(
        "/api/v1/service-accounts",
        json={"name": "통합정보시스템", "scopes": scopes, "dongs": dongs},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    return made.json()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_reads_only_its_dongs_and_takes_only_what_its_scopes_grant(
    town: Town, admin: dict[str, str], database: Database
) -> None:
    client = TestClient(town.app)
    elsewhere = _auth(_make(client, admin, ["alerts:read"], [DONG_B])["token"])
    assert client.get("/api/v1/alerts", headers=elsewhere).json()["data"] == []
    assert client.get(f"/api/v1/alerts/{town.alert_id}", headers=elsewhere).status_code == 404

    made = _make(client, admin, ["alerts:read", "events:read"], [DONG_A])
    assert made["scopes"] == ["alerts:read", "events:read"] and made["revoked_at"] is None
    own = _auth(made["token"])
    me = client.get("/api/v1/me", headers=own).json()
    assert (me["id"], me["role"], me["dongs"]) == (made["id"], "service", [DONG_A])
    listed = client.get("/api/v1/alerts", headers=own).json()["data"]
    assert [a["id"] for a in listed] == [town.alert_id]
    assert client.get(f"/api/v1/alerts/{town.alert_id}", headers=own).status_code == 200
    assert client.get("/api/v1/events", headers=own).status_code == 200
    # not granted: acting on alerts, residents, the review, the card, webhooks, accounts
    acted = client.post(f"/api/v1/alerts/{town.alert_id}/acknowledge", json={}, headers=own)
    assert acted.status_code == 403
    for path in ("/api/v1/logout", "/api/v1/password"):  # a person's own login: none here
        assert client.post(path, json={}, headers=own).status_code == 403, path
    for path in (
        "/api/v1/residents",
        f"/api/v1/residents/{town.resident_id}",
        "/api/v1/review",
        "/api/v1/webhooks",
        "/api/v1/service-accounts",
    ):
        assert client.get(path, headers=own).status_code == 403, path
    assert client.get("/alerts", headers=own, follow_redirects=False).status_code != 200
    with database.connection() as conn:  # its read of the alert is in the access log, as its
        rows = conn.execute(
            "SELECT care_manager_id FROM anbu.access_log WHERE resident_id = %s",
            (town.resident_id,),
        ).fetchall()
    assert (made["id"],) in rows


def test_what_an_account_writes_is_recorded_under_it(
    town: Town, admin: dict[str, str], database: Database
) -> None:
    client = TestClient(town.app)
    made = _make(client, admin, ["alerts:read", "alerts:write"], [DONG_A])
    url = f"/api/v1/alerts/{town.alert_id}"
    ack = client.post(f"{url}/acknowledge", json={}, headers=_auth(made["token"]))
    assert ack.status_code == 200, ack.text
    assert ack.json()["alert"]["acknowledged_by"] == made["id"]
    person = bearer(client, town.username_a, PASSWORD_A)
    again = client.post(f"{url}/acknowledge", json={}, headers=person)
    assert again.status_code == 409
    assert again.json()["changed_by"] == f"care_manager:{made['id']}"
    # the care manager is told a city system took it, never that a colleague did
    assert "통합정보시스템(연계 시스템)" in again.json()["detail"]
    assert "담당자 #" not in again.json()["detail"]
    assert "통합정보시스템(connected system)" in again.json()["detail_en"]
    with database.connection() as conn:
        name = conn.execute(
            "SELECT display_name FROM anbu.care_manager WHERE id = %s", (made["id"],)
        ).fetchone()
    assert name == ("통합정보시스템",)  # who took it, as people read it


def test_revoking_is_at_once_and_only_the_token_s_hash_is_kept(
    town: Town, admin: dict[str, str], database: Database
) -> None:
    client = TestClient(town.app)
    made = _make(client, admin, ["alerts:read"], [DONG_A])
    token = made["token"]
    assert client.get("/api/v1/alerts", headers=_auth(token)).status_code == 200
    account_id, secret = token.removeprefix("anbu_sa_").split("_", 1)
    forged = f"anbu_sa_{account_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    for bad in (forged, f"anbu_sa_{account_id}_", "anbu_sa_x_y", f"anbu_sa_{account_id}"):
        assert client.get("/api/v1/alerts", headers=_auth(bad)).status_code == 401, bad
    with database.connection() as conn:
        kept = conn.execute(
            "SELECT s::text, token_hash, last_used_at IS NOT NULL, uses"
            " FROM anbu.service_account s WHERE care_manager_id = %s",
            (made["id"],),
        ).fetchone()
        principal = conn.execute(
            "SELECT m::text FROM anbu.care_manager m WHERE id = %s", (made["id"],)
        ).fetchone()
    assert kept is not None and principal is not None
    assert bytes(kept[1]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in kept[0] and secret not in principal[0]
    assert kept[2] and kept[3] == 1  # used: the minute noted once

    revoked = client.post(f"/api/v1/service-accounts/{made['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/api/v1/alerts", headers=_auth(token)).status_code == 401
    listed = client.get("/api/v1/service-accounts", headers=admin).json()["data"]
    (row,) = [a for a in listed if a["id"] == made["id"]]
    assert row["revoked_at"] is not None and "token" not in row
    assert row["last_used_at"] is not None


def test_only_a_district_admin_makes_accounts_and_only_over_its_district(
    town: Town, admin: dict[str, str]
) -> None:
    client = TestClient(town.app)
    manager = bearer(client, town.username_a, PASSWORD_A)
    body = {"name": "x", "scopes": ["alerts:read"], "dongs": [DONG_A]}
    assert client.post("/api/v1/service-accounts", json=body, headers=manager).status_code == 403
    outside = client.post(
        "/api/v1/service-accounts", json={**body, "dongs": [DONG_A, OTHER_DISTRICT]}, headers=admin
    )
    assert outside.status_code == 422 and outside.json()["code"] == "service_account_dongs"
    unknown = client.post(
        "/api/v1/service-accounts", json={**body, "scopes": ["alerts:admin"]}, headers=admin
    )
    assert unknown.status_code == 422
    assert client.post("/api/v1/service-accounts/999999/revoke", headers=admin).status_code == 404


def test_the_principal_behind_an_account_can_never_log_in_or_be_made_active(
    town: Town, admin: dict[str, str], database: Database
) -> None:
    client = TestClient(town.app)
    made = _make(client, admin, ["alerts:read"], [DONG_A])
    with database.connection() as conn:
        row = conn.execute(
            "SELECT username, active FROM anbu.care_manager WHERE id = %s", (made["id"],)
        ).fetchone()
    assert row is not None and row[1] is False
    for password in ("", made["token"], "통합정보시스템"):
        login = client.post("/api/v1/token", data={"username": row[0], "password": password})
        assert login.status_code in (401, 422)
    with pytest.raises(psycopg.errors.CheckViolation), database.connection() as conn:
        conn.execute("UPDATE anbu.care_manager SET active = true WHERE id = %s", (made["id"],))


def test_residents_write_changes_settings_in_its_dongs_and_the_change_is_its_own(
    town: Town, admin: dict[str, str], database: Database, unique: str
) -> None:
    client = TestClient(town.app)
    writer = _auth(_make(client, admin, ["residents:write"], [DONG_A])["token"])
    url = f"/api/v1/residents/{town.resident_id}/settings"
    body = {"quiet_hours": {"start": "22:00", "end": "06:00"}}
    changed = client.patch(url, json=body, headers=writer)
    assert changed.status_code == 200, changed.text
    elsewhere = _auth(_make(client, admin, ["residents:write"], [DONG_B])["token"])
    assert client.patch(url, json=body, headers=elsewhere).status_code == 404
    with database.connection() as conn:
        who = conn.execute(
            "SELECT DISTINCT care_manager_id FROM anbu.resident_changes WHERE resident_id = %s",
            (town.resident_id,),
        ).fetchall()
        account = conn.execute(
            "SELECT care_manager_id FROM anbu.service_account WHERE dongs = %s", ([DONG_A],)
        ).fetchone()
    assert account is not None and who == [account]


def test_the_access_log_names_a_service_account_as_a_system(
    town: Town, admin: dict[str, str], unique: str
) -> None:
    client = TestClient(town.app)
    made = _make(client, admin, ["alerts:read"], [DONG_A])
    assert client.get(f"/api/v1/alerts/{town.alert_id}", headers=_auth(made["token"])).is_success
    items = client.get("/api/v1/access-log", headers=admin).json()["items"]
    (read,) = [i for i in items if i["care_manager_id"] == made["id"]]
    assert (read["care_manager_username"], read["service"]) == ("통합정보시스템", True)
    browser = TestClient(town.app)
    login_page(browser, f"adm{unique}", ADMIN_PASSWORD)
    page = browser.get("/access-log")
    assert page.status_code == 200 and "통합정보시스템(연계 시스템)" in page.text


def test_a_use_that_cannot_be_noted_does_not_cost_the_read(
    town: Town, admin: dict[str, str], database: Database
) -> None:
    """As on a read-only server: the note of its use is refused; the read is answered."""
    client = TestClient(town.app)
    token = _make(client, admin, ["alerts:read"], [DONG_A])["token"]
    with database.connection() as conn:
        conn.execute(
            """CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'read-only' USING ERRCODE = 'read_only_sql_transaction';
               END $$"""
        )
        conn.execute(
            """CREATE TRIGGER refuse BEFORE UPDATE ON anbu.service_account
               FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()"""
        )
    try:
        assert client.get("/api/v1/alerts", headers=_auth(token)).status_code == 200
    finally:
        with database.connection() as conn:
            conn.execute("DROP TRIGGER refuse ON anbu.service_account")
    with database.connection() as conn:
        used = conn.execute("SELECT last_used_at FROM anbu.service_account").fetchone()
    assert used == (None,)
