"""Enrol residents from the files districts keep: plan against the registry, then apply.

All or nothing: a file with any bad row writes nothing (unless `skip_bad`), and a real run is
one transaction. Idempotent on the external id (the city's case number): a re-import updates
what differs and leaves the rest, so running the same file twice changes nothing. A resident
enrolled before without an external id (by the demo or a page) is adopted when the file names
its home. Every creation and every changed field is audited in `anbu.resident_changes`, with
personal values masked there. Logs carry counts only, never a cell of the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.crypto import Keyring
from registry.residents_audit import AUDITED, AuditRow, audit_value, copy_audit
from registry.residents_csv import (
    Dongs,
    EmergencyContact,
    LineError,
    ResidentRow,
    parse_file,
)
from registry.secrecy import open_notes, seal_notes

log = logging.getLogger(__name__)

_SEOUL = ZoneInfo("Asia/Seoul")
IMPORT_LOCK = 7_470_315  # advisory lock: one enrolment import at a time

# resident columns an import writes, as ResidentRow field -> column of anbu.resident
_COLUMN = {f: f for f in AUDITED if f not in ("emergency_contacts", "health_notes")} | {
    "health_notes": "notes"
}
_EXISTING = f"""
SELECT id, external_id, {", ".join(_COLUMN.values())}, notes_sealed, access_notes_sealed,
       sealed_key_id FROM anbu.resident
 WHERE external_id = ANY(%(ids)s) OR home = ANY(%(homes)s)
"""  # nosec B608  # column names from the constant _COLUMN table; values are parameters


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    encoding: str
    rows: int
    created: int
    updated: int
    unchanged: int
    errors: tuple[LineError, ...]
    warnings: tuple[LineError, ...]
    written: bool

    @property
    def bad_lines(self) -> int:
        return len({e.line for e in self.errors})


@dataclass(slots=True)
class _Plan:
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[int, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    errors: list[LineError] = field(default_factory=list)


def load_dongs(conn: psycopg.Connection[Any]) -> Dongs:
    return Dongs.of((str(c), str(n)) for c, n in conn.execute("SELECT code, name FROM anbu.dong"))


def import_residents(
    conn: psycopg.Connection[Any],
    data: bytes,
    *,
    actor: str,
    dry_run: bool = False,
    skip_bad: bool = False,
    now: datetime | None = None,
    keyring: Keyring | None = None,
    dongs: Dongs | None = None,
) -> ImportReport:
    """Import an enrolment file (bytes as read from disk); commits unless dry_run or refused.

    FileRefused when the file cannot be read at all (encoding, a workbook, an empty file).
    Notes are sealed under `keyring` (DataKeyMissing when there are notes and no keyring).
    """
    at = now if now is not None else datetime.now(UTC)
    with conn.transaction():
        if not dry_run:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
        parsed = parse_file(data, dongs or load_dongs(conn), at.astimezone(_SEOUL).date())
        bad = {e.line for e in parsed.errors}
        good = [r for r in parsed.rows if r.line not in bad]
        scope = dongs.codes if dongs else None  # an admin's district: only its residents
        plan = _plan(conn, good, lock=not dry_run, keyring=keyring, scope=scope)
        errors = tuple(sorted((*parsed.errors, *plan.errors), key=lambda e: (e.line, e.field)))
        written = (
            not dry_run and not (errors and not skip_bad) and bool(plan.creates or plan.updates)
        )
        if written:
            _apply(conn, plan, actor, at, keyring)
    lines = {r.line for r in parsed.rows} | {e.line for e in errors if e.line > 1}
    report = ImportReport(
        parsed.encoding, len(lines), len(plan.creates), len(plan.updates), plan.unchanged,
        errors, parsed.warnings, written,
    )  # fmt: skip
    log.info(
        "resident import: rows=%d created=%d updated=%d unchanged=%d bad_lines=%d dry_run=%s"
        " written=%s encoding=%s",
        report.rows, report.created, report.updated, report.unchanged, report.bad_lines,
        dry_run, written, report.encoding,
    )  # fmt: skip
    return report


def enrol_residents(
    conn: psycopg.Connection[Any],
    rows: Sequence[ResidentRow],
    *,
    actor: str,
    now: datetime | None = None,
    keyring: Keyring | None = None,
    scope: frozenset[str] | None = None,
) -> ImportReport:
    """Enrol or update checked residents (a page's or the API's, from parse_record) with the
    import's rules and audit, in one transaction; nothing is written when any row conflicts."""
    at = now if now is not None else datetime.now(UTC)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
        plan = _plan(conn, list(rows), lock=True, keyring=keyring, scope=scope)
        written = not plan.errors and bool(plan.creates or plan.updates)
        if written:
            _apply(conn, plan, actor, at, keyring)
    return ImportReport(
        "", len(rows), len(plan.creates), len(plan.updates), plan.unchanged,
        tuple(plan.errors), (), written,
    )  # fmt: skip


def _plan(
    conn: psycopg.Connection[Any],
    rows: list[ResidentRow],
    *,
    lock: bool,
    keyring: Keyring | None,
    scope: frozenset[str] | None = None,
) -> _Plan:
    """Sort good rows into creations, updates (with the old values), unchanged, conflicts."""
    plan = _Plan()
    if not rows:
        return plan
    ids = [r.external_id for r in rows]
    homes = [r.home or r.external_id for r in rows]
    cur = conn.execute(_EXISTING + (" FOR UPDATE" if lock else ""), {"ids": ids, "homes": homes})
    names = [d.name for d in cur.description or ()]
    existing = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for e in existing:  # compared and carried in the clear, sealed again when written
        opened = open_notes(keyring, e)
        e["notes"], e["access_notes"] = opened.health_notes, opened.access_notes
    by_id = {e["external_id"]: e for e in existing if e["external_id"] is not None}
    by_home = {e["home"]: e for e in existing}
    contacts = _contacts(conn, [e["id"] for e in existing])
    claimed: dict[str, int] = {}  # homes this file gives, by row: two rows never share one
    for row in rows:
        new = _values(row)
        old = by_id.get(row.external_id)
        home = row.home or (old["home"] if old else row.external_id)
        first = claimed.setdefault(home, row.line)
        if first != row.line:
            plan.errors.append(LineError(row.line, "home", "duplicate_home", (("first", first),)))
            continue
        if old is None:
            holder = by_home.get(row.home or row.external_id)
            if holder is not None and holder["external_id"] is not None:
                plan.errors.append(LineError(row.line, "home", "home_taken"))
                continue
            if holder is None:
                new.setdefault("home", row.external_id)
                plan.creates.append({**_blank(), **new})
                continue
            old = holder
        elif row.home is not None and row.home != old["home"]:
            holder = by_home.get(row.home)
            if holder is not None and holder["id"] != old["id"]:
                plan.errors.append(LineError(row.line, "home", "home_taken"))
                continue
        if scope is not None and old["dong_code"] not in scope:
            plan.errors.append(LineError(row.line, "external_id", "other_district"))
            continue
        before = {f: old[_COLUMN[f]] for f in _COLUMN} | {
            "external_id": old["external_id"],
            "emergency_contacts": contacts.get(old["id"], ()),
        }
        changed = {
            f: v
            for f, v in new.items()
            if f != "line" and audit_value(f, before[f]) != audit_value(f, v)
        }
        if changed:
            plan.updates.append((old["id"], {"line": row.line, **changed}, before))
        else:
            plan.unchanged += 1
    return plan


def _values(row: ResidentRow) -> dict[str, Any]:
    """The fields the file carries for this row (absent columns are left as they are)."""
    values = {f: getattr(row, f) for f in row.present if f in AUDITED}
    if values.get("home", "") is None:
        del values["home"]  # an empty home cell keeps the home (a new one's is its external id)
    return {"line": row.line, "external_id": row.external_id, **values}


_TEXT_CONSENT = ("consent_date", "consent_recorded_by")


def _blank() -> dict[str, Any]:
    """A new resident's values for the columns the file does not carry."""
    return {f: (False if f.startswith("consent_") and f not in _TEXT_CONSENT else None)
            for f in AUDITED} | {"emergency_contacts": ()}  # fmt: skip


def _contacts(
    conn: psycopg.Connection[Any], resident_ids: list[int]
) -> dict[int, tuple[EmergencyContact, ...]]:
    found: dict[int, tuple[EmergencyContact, ...]] = {}
    if resident_ids:
        for rid, name, rel, phone, may_call in conn.execute(
            """SELECT resident_id, name, relationship, phone, may_call FROM anbu.emergency_contact
                WHERE resident_id = ANY(%s) ORDER BY resident_id, position""",
            (resident_ids,),
        ):
            found[rid] = (*found.get(rid, ()), EmergencyContact(name, rel, phone, may_call))
    return found


_STAGE = """
CREATE TEMP TABLE resident_import_stage (
    line int, id bigint, external_id text, home text, dong_code text, display_name text,
    birth_year smallint, address text, mobile_phone text, landline_phone text,
    consent_date date, consent_recorded_by text, consent_sensors boolean, consent_calls boolean,
    consent_family boolean, notes_sealed bytea, access_notes_sealed bytea, sealed_key_id text
) ON COMMIT DROP
"""
_STAGED = ("line", "id", "external_id", "home", "dong_code", "display_name", "birth_year",
           "address", "mobile_phone", "landline_phone", "consent_date", "consent_recorded_by",
           "consent_sensors", "consent_calls", "consent_family", "notes_sealed",
           "access_notes_sealed", "sealed_key_id")  # fmt: skip
_WRITTEN = _STAGED[2:]
_SEALED_STAGE = ("notes_sealed", "access_notes_sealed", "sealed_key_id")


def _apply(
    conn: psycopg.Connection[Any], plan: _Plan, actor: str, at: datetime, keyring: Keyring | None
) -> None:
    """Write the plan in the caller's transaction: residents (notes sealed, never staged in
    the clear), contacts, audit rows."""
    conn.execute(_STAGE)
    merged = [(None, c) for c in plan.creates] + [
        (rid, {**before, **changed}) for rid, changed, before in plan.updates
    ]
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY resident_import_stage ({', '.join(_STAGED)}) FROM STDIN") as copy,
    ):
        for rid, values in merged:
            row = {"id": rid, **{_COLUMN.get(f, f): v for f, v in values.items()}}
            sealed = seal_notes(keyring, row.pop("notes", None), row.pop("access_notes", None))
            row |= dict(zip(_SEALED_STAGE, sealed, strict=True))
            copy.write_row([row.get(c) for c in _STAGED])
    cols = ", ".join(_WRITTEN)
    derived = "COALESCE(s.mobile_phone, s.landline_phone), s.consent_sensors, %s"
    ids: dict[int, int] = {
        line: rid
        for line, rid in conn.execute(
            f"""WITH made AS (
                    INSERT INTO anbu.resident ({cols}, phone, consent, created_at)
                    SELECT {", ".join("s." + c for c in _WRITTEN)}, {derived}
                      FROM resident_import_stage s WHERE s.id IS NULL ORDER BY s.line
                    RETURNING id, external_id)
                SELECT s.line, made.id FROM made
                  JOIN resident_import_stage s ON s.external_id = made.external_id""",  # nosec B608  # column names from the constant _WRITTEN; values are parameters
            (at,),
        )
    }
    conn.execute(
        f"""UPDATE anbu.resident r SET ({cols}, phone, consent, updated_at) =
                   ({", ".join("s." + c for c in _WRITTEN)}, {derived}),
                   notes = NULL, access_notes = NULL
              FROM resident_import_stage s WHERE s.id = r.id""",  # nosec B608  # column names from the constant _WRITTEN; values are parameters
        (at,),
    )
    contact_sets = [(ids[c["line"]], c["emergency_contacts"]) for c in plan.creates] + [
        (rid, changed["emergency_contacts"])
        for rid, changed, _ in plan.updates
        if "emergency_contacts" in changed
    ]
    updated = [rid for rid, changed, _ in plan.updates if "emergency_contacts" in changed]
    if updated:
        conn.execute("DELETE FROM anbu.emergency_contact WHERE resident_id = ANY(%s)", (updated,))
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY anbu.emergency_contact (resident_id, position, name, relationship, phone, may_call)"
            " FROM STDIN"
        ) as copy,
    ):
        for rid, contacts in contact_sets:
            for position, c in enumerate(contacts, start=1):
                copy.write_row((rid, position, c.name, c.relationship, c.phone, c.may_call))
    audit = [
        AuditRow(ids[c["line"]], "enrolled", None, c["external_id"], False) for c in plan.creates
    ]
    for rid, changed, before in plan.updates:
        audit += [AuditRow.of(rid, f, before[f], v) for f, v in changed.items() if f != "line"]
    copy_audit(conn, audit, actor, at)
    conn.execute("DROP TABLE resident_import_stage")  # ON COMMIT is too late inside a savepoint
