"""Enrol residents from the files districts keep: plan against the registry, then apply.

All or nothing: a file with any bad row writes nothing (unless `skip_bad`), and a real run is
one transaction. Idempotent on the external id (the city's case number): a re-import updates
what differs and leaves the rest, so running the same file twice changes nothing but the notes
it carries (sealed again, below). A resident enrolled before without an external id (by the demo
or a page) is adopted when the file names its home. Every creation and every changed field is
audited in `anbu.resident_changes`, with personal values masked there. Logs carry counts only,
never a cell of the file.

Notes are never opened to be compared: a file row that carries a note replaces it and counts
as an update, whatever it says, so neither a dry run nor the audit tells whether a guessed
note was right. A case number this import may not use (another district's resident's, or an
ended service's, even of this district: coming back takes a new case number) gets one answer,
naming neither. A pseudonymised resident is never matched, and a dong changes only by a
transfer (alerts.course), never by an import.
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
from registry.access_log import Reader, record_access
from registry.residents_audit import AUDITED, AuditRow, audit_value, copy_audit, masked_value
from registry.residents_csv import (
    Dongs,
    EmergencyContact,
    LineError,
    ResidentRow,
    parse_file,
)
from registry.secrecy import SEALED, has_note, open_note, seal_changes, seal_notes

log = logging.getLogger(__name__)

_SEOUL = ZoneInfo("Asia/Seoul")
IMPORT_LOCK = 7_470_315  # advisory lock: one enrolment import at a time

# resident columns an import writes, as ResidentRow field -> column of anbu.resident
_COLUMN = {f: f for f in AUDITED if f not in ("emergency_contacts", "health_notes")} | {
    "health_notes": "notes"
}
_EXISTING = f"""
SELECT id, external_id, {", ".join(_COLUMN.values())}, notes_sealed, access_notes_sealed,
       sealed_key_id, status FROM anbu.resident
 WHERE (external_id = ANY(%(ids)s) OR home = ANY(%(homes)s)) AND pseudonymised_at IS NULL
"""  # nosec B608  # column names from the constant _COLUMN table; values are parameters
_NOTE_STORED = ("notes_sealed", "access_notes_sealed", "sealed_key_id", "notes", "access_notes")
SEALED_OLD = "(봉인)"  # the audit's old value of a note replaced without being opened


class _Kept:
    """A note kept sealed: not opened, so its text is unknown here."""


_KEPT = _Kept()


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
    stored: dict[int, dict[str, Any]] = field(default_factory=dict)  # sealed notes, by id


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
    reader: Reader | None = None,
) -> ImportReport:
    """Enrol or update checked residents (a page's or the API's, from parse_record) with the
    import's rules and audit, in one transaction; nothing is written when any row conflicts.
    With a `reader` (the person editing), a note sent is compared with the one kept, opened and
    the read recorded in the access log, so an edit that leaves it alone does not rewrite it."""
    at = now if now is not None else datetime.now(UTC)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
        plan = _plan(conn, list(rows), lock=True, keyring=keyring, scope=scope, reader=reader)
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
    reader: Reader | None = None,
) -> _Plan:
    """Sort good rows into creations, updates (with the old values), unchanged, conflicts.
    Notes are opened only with a `reader`, whose read is recorded; else a note sent is new."""
    plan = _Plan()
    if not rows:
        return plan
    ids = [r.external_id for r in rows]
    homes = [r.home or r.external_id for r in rows]
    cur = conn.execute(_EXISTING + (" FOR UPDATE" if lock else ""), {"ids": ids, "homes": homes})
    names = [d.name for d in cur.description or ()]
    existing = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for e in existing:  # notes stay sealed: only whether one is kept is known
        stored = plan.stored[e["id"]] = {c: e[c] for c in _NOTE_STORED}
        for f in SEALED:
            e[_COLUMN[f]] = _KEPT if has_note(stored, f) else None
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
        if (scope is not None and old["dong_code"] not in scope) or old["status"] == "ended":
            # another district's, or an ended service's (coming back takes a new case number):
            # one answer for both, so a dry run tells nothing of other districts
            plan.errors.append(LineError(row.line, "external_id", "external_id_taken"))
            continue
        if "dong_code" in new and new["dong_code"] != old["dong_code"]:
            # a move between dongs hands over alerts and care managers: alerts.course.transfer
            plan.errors.append(LineError(row.line, "dong_code", "dong_via_transfer"))
            continue
        before = {f: old[_COLUMN[f]] for f in _COLUMN} | {
            "external_id": old["external_id"],
            "emergency_contacts": contacts.get(old["id"], ()),
        }
        sent = [f for f in SEALED if f in new and before[f] is _KEPT]
        if reader is not None and sent:  # a person's edit: compared, the read recorded
            for f in sent:
                before[f] = open_note(keyring, plan.stored[old["id"]], f)
            record_access(conn, reader, old["id"], "notes", sent)
        changed = {f: v for f, v in new.items() if f != "line" and _differs(f, before[f], v)}
        if changed:
            plan.updates.append((old["id"], {"line": row.line, **changed}, before))
        else:
            plan.unchanged += 1
    return plan


def _differs(field: str, old: Any, new: Any) -> bool:
    """Whether a value changes; a note kept sealed (not opened) is replaced by any note sent."""
    if old is _KEPT:
        return True
    return audit_value(field, old) != audit_value(field, new)


def _audit_row(resident_id: int, field: str, old: Any, new: Any) -> AuditRow:
    if old is _KEPT:  # replaced unopened: the old note's length is not known either
        return AuditRow(resident_id, field, SEALED_OLD, masked_value(field, new), True)
    return AuditRow.of(resident_id, field, old, new)


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
    merged = [(None, c, c) for c in plan.creates] + [
        (rid, {**before, **changed}, changed) for rid, changed, before in plan.updates
    ]
    opened: list[tuple[int, tuple[str, ...]]] = []
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY resident_import_stage ({', '.join(_STAGED)}) FROM STDIN") as copy,
    ):
        for rid, values, changed in merged:
            row = {"id": rid, **{_COLUMN.get(f, f): v for f, v in values.items()}}
            health, access = row.pop("notes", None), row.pop("access_notes", None)
            if rid is None:
                sealed = seal_notes(keyring, health, access)
            else:  # the notes sent replace the kept ones; the others are carried sealed
                notes = {f: changed[f] for f in SEALED if f in changed}
                sealed, reopened = seal_changes(keyring, plan.stored[rid], notes)
                if reopened:
                    opened.append((rid, reopened))
            row |= dict(zip(_SEALED_STAGE, sealed, strict=True))
            copy.write_row([row.get(c) for c in _STAGED])
    for rid, fields in opened:  # kept notes sealed again under the current key: a read
        record_access(conn, Reader(actor=actor), rid, "notes", fields)
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
    # the update's triggers pull the homes' sweep due times in (migration 0061): their rows are
    # locked first, in ascending order like ingest's and the sweep's, never in the join's order
    conn.execute(
        """SELECT 1 FROM anbu.sweep_due WHERE resident_id IN
               (SELECT id FROM resident_import_stage WHERE id IS NOT NULL)
            ORDER BY resident_id FOR NO KEY UPDATE"""
    )
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
        audit += [_audit_row(rid, f, before[f], v) for f, v in changed.items() if f != "line"]
    copy_audit(conn, audit, actor, at)
    conn.execute("DROP TABLE resident_import_stage")  # ON COMMIT is too late inside a savepoint
