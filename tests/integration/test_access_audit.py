"""Who looked at whom: every read of a resident by a person leaves one access_log row; only
supervisors list them, and only for their district. On the real app and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from core.clock import VirtualClock
from core.config import Settings
from core.crypto import Keyring, new_key
from core.db import Database
from dashboards.app import create_app
from registry.access_log import Reader
from registry.residents_export import export_residents
from registry.secrecy import set_notes
from tests.integration.dashboard_support import (
    OPENED_AT,
    RecordingTelephony,
    bearer,
    login_page,
    seed_alert,
)

DONG_A, DONG_B, DONG_C = "1111051500", "1111053000", "1114055000"  # 종로구, 종로구, 중구
PASSWORD = "audit-pass-7Q2"
HEALTH_NOTE = "당뇨, 인슐린 주사 중"
ACCESS_NOTE = "현관 비밀번호 4821*"


@dataclass(frozen=True)
class World:
    app: FastAPI
    db: Database
    keyring: Keyring
    manager_a: int
    supervisor_b: int  # supervises 종로구 (dongs A and B) from dong B
    supervisor_c: int  # supervises 중구 (dong C)
    resident_a: int
    resident_b: int
    resident_c: int
    alert_a: int
    usernames: dict[int, str]


@pytest.fixture
def world(database: Database, db_url: str, unique: str) -> Iterator[World]:
    keyring = Keyring.of(new_key())
    names: dict[int, str] = {}
    with database.connection() as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        registry.add_dong(conn, DONG_B, "사직동", "종로구")
        registry.add_dong(conn, DONG_C, "소공동", "중구")
        for key, dong, role in (
            ("manager_a", DONG_A, "manager"),
            ("supervisor_b", DONG_B, "supervisor"),
            ("supervisor_c", DONG_C, "admin"),
        ):
            username = f"{key}-{unique}"
            cid = registry.add_care_manager(
                conn, username, dong, "담당자", "+821000000001", PASSWORD, role
            )
            names[cid] = username
        home = f"home-{{}}-{unique}"
        residents = [
            registry.add_resident(
                conn,
                home.format(d),
                d,
                "홍길동",
                "+821099990000",
                notes=HEALTH_NOTE,
                keyring=keyring,
            )
            for d in (DONG_A, DONG_B, DONG_C)
        ]
        conn.execute(
            "UPDATE anbu.resident SET external_id = 'X-' || id WHERE id = ANY(%s)", (residents,)
        )
    with database.connection() as conn:
        set_notes(conn, residents[0], keyring, HEALTH_NOTE, ACCESS_NOTE)
    clock = VirtualClock(OPENED_AT)
    alert_a = seed_alert(database, clock, residents[0], "inactivity")
    settings = Settings(
        database_url=db_url, session_secret=f"test-secret-{unique}-0123456789abcdef",
        data_key=_key_text(keyring),
    )  # fmt: skip
    service = AlertService(database, RecordingTelephony(), EscalationPolicy(), clock, "http://t")
    app = create_app(database, settings, service)
    ids = list(names)
    yield World(app, database, keyring, *ids, *residents, alert_a, names)


def _key_text(keyring: Keyring) -> str:
    return keyring.keys[keyring.current_id].hex()


def _log(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        cur = conn.execute(
            """SELECT id, at, care_manager_id, actor, resident_id, dong_code, view, fields,
                      request_id, client FROM anbu.access_log ORDER BY id"""
        )
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _db_now(db: Database) -> Any:
    with db.connection() as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def test_each_read_path_writes_one_row_with_who_what_and_where(world: World) -> None:
    w = world
    api = TestClient(w.app)
    headers = bearer(api, w.usernames[w.manager_a], PASSWORD)
    page = TestClient(w.app)
    login_page(page, w.usernames[w.manager_a], PASSWORD)
    reads: list[tuple[TestClient, str, dict[str, str], str, list[str]]] = [
        (api, f"/api/v1/residents/{w.resident_a}", headers, "card",
         ["name", "care_settings", "health_notes", "access_notes"]),
        (api, f"/api/v1/residents/{w.resident_a}/activity", headers, "activity",
         ["activity", "findings", "outings"]),
        (api, f"/api/v1/alerts/{w.alert_a}", headers, "alert",
         ["name", "timeline", "calls", "transcripts"]),
        (page, f"/residents/{w.resident_a}", {}, "card", ["name", "activity", "findings", "conversation"]),
        (page, f"/alerts/{w.alert_a}", {}, "alert", ["name", "timeline", "calls", "transcripts"]),
    ]  # fmt: skip
    for n, (client, path, auth, view, fields) in enumerate(reads):
        before = _db_now(w.db)
        response = client.get(path, headers={**auth, "X-Request-ID": f"req-{n}"})
        assert response.status_code == 200, (path, response.text)
        log = _log(w.db)
        assert len(log) == n + 1, path
        row = log[-1]
        assert row["at"] >= before  # the database's clock, not the app's virtual one
        assert (row["care_manager_id"], row["actor"], row["resident_id"], row["dong_code"]) == (
            w.manager_a, None, w.resident_a, DONG_A,
        )  # fmt: skip
        assert (row["view"], row["fields"], row["request_id"]) == (view, fields, f"req-{n}")
        assert row["client"] == "testclient"
    card = api.get(f"/api/v1/residents/{w.resident_a}", headers=headers).json()
    assert (card["health_notes"], card["access_notes"]) == (HEALTH_NOTE, ACCESS_NOTE)
    # a malformed request id is replaced by one of ours
    api.get(f"/api/v1/residents/{w.resident_a}", headers={**headers, "X-Request-ID": "a b\n"})
    assert _log(w.db)[-1]["request_id"] not in (None, "a b\n")


def test_refused_reads_and_lists_write_no_row(world: World) -> None:
    w = world
    api = TestClient(w.app)
    headers = bearer(api, w.usernames[w.manager_a], PASSWORD)
    for path in (
        f"/api/v1/residents/{w.resident_b}",  # another dong's resident
        f"/api/v1/residents/{w.resident_b}/activity",
    ):
        assert api.get(path, headers=headers).status_code == 404
    assert api.get(f"/api/v1/residents/{w.resident_a}").status_code == 401
    assert api.get("/api/v1/residents", headers=headers).status_code == 200
    assert _log(w.db) == []


def test_a_plain_manager_cannot_list_the_log(world: World) -> None:
    w = world
    api = TestClient(w.app)
    headers = bearer(api, w.usernames[w.manager_a], PASSWORD)
    api.get(f"/api/v1/residents/{w.resident_a}", headers=headers)
    refused = api.get("/api/v1/access-log", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("열람 기록은")
    page = TestClient(w.app)
    login_page(page, w.usernames[w.manager_a], PASSWORD)
    response = page.get("/access-log")
    assert response.status_code == 403
    assert "구 통합돌봄 담당자와 구 시스템 관리자만" in response.text
    assert api.get("/api/v1/access-log").status_code == 401


def _read_everything(w: World) -> None:
    """The dong A manager reads A's card twice; each supervisor reads a resident of theirs."""
    for cid, rid in ((w.manager_a, w.resident_a), (w.manager_a, w.resident_a),
                     (w.supervisor_b, w.resident_b), (w.supervisor_c, w.resident_c)):  # fmt: skip
        api = TestClient(w.app)
        headers = bearer(api, w.usernames[cid], PASSWORD)
        assert api.get(f"/api/v1/residents/{rid}", headers=headers).status_code == 200


def test_a_supervisor_sees_only_their_district_filtered_and_paged(world: World) -> None:
    w = world
    _read_everything(w)
    api = TestClient(w.app)
    headers = bearer(api, w.usernames[w.supervisor_b], PASSWORD)
    body = api.get("/api/v1/access-log", headers=headers).json()
    seen = [(i["resident_id"], i["care_manager_id"], i["dong_code"]) for i in body["items"]]
    assert seen == [
        (w.resident_b, w.supervisor_b, DONG_B),
        (w.resident_a, w.manager_a, DONG_A),
        (w.resident_a, w.manager_a, DONG_A),
    ]
    assert body["next_before"] is None
    assert "홍길동" not in str(body) and HEALTH_NOTE not in str(body)
    assert body["items"][1]["care_manager_username"] == w.usernames[w.manager_a]
    # filters stay inside the district: resident C's reads are not theirs to see
    by_resident = api.get(
        "/api/v1/access-log", params={"resident_id": w.resident_c}, headers=headers
    ).json()
    assert by_resident["items"] == []
    by_manager = api.get(
        "/api/v1/access-log", params={"care_manager_id": w.manager_a}, headers=headers
    ).json()
    assert {i["care_manager_id"] for i in by_manager["items"]} == {w.manager_a}
    assert len(by_manager["items"]) == 2
    # keyset paging: one per page, no overlap, nothing missed
    ids, before = [], None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"before": before} if before else {})
        page = api.get("/api/v1/access-log", params=params, headers=headers).json()
        ids += [i["id"] for i in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert ids == [i["id"] for i in body["items"]]
    # the other district's admin sees only resident C's read
    other = TestClient(w.app)
    other_headers = bearer(other, w.usernames[w.supervisor_c], PASSWORD)
    items = other.get("/api/v1/access-log", headers=other_headers).json()["items"]
    assert [(i["resident_id"], i["dong_code"]) for i in items] == [(w.resident_c, DONG_C)]
    # the page: Korean first, the same rows
    browser = TestClient(w.app)
    login_page(browser, w.usernames[w.supervisor_b], PASSWORD)
    html = browser.get("/access-log").text
    assert "열람 기록" in html and "대상자 카드" in html
    assert html.count('id="access-') == 3
    empty_form = browser.get("/access-log?resident_id=&care_manager_id=")  # as a form sends it
    assert empty_form.status_code == 200 and empty_form.text.count('id="access-') == 3
    assert browser.get(f"/access-log?resident_id={w.resident_a}").text.count('id="access-') == 2
    paged = browser.get("/access-log?limit=2").text
    assert paged.count('id="access-') == 2 and "이전 기록 더 보기" in paged
    assert "Access log" in browser.get("/access-log?lang=en").text


def test_the_log_is_append_only(world: World, db_url: str) -> None:
    w = world
    _read_everything(w)
    with psycopg.connect(db_url) as conn:
        for statement in (
            "UPDATE anbu.access_log SET care_manager_id = NULL, actor = 'x'",
            "DELETE FROM anbu.access_log",
            "TRUNCATE anbu.access_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    assert len(_log(w.db)) == 4


def test_exporting_notes_records_each_resident_for_the_actor(world: World) -> None:
    w = world
    with w.db.connection() as conn:
        data, count = export_residents(
            conn, include_notes=True, keyring=w.keyring, reader=Reader(actor="cli:tester")
        )
        export_residents(conn, include_notes=False, reader=Reader(actor="cli:tester"))
    assert count == 3 and ACCESS_NOTE in data.decode("utf-8-sig")
    log = _log(w.db)
    assert sorted(r["resident_id"] for r in log) == sorted(
        [w.resident_a, w.resident_b, w.resident_c]
    )
    assert {(r["actor"], r["view"], tuple(r["fields"])) for r in log} == {
        ("cli:tester", "export", ("health_notes", "access_notes"))
    }
