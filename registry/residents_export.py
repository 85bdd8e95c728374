"""`anbu export residents`: the enrolment file of a district (or one dong), for the city's systems.

The columns and words are the import's own (residents_text), so an export read back by
`anbu import residents` changes nothing. Phones are written as Koreans write them (a cell of
`+8210…` would be read by Excel as a number). UTF-8 with a BOM by default, which Excel opens
as Korean; CP949 when asked. Health and access notes only when asked: they are the most
sensitive cells, and a file without their columns leaves them as they are on import. A cell a
spreadsheet would run as a formula (`=…`, `-…`, `@…`) is written with a leading `'`, which the
import drops again.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import psycopg

from core.crypto import Keyring
from core.spreadsheet import neutralise
from registry.access_log import Reader, record_accesses
from registry.phones import parse_phone
from registry.residents_text import COLUMNS, CONTACT_SLOTS
from registry.secrecy import NOTE_COLUMNS, open_notes

NOTES = ("health_notes", "access_notes")
_YES_NO = {"ko": ("예", "아니오"), "en": ("yes", "no")}
_SELECT = """
SELECT r.id, r.external_id, r.display_name, r.birth_year, r.address, r.dong_code,
       r.mobile_phone, r.landline_phone, r.home, r.consent_date, r.consent_recorded_by,
       r.consent_sensors, r.consent_calls, r.consent_family, {notes}
  FROM anbu.resident r
 WHERE r.external_id IS NOT NULL AND (%(dong)s::text IS NULL OR r.dong_code = %(dong)s)
 ORDER BY r.dong_code, r.external_id
"""


def export_residents(
    conn: psycopg.Connection[Any],
    *,
    dong: str | None = None,
    lang: str = "ko",
    encoding: str = "utf-8-sig",
    include_notes: bool = False,
    keyring: Keyring | None = None,
    reader: Reader | None = None,
) -> tuple[bytes, int]:
    """(the file's bytes, residents in it): every resident with an external id, or one dong's.
    Notes (only when asked) are opened with `keyring`, a DataKeyError when it cannot, and each
    resident's notes read by `reader` is recorded in the access log (the caller commits)."""
    notes = NOTE_COLUMNS if include_notes else "NULL AS health_notes"
    cur = conn.execute(_SELECT.format(notes=notes), {"dong": dong})
    names = [d.name for d in cur.description or ()]
    residents = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    if include_notes:
        for r in residents:
            opened = open_notes(keyring, r)
            r["health_notes"], r["access_notes"] = opened.health_notes, opened.access_notes
        if reader is not None:
            record_accesses(conn, reader, [r["id"] for r in residents], "export", NOTES)
    contacts: dict[int, list[tuple[str, str, str, bool]]] = {}
    for rid, name, rel, phone, may_call in conn.execute(
        """SELECT resident_id, name, relationship, phone, may_call FROM anbu.emergency_contact
            WHERE resident_id = ANY(%s) ORDER BY resident_id, position""",
        ([r["id"] for r in residents],),
    ):
        contacts.setdefault(rid, []).append((name, rel, phone, may_call))
    columns = [c for c in COLUMNS if include_notes or c.field not in NOTES]
    yes, no = _YES_NO["en" if lang == "en" else "ko"]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.en if lang == "en" else c.ko for c in columns])
    for r in residents:
        for n, (name, rel, phone, may_call) in enumerate(
            contacts.get(r["id"], [])[:CONTACT_SLOTS], 1
        ):
            r |= {f"contact{n}_name": name, f"contact{n}_relationship": rel,
                  f"contact{n}_phone": phone, f"contact{n}_may_call": may_call}  # fmt: skip
        writer.writerow([_cell(c.field, r.get(c.field), yes, no) for c in columns])
    return out.getvalue().encode(encoding, errors="strict"), len(residents)


def _cell(field: str, value: Any, yes: str, no: str) -> str:
    """A value as the file writes it: phones as 010-…, never a cell a spreadsheet would run."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes if value else no
    if field.endswith("phone") and isinstance(value, str) and value.startswith("+82"):
        return parse_phone(value).national
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return neutralise(str(value))
