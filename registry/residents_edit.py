"""Enrolling and editing one resident for a district's admin (their home's devices: home_devices).

A resident typed on a page or sent to the API is checked as an enrolment file's row
(`parse_record`) and written by the import's own `enrol_residents` (same rules, same audit, notes
sealed), inside one transaction with what the file format has no column for: the assigned care
manager and a change of external id. Anything refused raises `Refused` with every problem, and
nothing is written. Personal data is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.crypto import Keyring
from registry.access_log import Reader
from registry.assignment import Assignee, assignable
from registry.phones import InvalidPhone, parse_phone
from registry.residents_audit import AuditRow, copy_audit
from registry.residents_csv import Dongs, LineError, parse_record
from registry.residents_import import IMPORT_LOCK, enrol_residents
from registry.residents_text import CONTACT_SLOTS, LABELS, MESSAGES
from registry.secrecy import NOTE_COLUMNS, open_notes

log = logging.getLogger(__name__)

_SEOUL = ZoneInfo("Asia/Seoul")

# what this module refuses beyond a file row's reasons: code -> (Korean, English)
EDIT_MESSAGES: dict[str, tuple[str, str]] = {
    "home_taken_new": (
        "이미 다른 대상자가 쓰는 가구ID입니다",
        "is already another resident's home",
    ),
    "unknown_manager": (
        "이 구의 담당자가 아닙니다",
        "is not an active care manager of this district",
    ),
    "gateway_id_format": (
        "게이트웨이 ID는 영문·숫자로 시작하고 영문·숫자·_.:- 만 쓸 수 있습니다 (64자까지)",
        "must start with a letter or digit and use only letters, digits and _.:- (64 at most)",
    ),
    "gateway_taken": (
        "이미 등록된 게이트웨이 ID입니다. 이 대상자에게 이미 등록한 게이트웨이라면 '비밀번호 "
        "재발급'으로 새 비밀번호를 받으세요",
        "is already a registered gateway; if it is this resident's gateway already, use "
        "'New password' to get a new password",
    ),
    "gateway_reserved": (
        "MQTT 브로커가 쓰는 이름(관리자, 수집 서비스 등)이라 게이트웨이 ID로 쓸 수 없습니다",
        "is a name the MQTT broker uses (its admin, the ingest service) and cannot be a gateway id",
    ),
    "sensor_taken": (
        "이 게이트웨이에 같은 기기 ID의 센서가 이미 있습니다",
        "is already a sensor of this gateway",
    ),
    "bad_kind": ("센서 종류가 올바르지 않습니다", "is not a sensor kind"),
    "bad_room": ("방 이름이 올바르지 않습니다", "is not a room"),
    "too_many_contacts": (
        f"비상연락처는 {CONTACT_SLOTS}명까지입니다",
        f"at most {CONTACT_SLOTS} emergency contacts",
    ),
}
EDIT_LABELS: dict[str, tuple[str, str]] = {
    "care_manager_id": ("담당자", "assigned care manager"),
    "gateway_id": ("게이트웨이 ID", "gateway id"),
    "vendor_id": ("기기 ID", "device id"),
    "kind": ("센서 종류", "sensor kind"),
    "room": ("방", "room"),
}


def problem_message(error: LineError, lang: str = "ko") -> str:
    """`field: reason` for a row's error or one of this module's, Korean or English."""
    ko, en = MESSAGES.get(error.code) or EDIT_MESSAGES[error.code]
    reason = (en if lang == "en" else ko).format(**dict(error.params))
    label = (LABELS | EDIT_LABELS).get(error.field, (error.field, error.field))
    return f"{label[1] if lang == 'en' else label[0]}: {reason}"


class Refused(ValueError):
    """An enrolment refused as a whole, with every problem found (field, reason code)."""

    def __init__(self, problems: Sequence[LineError]) -> None:
        super().__init__(", ".join(f"{p.field}:{p.code}" for p in problems))
        self.problems = tuple(problems)


def _refuse(field: str, code: str) -> Refused:
    return Refused([LineError(0, field, code)])


@dataclass(frozen=True, slots=True)
class District:
    """An admin's district: its dongs, by code and name."""

    name: str
    dongs: tuple[tuple[str, str], ...]

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(c for c, _ in self.dongs)

    def lookup(self) -> Dongs:
        return Dongs.of(self.dongs)


def district_of(conn: psycopg.Connection[Any], dong_code: str) -> District:
    """The district of `dong_code` and all its dongs."""
    rows = conn.execute(
        """SELECT d.code, d.name, d.district FROM anbu.dong d
            WHERE d.district = (SELECT district FROM anbu.dong WHERE code = %s)
            ORDER BY d.name, d.code""",
        (dong_code,),
    ).fetchall()
    name = str(rows[0][2]) if rows else ""
    return District(name, tuple((str(c), str(n)) for c, n, _ in rows))


def care_managers(conn: psycopg.Connection[Any], district: District) -> list[Assignee]:
    """The district's active care managers a resident can be assigned to (no technician),
    with their dong's name, by dong and name."""
    return assignable(conn, sorted(district.codes))


def inactive_assignee(
    conn: psycopg.Connection[Any], district: District, manager_id: int | None
) -> Assignee | None:
    """The district's resident's care manager when no longer assignable (deactivated since):
    the form keeps showing them, marked, and saving it unchanged keeps them (save_resident)."""
    if manager_id is None:
        return None
    row = conn.execute(
        """SELECT m.id, m.display_name, m.dong_code, d.name FROM anbu.care_manager m
             JOIN anbu.dong d ON d.code = m.dong_code
            WHERE m.id = %s AND NOT m.active AND m.dong_code = ANY(%s)""",
        (manager_id, sorted(district.codes)),
    ).fetchone()
    return None if row is None else Assignee(int(row[0]), str(row[1]), str(row[2]), str(row[3]))


def resident_dong(conn: psycopg.Connection[Any], resident_id: int) -> str | None:
    row = conn.execute(
        "SELECT dong_code FROM anbu.resident WHERE id = %s", (resident_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def gateway_dong(conn: psycopg.Connection[Any], gateway_id: str) -> tuple[int, str] | None:
    """(resident id, dong) of a gateway's home; None for no such gateway (nor a removed one,
    waiting for its account's revocation: no sensor is added to it)."""
    row = conn.execute(
        """SELECT r.id, r.dong_code FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
            WHERE g.id = %s AND g.removed_at IS NULL""",
        (gateway_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def sensor_dong(conn: psycopg.Connection[Any], sensor_id: int) -> tuple[int, str] | None:
    """(resident id, dong) of a sensor's home; None for no such sensor."""
    row = conn.execute(
        """SELECT r.id, r.dong_code FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id
             JOIN anbu.resident r ON r.id = g.resident_id WHERE s.id = %s""",
        (sensor_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A resident as enrolled: the values a form or the API shows, notes opened."""

    id: int
    home: str
    values: dict[str, str]  # by field, as parse_record reads them (contacts as contactN_*)
    care_manager_id: int | None

    @property
    def form_values(self) -> dict[str, str]:
        """The values as a person types them: phones in the national format (010-1234-5678),
        which parse_record reads back to the same E.164 number."""
        return {f: _national(v) if f.endswith("phone") else v for f, v in self.values.items()}


def _national(value: str) -> str:
    """A stored E.164 number as Koreans write it; anything unreadable as it is."""
    try:
        return parse_phone(value).national if value.startswith("+82") else value
    except InvalidPhone:
        return value


def _yes(value: object) -> str:
    return "예" if value else "아니오"


def enrolled(conn: psycopg.Connection[Any], resident_id: int, keyring: Keyring | None) -> Enrolled:
    """A resident's enrolment values (LookupError for no such resident)."""
    cur = conn.execute(
        f"""SELECT id, home, external_id, display_name, birth_year, address, dong_code,
                   mobile_phone, landline_phone, consent_date, consent_recorded_by,
                   consent_sensors, consent_calls, consent_family, care_manager_id, {NOTE_COLUMNS}
              FROM anbu.resident WHERE id = %s""",  # nosec B608  # NOTE_COLUMNS is a constant
        (resident_id,),
    )
    names = [d.name for d in cur.description or ()]
    found = cur.fetchone()
    if found is None:
        raise LookupError(resident_id)
    row = dict(zip(names, found, strict=True))
    notes = open_notes(keyring, row)
    values = {
        f: "" if row[f] is None else str(row[f])
        for f in ("external_id", "display_name", "birth_year", "address", "dong_code",
                  "mobile_phone", "landline_phone", "consent_recorded_by")
    }  # fmt: skip
    values["consent_date"] = row["consent_date"].isoformat() if row["consent_date"] else ""
    for f in ("consent_sensors", "consent_calls", "consent_family"):
        values[f] = _yes(row[f])
    values["health_notes"] = notes.health_notes or ""
    values["access_notes"] = notes.access_notes or ""
    contacts = conn.execute(
        """SELECT name, relationship, phone, may_call FROM anbu.emergency_contact
            WHERE resident_id = %s ORDER BY position""",
        (resident_id,),
    ).fetchall()
    for n in range(1, CONTACT_SLOTS + 1):
        c = contacts[n - 1] if n <= len(contacts) else None
        values[f"contact{n}_name"] = c[0] if c else ""
        values[f"contact{n}_relationship"] = c[1] if c else ""
        values[f"contact{n}_phone"] = c[2] if c else ""
        values[f"contact{n}_may_call"] = _yes(c[3]) if c else ""
    manager = row["care_manager_id"]
    return Enrolled(
        int(row["id"]), str(row["home"]), values, None if manager is None else int(manager)
    )


def save_resident(
    conn: psycopg.Connection[Any],
    values: Mapping[str, str],
    *,
    district: District,
    actor: str,
    resident_id: int | None = None,
    care_manager_id: int | None = None,
    now: datetime | None = None,
    keyring: Keyring | None = None,
) -> int:
    """Create (resident_id None) or replace a resident of `district` from form values; its id.

    One transaction with the assigned care manager; Refused (nothing written) with every
    problem: the row's, an external id or home already taken, a manager from elsewhere.
    """
    at = now if now is not None else datetime.now(UTC)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
        current = None
        if resident_id is not None:
            current = conn.execute(
                """SELECT home, external_id, care_manager_id, status, dong_code
                     FROM anbu.resident WHERE id = %s AND pseudonymised_at IS NULL FOR UPDATE""",
                (resident_id,),
            ).fetchone()
            if current is None:
                raise LookupError(resident_id)
            values = {**values, "home": current[0]}  # the home stays: its gateways hang on it
        row, problems = parse_record(values, district.lookup(), at.astimezone(_SEOUL).date())
        external_id = (values.get("external_id") or "").strip()
        moved = current is None or external_id != current[1]
        ended = _ended_in(conn, district, external_id if moved else None, current)
        if ended:  # coming back after the end of service takes a new case number
            problems.append(LineError(0, "external_id", "resident_ended"))
        elif external_id and moved and _taken(conn, "external_id", external_id, resident_id):
            problems.append(LineError(0, "external_id", "external_id_taken"))
        elif current is None and external_id:  # a new home must be free too
            home = (values.get("home") or "").strip() or external_id
            if _taken(conn, "home", home, None):
                problems.append(LineError(0, "home", "home_taken_new"))
        if values.get(f"contact{CONTACT_SLOTS + 1}_name"):
            problems.append(LineError(0, "emergency_contacts", "too_many_contacts"))
        if current is not None and row is not None and row.dong_code != current[4]:
            # a move between dongs hands over alerts and care managers: alerts.course.transfer
            problems.append(LineError(0, "dong_code", "dong_via_transfer"))
        kept = current is not None and care_manager_id == current[2]  # even if since deactivated
        if (
            care_manager_id is not None
            and not kept
            and care_manager_id not in {m[0] for m in care_managers(conn, district)}
        ):
            problems.append(LineError(0, "care_manager_id", "unknown_manager"))
        if problems or row is None:
            raise Refused(problems)
        if (
            resident_id is not None
            and current is not None
            and current[1] not in (None, external_id)
        ):
            conn.execute(
                "UPDATE anbu.resident SET external_id = %s, updated_at = %s WHERE id = %s",
                (external_id, at, resident_id),
            )
            copy_audit(
                conn, [AuditRow.of(resident_id, "external_id", current[1], external_id)], actor, at
            )
        report = enrol_residents(
            conn, [row], actor=actor, now=at, keyring=keyring, scope=district.codes,
            reader=Reader(actor=actor),  # notes sent are compared with the kept ones: a read
        )  # fmt: skip
        if report.errors:
            raise Refused(report.errors)
        found = conn.execute(
            "SELECT id, care_manager_id FROM anbu.resident WHERE external_id = %s", (external_id,)
        ).fetchone()
        assert found is not None
        rid, before = int(found[0]), found[1]
        if before != care_manager_id:
            conn.execute(
                "UPDATE anbu.resident SET care_manager_id = %s, updated_at = %s WHERE id = %s",
                (care_manager_id, at, rid),
            )
            copy_audit(
                conn, [AuditRow.of(rid, "care_manager_id", before, care_manager_id)], actor, at
            )
    log.info("resident enrolled by a page or the API", extra={"resident_id": rid})
    return rid


def _ended_in(
    conn: psycopg.Connection[Any],
    district: District,
    external_id: str | None,
    current: tuple[Any, ...] | None,
) -> bool:
    """The resident edited, or the one of the district holding `external_id`, has ended."""
    if current is not None and current[3] == "ended":
        return True
    if not external_id:
        return False
    row = conn.execute(
        """SELECT 1 FROM anbu.resident WHERE external_id = %s AND status = 'ended'
              AND pseudonymised_at IS NULL AND dong_code = ANY(%s)""",
        (external_id, sorted(district.codes)),
    ).fetchone()
    return row is not None


def _taken(conn: psycopg.Connection[Any], column: str, value: str, other_than: int | None) -> bool:
    sql = {
        "external_id": "SELECT 1 FROM anbu.resident WHERE external_id = %s AND id <> %s",
        "home": "SELECT 1 FROM anbu.resident WHERE home = %s AND id <> %s",
    }[column]
    return conn.execute(sql, (value, other_than or 0)).fetchone() is not None
