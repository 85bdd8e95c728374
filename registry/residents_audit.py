"""How enrolment changes are written to `anbu.resident_changes`: who, when, field, old -> new.

Personal values are masked as Korean public bodies mask them on screen (홍*동, 010-****-5678,
the first words of an address, a note's length), so the audit says what changed and who did
it without becoming a second copy of the personal data a retention rule must reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

from registry.phones import InvalidPhone, parse_phone

# fields of a resident an enrolment writes, in the audit's words (= ResidentRow's fields)
AUDITED = ("home", "dong_code", "display_name", "birth_year", "address", "mobile_phone",
           "landline_phone", "emergency_contacts", "consent_date", "consent_recorded_by",
           "consent_sensors", "consent_calls", "consent_family", "health_notes",
           "access_notes")  # fmt: skip
PERSONAL = frozenset({"display_name", "address", "mobile_phone", "landline_phone",
                      "emergency_contacts", "health_notes", "access_notes",
                      "consent_recorded_by"})  # fmt: skip


def audit_value(field: str, value: Any) -> str | None:
    """The exact text of a value, to compare an old value with a new one (never stored)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if field == "emergency_contacts":
        return "|".join(f"{c.name}/{c.relationship}/{c.phone}/{c.may_call}" for c in value) or None
    return str(value)


def mask_name(name: str) -> str:
    """홍길동 -> 홍*동, 홍길 -> 홍*, and the same for names in Latin letters."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(e164: str) -> str:
    """+821012345678 -> 010-****-5678."""
    try:
        national = parse_phone(e164).national
    except InvalidPhone:
        return "***"
    head, _, tail = national.rpartition("-")
    prefix = head.split("-")[0]
    return f"{prefix}-{'*' * (len(head) - len(prefix) - 1)}-{tail}"


def masked_value(field: str, value: Any) -> str | None:
    """What the audit stores for a personal field: enough to see a change, not the data."""
    if value is None or value == ():
        return None
    if field in ("display_name", "consent_recorded_by"):
        return mask_name(str(value))
    if field == "address":
        words = str(value).split()
        return " ".join(words[:2]) + (" …" if len(words) > 2 else "")
    if field in ("mobile_phone", "landline_phone"):
        return mask_phone(str(value))
    if field == "emergency_contacts":
        return ", ".join(
            f"{c.relationship or '-'}({'연락동의' if c.may_call else '미동의'}) {mask_phone(c.phone)}"
            for c in value
        )
    return f"{len(str(value))}자"  # health and access notes


@dataclass(frozen=True, slots=True)
class AuditRow:
    resident_id: int
    field: str
    old_value: str | None
    new_value: str | None
    masked: bool

    @classmethod
    def of(cls, resident_id: int, field: str, old: Any, new: Any) -> AuditRow:
        if field in PERSONAL:
            return cls(resident_id, field, masked_value(field, old), masked_value(field, new), True)
        return cls(resident_id, field, audit_value(field, old), audit_value(field, new), False)


def copy_audit(
    conn: psycopg.Connection[Any], rows: Sequence[AuditRow], actor: str, at: datetime
) -> None:
    """Append the rows, by `actor` (e.g. 'cli:kim'), in the caller's transaction."""
    with (
        conn.cursor() as cur,
        cur.copy(
            """COPY anbu.resident_changes
                   (resident_id, actor, at, field, old_value, new_value, masked) FROM STDIN"""
        ) as copy,
    ):
        for r in rows:
            copy.write_row((r.resident_id, actor, at, r.field, r.old_value, r.new_value, r.masked))
