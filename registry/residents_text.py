"""The words of resident enrolment files: column headers and error reasons, Korean and English.

Headers are matched loosely (case, spaces, `_`, `-` and brackets ignored), so `비상연락1 성명`,
`비상연락1_성명` and `Emergency1_Name` are one column. The first header of each row is the one
`anbu export residents` writes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CONTACT_SLOTS = 3  # emergency contacts a file may carry per resident


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the file: the field it fills, its Korean and English headers, aliases."""

    field: str
    ko: str
    en: str
    aliases: tuple[str, ...] = ()


_BASE: tuple[Column, ...] = (
    Column("external_id", "사례번호", "external_id", ("관리번호", "사례관리번호", "case_number")),
    Column("display_name", "성명", "name", ("이름", "대상자명", "display_name")),
    Column("birth_year", "출생연도", "birth_year", ("출생년도", "생년", "출생년")),
    Column("address", "주소", "address", ("거주지", "거주지주소")),
    Column("dong_code", "행정동", "dong", ("행정동코드", "동", "dong_code", "읍면동")),
    Column("mobile_phone", "휴대전화", "mobile", ("휴대폰", "핸드폰", "휴대전화번호", "mobile_phone")),
    Column("landline_phone", "집전화", "landline", ("유선전화", "일반전화", "집전화번호", "landline_phone")),
    Column("home", "가구ID", "home", ("가구번호", "home_id")),
    Column("consent_date", "동의일자", "consent_date", ("동의일",)),
    Column("consent_recorded_by", "동의확인자", "consent_recorded_by", ("동의받은사람",)),
    Column("consent_sensors", "센서동의", "consent_sensors", ("센서설치동의",)),
    Column("consent_calls", "안부전화동의", "consent_calls", ("전화동의",)),
    Column("consent_family", "가족연락동의", "consent_family", ("보호자연락동의",)),
    Column("health_notes", "건강메모", "health_notes", ("건강특이사항", "건강상태")),
    Column("access_notes", "출입메모", "access_notes", ("출입정보", "출입방법")),
)  # fmt: skip
_CONTACT_PARTS = (
    ("name", "성명", "name", ("이름",)),
    ("relationship", "관계", "relationship", ()),
    ("phone", "전화", "phone", ("전화번호", "연락처")),
    ("may_call", "연락동의", "may_call", ("동의",)),
)
COLUMNS: tuple[Column, ...] = _BASE + tuple(
    Column(
        f"contact{n}_{part}",
        f"비상연락{n} {ko}",
        f"emergency{n}_{en}",
        tuple(f"비상연락처{n}{a}" for a in (ko, *more)) + tuple(f"비상연락{n}{a}" for a in more),
    )
    for n in range(1, CONTACT_SLOTS + 1)
    for part, ko, en, more in _CONTACT_PARTS
)
REQUIRED = ("external_id", "display_name", "birth_year", "address", "dong_code")

_KEY_NOISE = re.compile(r"[\s_\-()\[\]./]")


def header_key(text: str) -> str:
    """A header as it is compared: NFC, lower case, without spaces and punctuation."""
    return _KEY_NOISE.sub("", unicodedata.normalize("NFC", text)).lower()


HEADER_INDEX: dict[str, str] = {
    header_key(name): col.field for col in COLUMNS for name in (col.ko, col.en, *col.aliases)
}
LABELS: dict[str, tuple[str, str]] = {col.field: (col.ko, col.en) for col in COLUMNS} | {
    "file": ("파일", "file"),
    "phone": ("휴대전화/집전화", "mobile/landline"),
    "emergency_contacts": ("비상연락처", "emergency contacts"),
    "consent": ("동의", "consent"),
}

# reason codes -> (Korean, English); {placeholders} filled from the error's params
MESSAGES: dict[str, tuple[str, str]] = {
    "required": ("값이 비어 있습니다", "is empty"),
    "too_long": ("{max}자를 넘습니다", "is longer than {max} characters"),
    "scientific": (
        "엑셀이 번호를 지수 표기(2.02601E+11)로 바꿨습니다: 그 열을 텍스트 형식으로 바꿔 저장해 주세요",
        "Excel turned the number into scientific notation (2.02601E+11): format the column as text",
    ),
    "birth_year": (
        "출생연도는 1900년부터 {year}년 사이의 네 자리 연도여야 합니다",
        "must be a four-digit year from 1900 to {year}",
    ),
    "unknown_dong": (
        "등록되지 않은 행정동입니다 (행정동 코드나 이름을 확인해 주세요)",
        "is not a registered dong (check the dong code or name)",
    ),
    "ambiguous_dong": (
        "같은 이름의 행정동이 여러 구에 있습니다: 행정동 코드로 적어 주세요",
        "names dongs in several districts: use the dong code",
    ),
    "duplicate_external_id": (
        "사례번호가 {first}행과 겹칩니다",
        "repeats the external id of row {first}",
    ),
    "duplicate_home": ("가구ID가 {first}행과 겹칩니다", "repeats the home of row {first}"),
    # one answer for a case number of another district's resident, of an ended service or of
    # another resident: it never says which (nor that another district holds it)
    "external_id_taken": (
        "이 사례번호(또는 가구ID)는 사용할 수 없습니다. 다른 번호인지 확인해 주세요.",
        "this external id (or home) cannot be used. Please check that the number is right.",
    ),
    "resident_ended": (
        "서비스가 종료된 대상자입니다. 다시 등록하려면 새 사례번호로 등록해 주세요.",
        "This resident's service has ended. To enrol them again, use a new external id.",
    ),
    "dong_via_transfer": (
        "행정동을 옮기려면 '전출입(이관)' 기능을 사용해 주세요.",
        "To move a resident to another dong, use the transfer action.",
    ),
    "home_taken": (
        "가구ID를 다른 대상자(다른 사례번호)가 이미 쓰고 있습니다",
        "is already the home of another resident (another external id)",
    ),
    "phone_characters": (
        "전화번호에 숫자와 - 말고 다른 글자가 있습니다",
        "has characters other than digits and -",
    ),
    "phone_foreign": ("국내(+82) 전화번호가 아닙니다", "is not a Korean (+82) number"),
    "phone_prefix": (
        "없는 국번입니다 (010, 02, 031, 070 등으로 시작해야 합니다)",
        "has no valid Korean prefix (010, 02, 031, 070, ...)",
    ),
    "phone_length": ("전화번호 자릿수가 맞지 않습니다", "has the wrong number of digits"),
    "phone_subscriber": (
        "국번 다음 자리가 0일 수 없습니다",
        "cannot continue with 0 after the prefix",
    ),
    "phone_not_mobile": (
        "휴대전화 번호가 아닙니다 (010 등으로 시작해야 합니다)",
        "is not a mobile number (010, ...)",
    ),
    "phone_not_landline": (
        "집전화 번호가 아닙니다 (지역번호나 070으로 시작해야 합니다)",
        "is not a landline number (an area code or 070)",
    ),
    "no_phone": (
        "휴대전화나 집전화 중 하나는 있어야 합니다",
        "needs a mobile or a landline number",
    ),
    "bad_bool": ("예/아니오(Y/N, O/X)로 적어 주세요", "must be yes/no (Y/N, O/X)"),
    "bad_date": ("날짜는 2026-03-15처럼 적어 주세요", "must be a date such as 2026-03-15"),
    "future_date": ("미래의 날짜입니다", "is in the future"),
    "consent_incomplete": (
        "동의한 항목이 있으면 동의일자와 동의확인자를 함께 적어야 합니다",
        "needs consent_date and consent_recorded_by when anything is consented to",
    ),
    "contact_incomplete": (
        "비상연락{n}의 성명과 전화번호를 함께 적어야 합니다",
        "emergency contact {n} needs both a name and a phone",
    ),
    "cell_count": (
        "칸 수({cells})가 머리글({headers})과 다릅니다",
        "has {cells} cells where the header has {headers}",
    ),
    "missing_column": ("필수 열이 없습니다", "required column is missing"),
    "missing_phone_column": (
        "휴대전화나 집전화 열이 있어야 합니다",
        "a mobile or landline column is required",
    ),
    "duplicate_column": ("같은 열이 두 번 있습니다: {header}", "column appears twice: {header}"),
    "unknown_column": (
        "알 수 없는 열이라 무시합니다: {header}",
        "unknown column, ignored: {header}",
    ),
    "encoding": (
        "파일의 문자 인코딩을 알 수 없습니다: 엑셀에서 'CSV UTF-8' 또는 'CSV(쉼표로 분리)'로"
        " 저장해 주세요",
        "unknown character encoding: save it from Excel as 'CSV UTF-8' or 'CSV'",
    ),
    "spreadsheet": (
        "엑셀 통합 문서(.xlsx/.xls)입니다: 'CSV UTF-8' 또는 'CSV(쉼표로 분리)'로 저장해 주세요",
        "an Excel workbook (.xlsx/.xls): save it as 'CSV UTF-8' or 'CSV'",
    ),
    "empty_file": ("빈 파일입니다", "the file is empty"),
    "no_rows": ("머리글 아래에 대상자가 없습니다", "no residents below the header"),
}


def describe(field: str, code: str, params: dict[str, object], lang: str = "ko") -> str:
    """`field: reason` in Korean (or English with lang='en')."""
    ko, en = MESSAGES[code]
    reason = (en if lang == "en" else ko).format(**params)
    labels = LABELS.get(field, (field, field))
    return f"{labels[1] if lang == 'en' else labels[0]}: {reason}"
