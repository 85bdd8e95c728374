"""What an admin's enrolment tools must not give away, on the real app and PostgreSQL: a dry run
is no oracle for sealed notes, nor for case numbers of other districts; an export opened in a
spreadsheet runs no formula; a care manager deactivated since does not block an edit."""

from __future__ import annotations

import csv
import io
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

import registry
from core.crypto import DataKeyMissing, Keyring, key_id, new_key, parse_key
from core.db import Database
from registry.residents_export import export_residents
from registry.residents_import import import_residents
from registry.secrecy import NOTE_COLUMNS, open_notes
from tests.integration.dashboard_support import bearer, login_page
from tests.integration.enrolment_support import (
    DONG_A,
    DONG_C,
    NOW,
    PASSWORD,
    District,
    district,
    rows,
)

__all__ = ["district"]  # the fixture

RESIDENT: dict[str, Any] = {
    "external_id": "OR-1",
    "display_name": "김순자",
    "birth_year": 1941,
    "address": "서울 종로구 자하문로 1",
    "dong": DONG_A,
    "mobile_phone": "010-2345-6789",
    "health_notes": "고혈압 약 복용",
    "access_notes": "현관 비밀번호 1234",
}
HEADER = "사례번호,성명,출생연도,주소,행정동,휴대전화,건강메모"
UNUSABLE = "사례번호: 이 사례번호(또는 가구ID)는 사용할 수 없습니다. 다른 번호인지 확인해 주세요."


def _client(d: District, who: str) -> tuple[TestClient, dict[str, str]]:
    client = TestClient(d.app)
    return client, bearer(client, who, PASSWORD)


def _guess(note: str) -> bytes:
    return f"{HEADER}\nOR-1,김순자,1941,서울 종로구 자하문로 1,{DONG_A},010-2345-6789,{note}\n".encode()


def _reads(database: Database) -> list[tuple[Any, ...]]:
    return rows(database, "SELECT view, fields, actor FROM anbu.access_log ORDER BY id")


def test_a_dry_run_never_tells_whether_a_guessed_note_is_right(
    district: District, database: Database, db_url: str
) -> None:
    client, admin = _client(district, district.admin)
    made = client.post("/api/v1/residents", json=RESIDENT, headers=admin)
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    reads = _reads(database)
    answers = []
    for guess in ("고혈압 약 복용", "당뇨"):  # the right note, and a wrong one
        dry = client.post(
            "/api/v1/residents/import?dry_run=true", content=_guess(guess), headers=admin
        )
        assert dry.status_code == 200, dry.text
        answers.append({k: dry.json()[k] for k in ("created", "updated", "unchanged", "errors")})
    assert answers[0] == answers[1] == {"created": 0, "updated": 1, "unchanged": 0, "errors": []}
    assert _reads(database) == reads  # and nothing was opened to answer
    # nothing is opened at all: a dry run needs no data key, where opening a note would
    with psycopg.connect(db_url) as conn:
        report = import_residents(conn, _guess("당뇨"), actor="cli:t", dry_run=True, now=NOW)
    assert (report.updated, report.errors) == (1, ())
    # applied, the note sent replaces the kept one; the access note, not in the file, is kept
    applied = client.post(
        "/api/v1/residents/import?dry_run=false", content=_guess("고혈압 약 복용"), headers=admin
    )
    assert applied.json()["written"] is True
    assert _reads(database) == reads  # sealed again without being opened
    card = client.get(f"/api/v1/residents/{rid}/enrolment", headers=admin).json()
    assert (card["health_notes"], card["access_notes"]) == ("고혈압 약 복용", "현관 비밀번호 1234")
    audit = rows(
        database,
        """SELECT old_value, new_value FROM anbu.resident_changes
            WHERE resident_id = %s AND field = 'health_notes'""",
        (rid,),
    )
    assert audit == [("(봉인)", "8자")]  # not even the old note's length
    # an edit by a person compares (the read recorded): a PATCH that leaves notes alone
    # writes no note again
    patched = client.patch(f"/api/v1/residents/{rid}", json={"address": "사직로 9"}, headers=admin)
    assert patched.status_code == 200, patched.text
    assert len(rows(database, "SELECT 1 FROM anbu.resident_changes WHERE resident_id = %s "
                              "AND field LIKE '%%notes'", (rid,))) == 1  # fmt: skip


def test_a_kept_note_under_an_old_key_is_opened_only_with_a_recorded_read(db_url: str) -> None:
    old, new = new_key(), new_key()
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        conn.commit()
        both = f"{HEADER},출입메모\nK-1,김순자,1941,주소,{DONG_A},010-2345-6789,당뇨,현관 1234\n"
        import_residents(conn, both.encode(), actor="cli:t", now=NOW, keyring=Keyring.of(old))
        with_dry_key_missing = import_residents(
            conn, _guess("x").replace(b"OR-1", b"K-1"), actor="cli:t", dry_run=True, now=NOW
        )
        assert with_dry_key_missing.updated == 1
        rotated = Keyring.of(new, [old])
        health_only = f"{HEADER}\nK-1,김순자,1941,주소,{DONG_A},010-2345-6789,고혈압\n".encode()
        report = import_residents(conn, health_only, actor="cli:kim", now=NOW, keyring=rotated)
        assert report.written
        cur = conn.execute(f"SELECT {NOTE_COLUMNS} FROM anbu.resident")
        names = [d.name for d in cur.description or ()]
        stored = dict(zip(names, cur.fetchone() or (), strict=True))
        assert stored["sealed_key_id"] == key_id(parse_key(new))
        notes = open_notes(Keyring.of(new), stored)
        assert (notes.health_notes, notes.access_notes) == ("고혈압", "현관 1234")
        reads = conn.execute("SELECT view, fields, actor FROM anbu.access_log").fetchall()
        assert reads == [("notes", ["access_notes"], "cli:kim")]
        with pytest.raises(DataKeyMissing):  # a real run that seals a note needs the key
            import_residents(conn, health_only, actor="cli:t", now=NOW)


def test_a_case_number_elsewhere_or_of_an_ended_service_gets_one_answer(
    district: District, database: Database
) -> None:
    jung_client, jung = _client(district, district.other_admin)
    elsewhere = {**RESIDENT, "external_id": "JUNG-1", "dong": DONG_C}
    assert jung_client.post("/api/v1/residents", json=elsewhere, headers=jung).status_code == 201
    client, admin = _client(district, district.admin)
    ended = {**RESIDENT, "external_id": "END-1"}
    made = client.post("/api/v1/residents", json=ended, headers=admin)
    assert made.status_code == 201, made.text
    with database.connection() as conn:
        conn.execute(
            """UPDATE anbu.resident SET status = 'ended', ended_at = %s, end_reason = 'moved'
                WHERE id = %s""",
            (NOW, made.json()["id"]),
        )
    answers = []
    for case in ("JUNG-1", "END-1"):
        line = f"{case},홍길동,1940,서울 종로구 1,{DONG_A},010-1111-2222,\n"
        dry = client.post(
            "/api/v1/residents/import?dry_run=true", content=f"{HEADER}\n{line}".encode(),
            headers=admin,
        )  # fmt: skip
        assert dry.status_code == 200, dry.text
        answers.append(dry.json()["errors"])
        assert "다른 구" not in dry.text and "another district" not in dry.text
    assert answers[0] == answers[1]
    (error,) = answers[0]
    assert (error["field"], error["message"]) == ("external_id", UNUSABLE)
    assert error["message_en"].startswith("external_id: this external id (or home) cannot be used")
    # a new resident with another district's case number: the same words, 409
    posted = client.post("/api/v1/residents", json={**RESIDENT, "external_id": "JUNG-1"},
                         headers=admin)  # fmt: skip
    assert posted.status_code == 409
    assert posted.json()["detail"] == UNUSABLE and "다른 구" not in posted.text
    assert rows(database, "SELECT dong_code FROM anbu.resident WHERE external_id = 'JUNG-1'") == [
        (DONG_C,)
    ]


def test_an_export_runs_no_formula_in_a_spreadsheet_and_reads_back_unchanged(
    db_url: str,
) -> None:
    ring = Keyring.of(new_key())
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG_A, "청운효자동", "종로구")
        conn.commit()
        data = (
            f"{HEADER},출입메모\n"
            f'F-1,"=HYPERLINK(""http://x"")",1941,@SUM(1+1),{DONG_A},010-2345-6789,'
            f'"- 고혈압\n- 당뇨",+82 현관\n'
        )
        assert import_residents(conn, data.encode(), actor="cli:t", now=NOW, keyring=ring).written
        for notes in (False, True):
            out, _ = export_residents(conn, include_notes=notes, keyring=ring)
            text = out.decode("utf-8-sig")
            cells = [c for line in list(csv.reader(io.StringIO(text)))[1:] for c in line]
            assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
            assert "'=HYPERLINK" in text and "'@SUM(1+1)" in text and "010-2345-6789" in text
            assert ("'- 고혈압" in text and "'+82 현관" in text) is notes
            again = import_residents(conn, out, actor="cli:t", now=NOW, keyring=ring)
            assert again.errors == ()
        stored = conn.execute(
            f"SELECT display_name, address, {NOTE_COLUMNS} FROM anbu.resident"
        ).fetchone()
        assert stored is not None
        assert stored[:2] == ('=HYPERLINK("http://x")', "@SUM(1+1)")
        names = ["notes_sealed", "access_notes_sealed", "sealed_key_id", "notes", "access_notes"]
        opened = open_notes(ring, dict(zip(names, stored[2:], strict=True)))
        assert (opened.health_notes, opened.access_notes) == ("- 고혈압\n- 당뇨", "+82 현관")


def test_an_edit_keeps_a_care_manager_deactivated_since(
    district: District, database: Database
) -> None:
    client, admin = _client(district, district.admin)
    made = client.post(
        "/api/v1/residents",
        json={**RESIDENT, "dong": "사직동", "care_manager_id": district.manager_id},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.care_manager SET active = false WHERE id = %s", (district.manager_id,)
        )
    for body in ({"address": "서울 종로구 사직로 9"}, {"care_manager_id": district.manager_id}):
        patched = client.patch(f"/api/v1/residents/{rid}", json=body, headers=admin)
        assert patched.status_code == 200, patched.text
        assert patched.json()["care_manager_id"] == district.manager_id
    # naming a deactivated care manager anew is still refused
    with database.connection() as conn:
        conn.execute("UPDATE anbu.resident SET care_manager_id = NULL WHERE id = %s", (rid,))
    refused = client.patch(
        f"/api/v1/residents/{rid}", json={"care_manager_id": district.manager_id}, headers=admin
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "care_manager_id"
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.resident SET care_manager_id = %s WHERE id = %s",
            (district.manager_id, rid),
        )
    # the form shows the kept one, selected and marked, so saving it keeps them
    browser = TestClient(district.app)
    login_page(browser, district.admin, PASSWORD)
    page = browser.get(f"/enrol/residents/{rid}")
    assert page.status_code == 200
    assert (
        f'<option value="{district.manager_id}" selected>김복지 (사직동) · 사용 중지된 계정'
        in page.text
    )
