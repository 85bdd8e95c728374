"""Resident enrolment files: decode (UTF-8 with or without BOM, CP949), read, check (pure).

A file becomes frozen `ResidentRow`s and `LineError`s (row, field, reason code), one error per
bad cell, so a dry run can report every bad line at once. Row numbers are the spreadsheet's
(the header is row 1). Nothing here touches the database: the dongs are passed in.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from core.spreadsheet import unquote
from registry.phones import InvalidPhone, PhoneKind, normalise_phone
from registry.residents_text import (
    CONTACT_SLOTS,
    HEADER_INDEX,
    REQUIRED,
    describe,
    header_key,
)

MAX_LENGTH = {"external_id": 50, "display_name": 100, "address": 300, "home": 50,
              "consent_recorded_by": 100, "health_notes": 2000, "access_notes": 2000}  # fmt: skip
_TRUE = frozenset({"예", "네", "y", "yes", "o", "○", "동의", "true", "t", "1", "v", "✓"})
_FALSE = frozenset({"아니오", "아니요", "n", "no", "x", "×", "미동의", "부동의", "false", "f", "0"})
_DATE = re.compile(r"^(\d{4})\s*[-./년]\s*(\d{1,2})\s*[-./월]\s*(\d{1,2})\s*[.일]?$")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?E\+\d+$", re.IGNORECASE)  # Excel's 2.02601E+11
HEADER_SEARCH = 10  # rows above the header (titles, notes) a file may have
_SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")


@dataclass(frozen=True, slots=True)
class LineError:
    """What is wrong with one cell (or the file, at row 0 / 1): the reason's code and params."""

    line: int
    field: str
    code: str
    params: tuple[tuple[str, object], ...] = ()

    def message(self, lang: str = "ko") -> str:
        return describe(self.field, self.code, dict(self.params), lang)


class FileRefused(ValueError):
    """The file as a whole cannot be read (encoding, a workbook, no header)."""

    def __init__(self, error: LineError) -> None:
        super().__init__(error.code)
        self.error = error


@dataclass(frozen=True, slots=True)
class EmergencyContact:
    name: str
    relationship: str
    phone: str  # E.164
    may_call: bool


@dataclass(frozen=True, slots=True)
class ResidentRow:
    """One resident as the file gives it. Fields the file has no column for are not in
    `present`: an import leaves them as they are (a new resident gets none / no)."""

    line: int
    external_id: str
    display_name: str
    birth_year: int
    address: str
    dong_code: str
    mobile_phone: str | None
    landline_phone: str | None
    home: str | None
    emergency_contacts: tuple[EmergencyContact, ...]
    consent_date: date | None
    consent_recorded_by: str | None
    consent_sensors: bool
    consent_calls: bool
    consent_family: bool
    health_notes: str | None
    access_notes: str | None
    present: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Dongs:
    """The registered dongs, to resolve a cell that holds a dong's code or its name."""

    codes: frozenset[str]
    by_name: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str]]) -> Dongs:
        codes, by_name = set(), dict[str, tuple[str, ...]]()
        for code, name in rows:
            codes.add(code)
            key = header_key(name)
            by_name[key] = (*by_name.get(key, ()), code)
        return cls(frozenset(codes), by_name)


@dataclass(frozen=True, slots=True)
class ParsedFile:
    encoding: str
    rows: tuple[ResidentRow, ...]
    errors: tuple[LineError, ...]
    warnings: tuple[LineError, ...]
    columns: frozenset[str]


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name): UTF-8 (BOM or not), UTF-16 with BOM, else CP949; or FileRefused."""
    if data.startswith(_SPREADSHEET_MAGIC):
        raise FileRefused(LineError(0, "file", "spreadsheet"))
    if data.startswith(b"\xef\xbb\xbf"):
        candidates = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "cp949"]
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:
            return text, encoding
    raise FileRefused(LineError(0, "file", "encoding"))


def parse_file(data: bytes, dongs: Dongs, today: date) -> ParsedFile:
    """Every row of an enrolment file, checked; errors name the row, the field and the reason."""
    text, encoding = decode(data)
    if not text.strip():
        raise FileRefused(LineError(0, "file", "empty_file"))
    head = text[:8192]
    delimiter = "\t" if head.count("\t") > head.count(",") else ","
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    at = _header_row(records)
    header = records[at]
    columns, problems, warnings = _columns(header, at + 1)
    if problems:
        return ParsedFile(encoding, (), tuple(problems), tuple(warnings), frozenset())
    fields = frozenset(columns.values())
    present = _present(fields)
    rows, errors = [], []
    for line, cells in enumerate(records[at + 1 :], start=at + 2):
        if not any(c.strip() for c in cells):
            continue  # an empty row (spreadsheets leave them at the end)
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            errors.append(
                LineError(
                    line, "file", "cell_count", (("cells", len(cells)), ("headers", len(header)))
                )
            )
            continue
        values = {
            name: _clean(unquote(cells[i])) if i < len(cells) else "" for i, name in columns.items()
        }  # a cell an export guarded against formulas ('=…) is read as it was
        row, row_errors = _row(line, values, present, dongs, today)
        errors.extend(row_errors)
        if row is not None and not row_errors:
            rows.append(row)
    if not rows and not errors:
        errors.append(LineError(at + 1, "file", "no_rows"))
    errors.extend(_duplicates(rows))
    return ParsedFile(encoding, tuple(rows), tuple(errors), tuple(warnings), fields)


def _clean(cell: str) -> str:
    """NFC (files from a Mac carry decomposed Hangul); spaces collapsed outside multi-line notes."""
    text = cell.strip().replace("\r\n", "\n")
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text if "\n" in text else " ".join(text.split())


def _header_row(records: list[list[str]]) -> int:
    """Where the header is: the first of the top rows naming the most known columns. Districts'
    sheets often open with a title row or two (`2026년 독거노인 명단`) above it."""
    known = [sum(header_key(c) in HEADER_INDEX for c in r) for r in records[:HEADER_SEARCH]]
    return known.index(max(known)) if known else 0


def _columns(
    header: list[str], line: int = 1
) -> tuple[dict[int, str], list[LineError], list[LineError]]:
    """Which field each column fills; errors for missing or repeated columns."""
    columns: dict[int, str] = {}
    errors, warnings = [], []
    for i, raw in enumerate(header):
        key = header_key(raw)
        if not key:
            continue
        name = HEADER_INDEX.get(key)
        if name is None:
            warnings.append(LineError(line, "file", "unknown_column", (("header", raw.strip()),)))
        elif name in columns.values():
            errors.append(LineError(line, name, "duplicate_column", (("header", raw.strip()),)))
        else:
            columns[i] = name
    present = set(columns.values())
    errors += [LineError(line, f, "missing_column") for f in REQUIRED if f not in present]
    if not present & {"mobile_phone", "landline_phone"}:
        errors.append(LineError(line, "phone", "missing_phone_column"))
    return columns, errors, warnings


def _present(fields: frozenset[str]) -> frozenset[str]:
    """The resident's fields a set of columns carries (contact columns make one field)."""
    contact = {f for f in fields if f.startswith("contact")}
    return frozenset(fields - contact | ({"emergency_contacts"} if contact else set()))


def parse_record(
    values: Mapping[str, str], dongs: Dongs, today: date
) -> tuple[ResidentRow | None, list[LineError]]:
    """One resident typed on a page or sent to the API, keyed by field, checked as a file row.

    Fields left out are left as they are on an update. Errors carry line 0.
    """
    cleaned = {k: _clean(v) for k, v in values.items()}
    row, errors = _row(0, cleaned, _present(frozenset(cleaned)), dongs, today)
    return (row, []) if not errors else (None, errors)


def _row(
    line: int, v: Mapping[str, str], present: frozenset[str], dongs: Dongs, today: date
) -> tuple[ResidentRow | None, list[LineError]]:
    errors: list[LineError] = []

    def fail(name: str, code: str, **params: object) -> None:
        errors.append(LineError(line, name, code, tuple(params.items())))

    def text(name: str, required: bool = False) -> str | None:
        value = v.get(name, "")
        if not value:
            if required:
                fail(name, "required")
            return None
        if len(value) > MAX_LENGTH.get(name, 10_000):
            fail(name, "too_long", max=MAX_LENGTH[name])
        return value

    def phone(name: str, kind: PhoneKind | None) -> str | None:
        value = v.get(name, "")
        if not value:
            return None
        try:
            return normalise_phone(value, kind)
        except InvalidPhone as exc:
            fail(name, f"phone_{exc.code}")
            return None

    def yes_no(name: str) -> bool:
        value = v.get(name, "").lower()
        if value in _TRUE:
            return True
        if value and value not in _FALSE:
            fail(name, "bad_bool")
        return False

    external_id, name, address = (text(f, True) for f in ("external_id", "display_name", "address"))
    if external_id is not None and _SCIENTIFIC.match(external_id):
        fail("external_id", "scientific")
    birth_year = _birth_year(v.get("birth_year", ""), today)
    if birth_year is None:
        fail("birth_year", "birth_year" if v.get("birth_year") else "required", year=today.year)
    dong_code = _dong(v.get("dong_code", ""), dongs, fail)
    mobile = phone("mobile_phone", PhoneKind.MOBILE)
    landline = phone("landline_phone", PhoneKind.LANDLINE)
    if not v.get("mobile_phone") and not v.get("landline_phone"):
        fail("phone", "no_phone")
    contacts = []
    for n in range(1, CONTACT_SLOTS + 1):
        c_name, c_phone = v.get(f"contact{n}_name", ""), v.get(f"contact{n}_phone", "")
        relationship = v.get(f"contact{n}_relationship", "")
        if not (c_name or c_phone or relationship):
            continue
        if not (c_name and c_phone):
            fail(f"contact{n}_{'phone' if c_name else 'name'}", "contact_incomplete", n=n)
            continue
        if len(c_name) > 100 or len(relationship) > 50:
            too_long = "name" if len(c_name) > 100 else "relationship"
            fail(f"contact{n}_{too_long}", "too_long", max=100 if too_long == "name" else 50)
            continue
        e164 = phone(f"contact{n}_phone", None)
        may_call = yes_no(f"contact{n}_may_call")
        if e164 is not None:
            contacts.append(EmergencyContact(c_name, relationship, e164, may_call))
    consent = {f: yes_no(f) for f in ("consent_sensors", "consent_calls", "consent_family")}
    consent_date = _date(v.get("consent_date", ""), today, lambda code: fail("consent_date", code))
    recorded_by = text("consent_recorded_by")
    consent_bad = any(e.field == "consent_date" for e in errors)
    if any(consent.values()) and (consent_date is None or recorded_by is None) and not consent_bad:
        fail("consent", "consent_incomplete")
    health, access, home = text("health_notes"), text("access_notes"), text("home")
    if errors or external_id is None or name is None or address is None:
        return None, errors
    assert birth_year is not None and dong_code is not None
    return ResidentRow(
        line, external_id, name, birth_year, address, dong_code, mobile, landline, home,
        tuple(contacts), consent_date, recorded_by, consent["consent_sensors"],
        consent["consent_calls"], consent["consent_family"], health, access, present,
    ), []  # fmt: skip


def _birth_year(value: str, today: date) -> int | None:
    value = value.removesuffix("년").strip()
    if value.endswith(".0"):
        value = value[:-2]  # a spreadsheet's number formatting
    if len(value) != 4 or not value.isdigit():
        return None
    year = int(value)
    return year if 1900 <= year <= today.year else None


def _dong(value: str, dongs: Dongs, fail: Callable[..., None]) -> str | None:
    if not value:
        fail("dong_code", "required")
        return None
    if value in dongs.codes:
        return value
    codes = dongs.by_name.get(header_key(value), ())
    if len(codes) == 1:
        return codes[0]
    fail("dong_code", "ambiguous_dong" if codes else "unknown_dong")
    return None


def _date(value: str, today: date, fail: Callable[[str], None]) -> date | None:
    if not value:
        return None
    compact = value.rstrip(".").strip()
    match = _DATE.match(compact)
    parts = match.groups() if match else (
        (compact[:4], compact[4:6], compact[6:]) if len(compact) == 8 and compact.isdigit() else None
    )  # fmt: skip
    try:
        day = date(int(parts[0]), int(parts[1]), int(parts[2])) if parts else None
    except ValueError:
        day = None
    if day is None:
        fail("bad_date")
    elif day > today:
        fail("future_date")
        return None
    return day


def _duplicates(rows: list[ResidentRow]) -> list[LineError]:
    """A second row with an external id (or home) of an earlier row, naming that row."""
    errors, seen_ids, seen_homes = [], dict[str, int](), dict[str, int]()
    for row in rows:
        first = seen_ids.setdefault(row.external_id, row.line)
        if first != row.line:
            errors.append(
                LineError(row.line, "external_id", "duplicate_external_id", (("first", first),))
            )
        if row.home is not None:
            first = seen_homes.setdefault(row.home, row.line)
            if first != row.line:
                errors.append(LineError(row.line, "home", "duplicate_home", (("first", first),)))
    return errors
