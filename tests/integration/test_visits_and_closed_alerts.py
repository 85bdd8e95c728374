"""Two limits on the real app and PostgreSQL: a home's visiting page (address, door code) is
there only while the service runs, and opens the access notes alone; a resolved alert keeps
its care manager."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

import registry
from core.crypto import Keyring
from core.db import Database
from dashboards.deps import Deps
from registry.secrecy import seal_notes
from tests.integration.dashboard_support import OPENED_AT, bearer, csrf_of, login_page
from tests.integration.enrolment_support import (
    DONG_A,
    NOW,
    PASSWORD,
    District,
    district,
    rows,
)

__all__ = ["district"]  # the fixture


def _staff(database: Database, d: District, unique: str) -> dict[str, str]:
    """A technician and a supervisor in dong A beside the fixture's admin (dong A)."""
    names = {"technician": f"tech{unique}", "supervisor": f"sup{unique}"}
    with database.connection() as conn:
        for role, username in names.items():
            registry.add_care_manager(
                conn, username, DONG_A, "최현장", "+821000000021", PASSWORD, role=role
            )
    return names | {"admin": d.admin}


def _seal_access_only(database: Database, d: District, resident_id: int) -> None:
    """Address and door code sealed with the app's key; a health note no key opens (so a
    page that opened it would fail rather than quietly show nothing)."""
    deps: Deps = d.app.state.deps
    ring = Keyring.from_settings(deps.settings)
    _, access, kid = seal_notes(ring, None, "현관 비밀번호 4321*")
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.resident SET address = '서울 종로구 자하문로 7', notes_sealed = %s,
                      access_notes_sealed = %s, sealed_key_id = %s WHERE id = %s""",
            (b"\x00" * 40, access, kid, resident_id),
        )


def test_the_visiting_page_opens_only_the_door_code_and_closes_when_the_service_ends(
    district: District, database: Database, unique: str
) -> None:
    staff = _staff(database, district, unique)
    rid = district.resident_a
    _seal_access_only(database, district, rid)
    for role, username in staff.items():
        client = TestClient(district.app)
        got = client.get(
            f"/api/v1/residents/{rid}/site", headers=bearer(client, username, PASSWORD)
        )
        assert got.status_code == 200, (role, got.text)
        assert (got.json()["address"], got.json()["access_notes"]) == (
            "서울 종로구 자하문로 7",
            "현관 비밀번호 4321*",
        )
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.resident SET status = 'ended', ended_at = %s, end_reason = 'moved'
                WHERE id = %s""",
            (NOW, rid),
        )
    reads = rows(database, "SELECT count(*) FROM anbu.access_log WHERE resident_id = %s", (rid,))
    for role, username in staff.items():
        client = TestClient(district.app)
        got = client.get(
            f"/api/v1/residents/{rid}/site", headers=bearer(client, username, PASSWORD)
        )
        assert got.status_code == 404, (role, got.text)
        assert "4321" not in got.text and "자하문로" not in got.text
        browser = TestClient(district.app)
        login_page(browser, username, PASSWORD)
        page = browser.get(f"/sites/{rid}")
        assert page.status_code == 404, role
        assert "4321" not in page.text and "자하문로" not in page.text
    # nothing was read, so nothing is recorded
    assert (
        rows(database, "SELECT count(*) FROM anbu.access_log WHERE resident_id = %s", (rid,))
        == reads
    )


def _alert(database: Database, resident_id: int, state: str) -> int:
    with database.connection() as conn:
        found: Any = conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                                        resolved_at, outcome)
               VALUES (%s, 'inactivity', 'warning', %s, %s, %s, %s, %s) RETURNING id""",
            (
                resident_id, state, OPENED_AT, OPENED_AT,
                OPENED_AT if state == "resolved" else None,
                "visited_ok" if state == "resolved" else None,
            ),
        ).fetchone()  # fmt: skip
    return int(found[0])


def test_a_resolved_alert_keeps_its_care_manager(
    district: District, database: Database, unique: str
) -> None:
    staff = _staff(database, district, unique)
    client = TestClient(district.app)
    headers = bearer(client, staff["supervisor"], PASSWORD)
    to = {"care_manager_id": district.admin_id, "note": "휴가"}
    open_alert = _alert(database, district.resident_a, "acknowledged")
    done = client.post(f"/api/v1/alerts/{open_alert}/reassign", json=to, headers=headers)
    assert done.status_code == 200, done.text  # an alert still open can change hands
    closed = _alert(database, district.resident_a, "resolved")
    refused = client.post(f"/api/v1/alerts/{closed}/reassign", json=to, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == "이미 종결된 알림은 담당자를 바꿀 수 없습니다."
    assert refused.json()["detail_en"] == "A resolved alert's care manager cannot be changed."
    assert rows(database, "SELECT assigned_to FROM anbu.alerts WHERE id = %s", (closed,)) == [
        (None,)
    ]
    assert rows(
        database, "SELECT count(*) FROM anbu.alert_events WHERE alert_id = %s", (closed,)
    ) == [(0,)]
    # the page's form answers the same, in Korean
    browser = TestClient(district.app)
    login_page(browser, staff["supervisor"], PASSWORD)
    page = browser.get(f"/alerts/{open_alert}")
    posted = browser.post(
        f"/alerts/{closed}/reassign",
        data={"care_manager_id": str(district.admin_id), "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert posted.status_code == 409
    assert "이미 종결된 알림은 담당자를 바꿀 수 없습니다." in posted.text
