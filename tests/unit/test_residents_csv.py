"""Reading a district's enrolment file: encodings, headers, cells (pure, no database)."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest

from registry.residents_csv import Dongs, FileRefused, decode, parse_file

DONGS = Dongs.of([("1111051500", "청운효자동"), ("1111053000", "사직동")])
TODAY = date(2026, 12, 1)


def _codes(data: bytes) -> set[tuple[int, str, str]]:
    return {(e.line, e.field, e.code) for e in parse_file(data, DONGS, TODAY).errors}


def test_english_headers_and_aliases_name_the_same_columns() -> None:
    english = (
        "External_ID,Name,Birth Year,Address,Dong,Mobile,Landline,Emergency1_Name,"
        "Emergency1_Phone,Emergency1_May_Call,Consent_Date,Consent_Recorded_By,Consent_Calls\n"
        "C-1,Kim,1941.0,Seoul,1111051500,1012345678,,Lee,010-9999-8888,yes,2026. 11. 2.,Park,Y\n"
    )
    korean = (
        "관리번호,이름,출생년도,거주지,동,핸드폰,유선전화,비상연락처1성명,비상연락처1전화,"
        "비상연락1_연락동의,동의일,동의받은사람,전화동의\n"
        "C-1,Kim,1941년,Seoul,청운효자동,01012345678,,Lee,01099998888,O,20261102,Park,예\n"
    )
    a, b = (parse_file(t.encode(), DONGS, TODAY) for t in (english, korean))
    assert a.errors == b.errors == ()
    assert a.rows[0] == b.rows[0]
    row = a.rows[0]
    assert (row.birth_year, row.mobile_phone, row.consent_date) == (
        1941,
        "+821012345678",
        date(2026, 11, 2),
    )
    assert row.emergency_contacts[0].may_call is True and row.consent_calls is True
    assert "health_notes" not in row.present and "emergency_contacts" in row.present


def test_tab_separated_utf16_and_decomposed_hangul_are_read() -> None:
    text = "사례번호\t성명\t출생연도\t주소\t행정동\t집전화\nC-1\t홍길동\t1950\t주소\t사직동\t02-123-4567\n"
    parsed = parse_file(unicodedata.normalize("NFD", text).encode("utf-16"), DONGS, TODAY)
    assert parsed.encoding == "utf-16" and parsed.errors == ()
    assert parsed.rows[0].display_name == "홍길동" and parsed.rows[0].dong_code == "1111053000"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [("가나다".encode(), "utf-8"), ("가나다".encode("utf-8-sig"), "utf-8-sig"),
     ("가나다".encode("cp949"), "cp949"), ("똠방각하".encode("cp949"), "cp949")],
)  # fmt: skip
def test_the_encoding_is_detected(data: bytes, encoding: str) -> None:
    assert decode(data)[1] == encoding


def test_missing_and_repeated_columns_are_reported_on_the_header_row() -> None:
    assert _codes("성명,이름,주소,행정동\n".encode()) == {
        (1, "display_name", "duplicate_column"), (1, "external_id", "missing_column"),
        (1, "birth_year", "missing_column"), (1, "phone", "missing_phone_column"),
    }  # fmt: skip


def test_cells_are_checked_one_by_one() -> None:
    head = (
        "사례번호,성명,출생연도,주소,행정동,휴대전화,센서동의,동의일자,동의확인자,비상연락1 성명\n"
    )
    rows = [
        "C-1,홍길동,2027,주소,사직동,010-1234-5678,,,,",  # future birth year
        "C-2,홍길동,41,주소,사직동,010-1234-5678,,,,",  # two digits
        "C-3,홍길동,1950,주소,사직동,010-1234-5678,몰라,2026-02-30,,",  # bad yes/no, bad date
        "C-4,홍길동,1950,주소,사직동,010-1234-5678,,,,,,extra",  # more cells than headers
        "C-5," + "가" * 101 + ",1950,주소,사직동,010-1234-5678,예,2026-11-01,박,이웃",
        ",,,,,,,,,",  # an empty row: skipped
        "2.02601E+11,홍길동,1950,주소,사직동,010-1234-5678,,,,",  # Excel's way with long numbers
    ]
    assert _codes((head + "\n".join(rows)).encode()) == {
        (2, "birth_year", "birth_year"), (3, "birth_year", "birth_year"),
        (4, "consent_sensors", "bad_bool"), (4, "consent_date", "bad_date"),
        (5, "file", "cell_count"), (6, "display_name", "too_long"),
        (6, "contact1_phone", "contact_incomplete"), (8, "external_id", "scientific"),
    }  # fmt: skip


def test_a_file_of_only_a_header_or_nothing_is_refused() -> None:
    assert _codes("사례번호,성명,출생연도,주소,행정동,휴대전화\n".encode()) == {
        (1, "file", "no_rows")
    }
    with pytest.raises(FileRefused, match="empty_file"):
        parse_file(b"\xef\xbb\xbf \r\n", DONGS, TODAY)


def test_title_rows_above_the_header_are_skipped_and_rows_keep_their_sheet_numbers() -> None:
    text = (
        "2026년 종로구 독거어르신 명단,,,,,\n"
        ",,,,,\n"
        "사례번호,성명,출생연도,주소,행정동,휴대전화\n"
        "C-1,홍길동,1950,주소,사직동,010-1234-5678\n"
        "C-2,홍길순,1850,주소,사직동,010-1234-5678\n"
    )
    parsed = parse_file(text.encode("cp949"), DONGS, TODAY)
    assert [r.line for r in parsed.rows] == [4]
    assert [(e.line, e.field) for e in parsed.errors] == [(5, "birth_year")]
    assert _codes("제목\n성명,주소\n".encode()) >= {(2, "external_id", "missing_column")}
