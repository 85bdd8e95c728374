"""`anbu import residents` / `anbu export residents` on the real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import registry
from core.crypto import Keyring, new_key
from registry.residents_csv import FileRefused, parse_record
from registry.residents_export import export_residents
from registry.residents_import import enrol_residents, import_residents, load_dongs
from registry.secrecy import open_notes

DATA_KEY = new_key()
KEYRING = Keyring.of(DATA_KEY)  # notes are sealed at rest: the tests read them opened
SAMPLE = (Path(__file__).parent.parent / "fixtures" / "residents_sample.csv").read_bytes()
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
HEADER = "사례번호,성명,출생연도,주소,행정동,휴대전화,집전화"
PERSONAL = ("김순자", "박영호", "최옥", "자하문로", "2345-6789", "23456789", "734-1234",
            "7341234", "이민정", "9876", "고혈압", "인슐린", "비밀번호", "박담당")  # fmt: skip


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url) as c:
        registry.add_dong(c, "1111051500", "청운효자동", "종로구")
        registry.add_dong(c, "1111053000", "사직동", "종로구")
        registry.add_dong(c, "2611051000", "중앙동", "중구")
        registry.add_dong(c, "2711051000", "중앙동", "중구")
        c.commit()
        yield c


def _run(conn: psycopg.Connection[Any], data: bytes, **kw: Any) -> Any:
    kw.setdefault("keyring", KEYRING)
    return import_residents(conn, data, actor=kw.pop("actor", "cli:test"), now=NOW, **kw)


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM anbu.{table}").fetchone()
    assert row is not None
    return int(row[0])


def _residents(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    out = []
    for *head, health, access, key_id, status in conn.execute(
        """SELECT external_id, home, display_name, birth_year, dong_code, mobile_phone,
                  landline_phone, phone, consent_date, consent_recorded_by, consent_sensors,
                  consent_calls, consent_family, consent, notes_sealed, access_notes_sealed,
                  sealed_key_id, status
             FROM anbu.resident ORDER BY external_id"""
    ):
        row = {"notes_sealed": health, "access_notes_sealed": access, "sealed_key_id": key_id}
        notes = open_notes(KEYRING, row)
        out.append((*head, notes.health_notes, notes.access_notes, status))
    return out


@pytest.mark.parametrize(
    ("encoding", "reported"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp949", "cp949"), ("cp949-crlf", "cp949")],
)
def test_the_sample_imports_the_same_from_utf8_bom_and_cp949(
    conn: psycopg.Connection[Any], encoding: str, reported: str
) -> None:
    text = SAMPLE.decode("utf-8")
    if encoding.endswith("-crlf"):  # as Excel writes it
        encoding, text = encoding.removesuffix("-crlf"), text.replace("\n", "\r\n")
    data = text.encode(encoding)
    report = _run(conn, data)
    assert (report.encoding, report.errors, report.written) == (reported, (), True)
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    assert [w.code for w in report.warnings] == ["unknown_column"]  # 비고
    d = datetime(2026, 11, 2).date()
    first, second, third = _residents(conn)
    assert first == ("JN-2026-0001", "JN-2026-0001", "김순자", 1941, "1111051500",
                     "+821023456789", "+8227341234", "+821023456789", d, "박담당",
                     True, True, True, True, "고혈압 약 복용", "현관 비밀번호는 담당자에게 문의",
                     "active")  # fmt: skip
    # dong by code; a landline only: it is the number calls go to; dotted date
    assert second[4:10] == ("1111053000", None, "+8227352222", "+8227352222",
                            datetime(2026, 11, 3).date(), "박담당")  # fmt: skip
    assert second[10:13] == (True, True, False)
    assert (
        third[2] == "최옥 순" and third[14] == "당뇨\n인슐린 주사" and third[5] == "+821033334444"
    )
    contacts = conn.execute(
        """SELECT r.external_id, c.position, c.name, c.relationship, c.phone, c.may_call
             FROM anbu.emergency_contact c JOIN anbu.resident r ON r.id = c.resident_id
            ORDER BY 1, 2"""
    ).fetchall()
    assert contacts == [
        ("JN-2026-0001", 1, "이민정", "딸", "+821098765432", True),
        ("JN-2026-0002", 1, "박철수", "아들", "+821055551212", False),
    ]
    audit = conn.execute(
        "SELECT field, old_value, new_value, actor, care_manager_id, at FROM anbu.resident_changes"
    ).fetchall()
    assert sorted(a[2] for a in audit) == ["JN-2026-0001", "JN-2026-0002", "JN-2026-0003"]
    assert {(a[0], a[1], a[3], a[4], a[5]) for a in audit} == {
        ("enrolled", None, "cli:test", None, NOW)
    }


BAD = "\n".join([
    HEADER + ",비상연락1 성명,비상연락1 전화,동의일자,센서동의",
    "A-1,가나다,1941,주소 1,청운효자동,010-1234-5678,,,,,",        # row 2: good
    "A-2,가나다,1841,주소 2,없는동,010-12-34,02-123-4567,,,,",    # 3: year, dong, mobile
    "A-1,가나다,1950,주소 3,사직동,,02-123-4567,,,,",             # 4: duplicate of row 2
    "A-4,,1950,주소 4,중앙동,010-1234-5678,010-2222-3333,,,,",   # 5: name, dong, landline
    "A-5,가나다,1950,주소 5,사직동,,,홍길동,,2030-01-01,예",      # 6: phone, contact, date
    "A-6,가나다,1950,주소 6,사직동,+1 212 555 0100,,,,2026-11-01,예",  # 7: foreign, consent
    "A-7,가나다,1950,주소 7,사직동,010-3333-4444,,,,,",         # 8: good
]).encode("utf-8")  # fmt: skip
BAD_FOUND = {
    (3, "birth_year", "birth_year"), (3, "dong_code", "unknown_dong"),
    (3, "mobile_phone", "phone_length"), (4, "external_id", "duplicate_external_id"),
    (5, "display_name", "required"), (5, "dong_code", "ambiguous_dong"),
    (5, "landline_phone", "phone_not_landline"), (6, "phone", "no_phone"),
    (6, "contact1_phone", "contact_incomplete"), (6, "consent_date", "future_date"),
    (7, "mobile_phone", "phone_foreign"), (7, "consent", "consent_incomplete"),
}  # fmt: skip


def test_every_bad_row_is_reported_with_row_field_and_reason_and_nothing_is_written(
    conn: psycopg.Connection[Any],
) -> None:
    for dry_run in (True, False):
        report = _run(conn, BAD, dry_run=dry_run)
        assert {(e.line, e.field, e.code) for e in report.errors} == BAD_FOUND
        assert report.bad_lines == 5 and not report.written
        assert (_count(conn, "resident"), _count(conn, "resident_changes")) == (0, 0)
    messages = {(e.line, e.field): e for e in report.errors}
    assert messages[3, "birth_year"].message() == (
        "출생연도: 출생연도는 1900년부터 2026년 사이의 네 자리 연도여야 합니다"
    )
    assert messages[3, "dong_code"].message().startswith("행정동: 등록되지 않은 행정동입니다")
    assert messages[4, "external_id"].message() == "사례번호: 사례번호가 2행과 겹칩니다"
    assert messages[3, "mobile_phone"].message("en") == "mobile: has the wrong number of digits"
    assert messages[5, "dong_code"].message("en") == (
        "dong: names dongs in several districts: use the dong code"
    )


def test_skip_bad_imports_the_good_rows_only(conn: psycopg.Connection[Any]) -> None:
    report = _run(conn, BAD, skip_bad=True)
    assert report.written and report.created == 2 and report.bad_lines == 5
    # row 4 repeated row 2's external id: the first one is the one enrolled
    assert [(r[0], r[3]) for r in _residents(conn)] == [("A-1", 1941), ("A-7", 1950)]


def test_a_dry_run_of_a_good_file_counts_and_writes_nothing(conn: psycopg.Connection[Any]) -> None:
    report = _run(conn, SAMPLE, dry_run=True)
    assert (report.created, report.written, report.errors) == (3, False, ())
    tables = ("resident", "emergency_contact", "resident_changes")
    assert [_count(conn, t) for t in tables] == [0, 0, 0]
    _run(conn, SAMPLE)
    changed = SAMPLE.replace(b"010-2345-6789", b"010-2345-0000")
    report = _run(conn, changed, dry_run=True)
    # rows 1 and 3 carry notes: a note sent is an update, never compared (nor opened)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 1)
    assert _residents(conn)[0][5] == "+821023456789"
    assert [_count(conn, t) for t in tables] == [3, 2, 3]


def test_a_reimport_updates_what_changed_and_never_duplicates(
    conn: psycopg.Connection[Any],
) -> None:
    _run(conn, SAMPLE)
    again = _run(conn, SAMPLE.decode().encode("cp949"))
    # the notes of rows 1 and 3 are sealed again unopened; row 2 (no notes) is left alone
    assert (again.created, again.updated, again.unchanged, again.written) == (0, 2, 1, True)
    resealed = conn.execute(
        """SELECT field, old_value, new_value FROM anbu.resident_changes
            WHERE field LIKE '%notes' ORDER BY id"""
    ).fetchall()
    assert sorted(resealed) == [("access_notes", "(봉인)", "17자"),  # the order rows are
                                ("health_notes", "(봉인)", "8자"),  # written in is no promise
                                ("health_notes", "(봉인)", "9자")]  # fmt: skip
    assert _count(conn, "resident_changes") == 6
    edited = (
        SAMPLE.replace(b"010-2345-6789", b"+82 10 2345 0000")
        .replace(b",1938,", b",1939,")
        .replace(b"\xeb\xb0\x95\xec\xb2\xa0\xec\x88\x98", "박영수".encode())  # contact's name
    )
    report = _run(conn, edited, actor="cli:kim")
    assert (report.created, report.updated, report.unchanged) == (0, 3, 0)
    assert _count(conn, "resident") == 3
    rows = conn.execute(
        """SELECT r.external_id, c.field, c.old_value, c.new_value, c.masked, c.actor
             FROM anbu.resident_changes c JOIN anbu.resident r ON r.id = c.resident_id
            WHERE c.field <> 'enrolled' AND c.field NOT LIKE '%notes' ORDER BY 1, 2"""
    ).fetchall()
    assert rows == [
        ("JN-2026-0001", "mobile_phone", "010-****-6789", "010-****-0000", True, "cli:kim"),
        ("JN-2026-0002", "birth_year", "1938", "1939", False, "cli:kim"),
        ("JN-2026-0002", "emergency_contacts", "아들(미동의) 010-****-1212",
         "아들(미동의) 010-****-1212", True, "cli:kim"),
    ]  # fmt: skip
    assert conn.execute(
        "SELECT name FROM anbu.emergency_contact WHERE phone = '+821055551212'"
    ).fetchall() == [("박영수",)]
    assert _residents(conn)[0][7] == "+821023450000"  # the number calls go to follows


def test_a_file_without_a_column_leaves_that_field_alone(conn: psycopg.Connection[Any]) -> None:
    _run(conn, SAMPLE)
    only = (
        f"{HEADER}\nJN-2026-0001,김순자,1941,서울 종로구 자하문로 12-3,청운효자동,010-2345-6789,\n"
    )
    report = _run(conn, only.encode())
    assert (report.updated, report.unchanged) == (1, 0)
    first = _residents(conn)[0]
    # address changed, landline cleared (its column is there, empty); notes, consent kept
    assert first[6] is None and first[14] == "고혈압 약 복용" and first[10] is True
    assert _count(conn, "emergency_contact") == 2


def test_export_then_import_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    _run(conn, SAMPLE)
    before = _residents(conn)
    for lang, encoding, notes in (("ko", "utf-8-sig", True), ("en", "cp949", False)):
        data, count = export_residents(
            conn, lang=lang, encoding=encoding, include_notes=notes, keyring=KEYRING
        )
        assert count == 3
        report = _run(conn, data)
        assert (report.encoding, report.errors, report.warnings) == (encoding, (), ())
        resealed = 2 if notes else 0  # notes sent are sealed again, never compared
        assert (report.created, report.updated, report.unchanged) == (0, resealed, 3 - resealed)
    assert _residents(conn) == before
    data, _ = export_residents(conn, lang="ko", include_notes=False)
    text = data.decode("utf-8-sig")
    assert text.startswith("사례번호,성명,출생연도,주소,행정동,휴대전화,집전화,가구ID,")
    assert "010-2345-6789" in text and "고혈압" not in text and "건강메모" not in text
    one, count = export_residents(conn, dong="1111051500")
    assert count == 1 and "JN-2026-0001" in one.decode("utf-8-sig")


def test_a_resident_enrolled_without_an_external_id_is_adopted_by_home(
    conn: psycopg.Connection[Any],
) -> None:
    rid = registry.add_resident(conn, "home001", "1111051500", "김순자", "+821023456789")
    registry.add_resident(conn, "home002", "1111051500", "다른분", "+821011112222")
    conn.execute("UPDATE anbu.resident SET external_id = 'OTHER' WHERE home = 'home002'")
    conn.commit()
    data = f"{HEADER},가구ID\nJN-1,김순자,1941,주소,청운효자동,010-2345-6789,,home001\n"
    report = _run(conn, data.encode())
    assert (report.created, report.updated) == (0, 1)
    assert conn.execute("SELECT id FROM anbu.resident WHERE external_id = 'JN-1'").fetchall() == [
        (rid,)
    ]
    taken = f"{HEADER},가구ID\nJN-2,김순자,1941,주소,청운효자동,010-2345-6789,,home002\n"
    report = _run(conn, taken.encode())
    assert [(e.line, e.field, e.code) for e in report.errors] == [(2, "home", "home_taken")]
    assert not report.written


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x80\x81\xff\xfe", "encoding"),  # neither UTF-8 nor CP949
        ("사례번호,성명\n".encode("utf-16-le"), "encoding"),  # UTF-16 without its BOM
        (b"PK\x03\x04\x14\x00\x06\x00", "spreadsheet"),  # an .xlsx saved as is
        (b"", "empty_file"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_in_korean(
    conn: psycopg.Connection[Any], data: bytes, code: str
) -> None:
    with pytest.raises(FileRefused, match=code) as refused:
        _run(conn, data)
    assert refused.value.error.message().startswith("파일: ")
    assert _count(conn, "resident") == 0


def test_no_personal_data_reaches_the_logs_or_the_audit(
    conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _run(conn, SAMPLE)
    _run(conn, SAMPLE.replace(b"010-2345-6789", b"010-2345-0000"))
    _run(conn, BAD, dry_run=True)
    data, _ = export_residents(conn, include_notes=True, keyring=KEYRING)
    assert b"\xea\xb9\x80\xec\x88\x9c\xec\x9e\x90" in data  # 김순자: the export has it
    assert "resident import" in caplog.text and caplog.records
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    audit = " ".join(
        str(v) for row in conn.execute("SELECT * FROM anbu.resident_changes") for v in row
    )
    for secret in PERSONAL:
        assert secret not in logged and secret not in audit, secret


def test_the_command_line_reports_rows_in_korean_and_exits_non_zero(
    conn: psycopg.Connection[Any], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anbu.cli import app, registry_cmds  # noqa: F401

    monkeypatch.setenv("ANBU_DATABASE_URL", db_url)
    monkeypatch.setenv("ANBU_DATA_KEY", DATA_KEY)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(BAD.decode().encode("cp949"))
    result = CliRunner().invoke(app, ["import", "residents", str(bad), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "3행 · 출생연도: 출생연도는 1900년부터" in result.output
    assert "잘못된 행 5개" in result.output and "시험 실행" in result.output
    english = CliRunner().invoke(app, ["import", "residents", str(bad), "--lang", "en"])
    assert english.exit_code == 1 and "row 4 · external_id: repeats the external id of row 2" in (
        english.output
    )
    good = tmp_path / "good.csv"
    good.write_bytes(SAMPLE)
    result = CliRunner().invoke(app, ["import", "residents", str(good), "--by", "admin:lee"])
    assert result.exit_code == 0 and "생성 3 · 수정 0 · 변경 없음 0" in result.output
    assert conn.execute("SELECT DISTINCT actor FROM anbu.resident_changes").fetchall() == [
        ("admin:lee",)
    ]
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["export", "residents", "--out", str(out), "--encoding", "cp949"]
    )
    assert result.exit_code == 0 and out.read_bytes().decode("cp949").count("\r\nJN-2026-") == 3


def test_a_home_two_rows_would_share_is_refused_before_anything_is_written(
    conn: psycopg.Connection[Any],
) -> None:
    # row 3 names as its home the external id that row 2 gets as its own home by default
    data = f"{HEADER},가구ID\nX-1,가나,1950,주소,사직동,010-1234-5678,,\nX-2,다라,1950,주소,사직동,010-1234-5679,,X-1\n"
    report = _run(conn, data.encode())
    assert [(e.line, e.field, e.code) for e in report.errors] == [(3, "home", "duplicate_home")]
    assert report.errors[0].message() == "가구ID: 가구ID가 2행과 겹칩니다"
    assert not report.written and _count(conn, "resident") == 0


def test_one_resident_from_a_page_is_checked_and_audited_as_a_file_row(
    conn: psycopg.Connection[Any],
) -> None:
    dongs, today = load_dongs(conn), NOW.date()
    typed = {"external_id": "P-1", "display_name": "홍길동", "birth_year": "1944",
             "address": "서울 종로구 사직로 1", "dong_code": "사직동",
             "mobile_phone": "010 2222 3333", "consent_calls": "예",
             "consent_date": "2026-11-30", "consent_recorded_by": "김담당"}  # fmt: skip
    row, errors = parse_record(typed, dongs, today)
    assert errors == [] and row is not None
    made = enrol_residents(conn, [row], actor="web:admin:7", now=NOW)
    assert (made.created, made.written) == (1, True)
    wrong, errors = parse_record({**typed, "mobile_phone": "02-123-4567"}, dongs, today)
    assert wrong is None and [e.message() for e in errors] == [
        "휴대전화: 휴대전화 번호가 아닙니다 (010 등으로 시작해야 합니다)"
    ]
    edit = {k: typed[k] for k in ("external_id", "display_name", "birth_year", "address",
                                  "dong_code", "mobile_phone")}  # fmt: skip
    row, errors = parse_record({**edit, "display_name": "홍길순"}, dongs, today)
    assert row is not None
    changed = enrol_residents(conn, [row], actor="web:admin:7", now=NOW)
    assert (changed.created, changed.updated) == (0, 1)
    assert conn.execute(
        "SELECT field, old_value, new_value, actor FROM anbu.resident_changes ORDER BY id"
    ).fetchall() == [
        ("enrolled", None, "P-1", "web:admin:7"),
        ("display_name", "홍*동", "홍*순", "web:admin:7"),
    ]
    assert _residents(conn)[0][9:12] == ("김담당", False, True)  # consent kept


def test_two_residents_swapping_homes_is_refused_whole(conn: psycopg.Connection[Any]) -> None:
    head = f"{HEADER},가구ID\n"
    first = (
        "S-1,가나,1950,주소,사직동,010-1234-5678,,h1\nS-2,다라,1950,주소,사직동,010-1234-5679,,h2\n"
    )
    _run(conn, (head + first).encode())
    swap = first.replace(",h1", ",hx").replace(",h2", ",h1").replace(",hx", ",h2")
    report = _run(conn, (head + swap).encode())
    assert [(e.line, e.field, e.code) for e in report.errors] == [
        (2, "home", "home_taken"), (3, "home", "home_taken"),
    ]  # fmt: skip
    assert not report.written
    homes = conn.execute("SELECT external_id, home FROM anbu.resident ORDER BY 1").fetchall()
    assert homes == [("S-1", "h1"), ("S-2", "h2")]
    assert _count(conn, "resident_changes") == 2


def test_two_imports_at_once_enrol_each_resident_once(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> tuple[int, int]:
        with psycopg.connect(db_url) as c:
            report = _run(c, SAMPLE)
            return report.created, report.unchanged

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(one, range(2)))
    # the second waited for the first, then found them (two carry notes: sealed again)
    assert results == [(0, 1), (3, 0)]
    assert (_count(conn, "resident"), _count(conn, "emergency_contact")) == (3, 2)
