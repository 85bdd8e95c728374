"""Residents' health and access notes, sealed at rest under the data keyring (core/crypto).

The registry writes notes only sealed (`notes_sealed`, `access_notes_sealed`, with the key's id
in `sealed_key_id`); the plaintext columns `notes` and `access_notes` hold only what was written
before sealing existed, read as a fallback until `reseal_notes` (part of a key rotation,
registry.key_rotation) seals and empties them. A database dump or a SELECT of the raw columns
alone reveals no note.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from core.crypto import DataKeyMissing, Keyring, UnknownDataKey

log = logging.getLogger(__name__)

# field (as the import and the audit name it) -> (sealed column, legacy plaintext column)
SEALED = {"health_notes": ("notes_sealed", "notes"), "access_notes": ("access_notes_sealed", "access_notes")}  # fmt: skip
# Selected wherever notes are read: open_notes takes a row (dict) with these keys.
NOTE_COLUMNS = "notes_sealed, access_notes_sealed, sealed_key_id, notes, access_notes"
ROTATE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Notes:
    """A resident's notes in the clear, for the people allowed to read them."""

    health_notes: str | None
    access_notes: str | None


def _need(keyring: Keyring | None) -> Keyring:
    if keyring is None:
        raise DataKeyMissing("ANBU_DATA_KEY is not set: notes are sealed with it")
    return keyring


def seal_notes(
    keyring: Keyring | None, health_notes: str | None, access_notes: str | None
) -> tuple[bytes | None, bytes | None, str | None]:
    """(notes_sealed, access_notes_sealed, sealed_key_id) for these notes; all None if none."""
    if not health_notes and not access_notes:
        return None, None, None
    ring = _need(keyring)
    health = ring.seal(health_notes, "health_notes").blob if health_notes else None
    access = ring.seal(access_notes, "access_notes").blob if access_notes else None
    return health, access, ring.current_id


def open_note(keyring: Keyring | None, row: dict[str, Any], field: str) -> str | None:
    """One note (`health_notes` or `access_notes`) of a row selected with NOTE_COLUMNS: sealed,
    opened; else the legacy plaintext. The other note stays sealed. DataKeyError (a clear one)
    when a key is missing or does not open it."""
    sealed, plain = SEALED[field]
    blob = row.get(sealed)
    if blob is None:
        return row.get(plain)
    return _need(keyring).open(blob, row["sealed_key_id"], field)


def has_note(row: dict[str, Any], field: str) -> bool:
    """Whether a row selected with NOTE_COLUMNS keeps this note (sealed or not); nothing opened."""
    sealed, plain = SEALED[field]
    return row.get(sealed) is not None or row.get(plain) is not None


def open_notes(keyring: Keyring | None, row: dict[str, Any]) -> Notes:
    """The notes of a row selected with NOTE_COLUMNS: the sealed ones opened, else the legacy
    plaintext. DataKeyError (a clear one) when a key is missing or does not open them."""
    return Notes(**{field: open_note(keyring, row, field) for field in SEALED})


def _note_row(conn: psycopg.Connection[Any], resident_id: int) -> dict[str, Any]:
    cur = conn.execute(f"SELECT {NOTE_COLUMNS} FROM anbu.resident WHERE id = %s", (resident_id,))  # nosec B608  # NOTE_COLUMNS is a module constant; the id is a parameter
    names = [d.name for d in cur.description or ()]
    row = cur.fetchone()
    return dict(zip(names, row, strict=True)) if row else {}


def resident_notes(
    conn: psycopg.Connection[Any], resident_id: int, keyring: Keyring | None
) -> Notes:
    """One resident's notes, opened."""
    return open_notes(keyring, _note_row(conn, resident_id))


def resident_note(
    conn: psycopg.Connection[Any], resident_id: int, keyring: Keyring | None, field: str
) -> str | None:
    """One resident's one note, opened (the other is never opened): an installer's page opens
    the access notes only."""
    return open_note(keyring, _note_row(conn, resident_id), field)


def seal_changes(
    keyring: Keyring | None, stored: dict[str, Any], changes: dict[str, str | None]
) -> tuple[tuple[bytes | None, bytes | None, str | None], tuple[str, ...]]:
    """(notes_sealed, access_notes_sealed, sealed_key_id) of a row selected with NOTE_COLUMNS
    whose notes in `changes` (field -> new text, None clears) are replaced and whose others are
    kept, and the kept notes that had to be opened. A kept note is carried sealed as it is,
    never opened, unless it must join a new note under the current key (it was sealed under an
    older one): then it is opened to be sealed again, and named so the caller records the read.
    A kept legacy plaintext note is sealed."""
    clear: dict[str, str | None] = {}
    blobs: dict[str, bytes] = {}
    for field, (sealed, plain) in SEALED.items():
        if field in changes:
            clear[field] = changes[field] or None
        elif row_blob := stored.get(sealed):
            blobs[field] = row_blob
        else:
            clear[field] = stored.get(plain)
    if not any(clear.values()):  # nothing to seal: the kept blobs as they are
        kept = {f: blobs.get(f) for f in SEALED}
        kid = stored.get("sealed_key_id") if any(kept.values()) else None
        return (kept["health_notes"], kept["access_notes"], kid), ()
    ring = _need(keyring)
    opened: list[str] = []
    for field, blob in blobs.items():
        if stored.get("sealed_key_id") == ring.current_id:
            continue
        clear[field] = ring.open(blob, stored["sealed_key_id"], field)
        opened.append(field)
    out: dict[str, bytes | None] = {}
    for field in SEALED:
        text = clear.get(field)
        carried = None if field in opened else blobs.get(field)
        out[field] = carried or (ring.seal(text, field).blob if text else None)
    return (out["health_notes"], out["access_notes"], ring.current_id), tuple(opened)


def set_notes(
    conn: psycopg.Connection[Any],
    resident_id: int,
    keyring: Keyring | None,
    health_notes: str | None,
    access_notes: str | None,
) -> None:
    """Replace a resident's notes, sealed (None clears one)."""
    health, access, kid = seal_notes(keyring, health_notes, access_notes)
    conn.execute(
        """UPDATE anbu.resident SET notes_sealed = %s, access_notes_sealed = %s,
                  sealed_key_id = %s, notes = NULL, access_notes = NULL WHERE id = %s""",
        (health, access, kid, resident_id),
    )


@dataclass(frozen=True, slots=True)
class KeyCensus:
    """How residents' notes are held: rows per key id, and rows still in plaintext."""

    by_key: dict[str, int]
    plaintext: int


def key_census(conn: psycopg.Connection[Any]) -> KeyCensus:
    by_key = {
        str(k): int(n)
        for k, n in conn.execute(
            """SELECT sealed_key_id, count(*) FROM anbu.resident
                WHERE sealed_key_id IS NOT NULL GROUP BY 1 ORDER BY 1"""
        )
    }
    row = conn.execute(
        "SELECT count(*) FROM anbu.resident WHERE notes IS NOT NULL OR access_notes IS NOT NULL"
    ).fetchone()
    return KeyCensus(by_key, int(row[0]) if row else 0)


_STALE = """
SELECT id, notes_sealed, access_notes_sealed, sealed_key_id, notes, access_notes
  FROM anbu.resident
 WHERE id > %(after)s
   AND ((sealed_key_id IS NOT NULL AND sealed_key_id <> %(current)s)
        OR notes IS NOT NULL OR access_notes IS NOT NULL)
 ORDER BY id LIMIT %(batch)s FOR UPDATE
"""


def reseal_notes(conn: psycopg.Connection[Any], keyring: Keyring, batch: int = ROTATE_BATCH) -> int:
    """Re-seal under the current key every resident whose notes are under another key or still
    in plaintext, committing each batch; returns how many were re-sealed. Idempotent: a rerun
    after an interruption carries on. Nothing is changed in a batch holding a note no
    configured key opens: UnknownDataKey names the key id and the first resident id. A key
    rotation as a whole (care managers' TOTP secrets first) is registry.key_rotation."""
    done, after = 0, 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                _STALE, {"after": after, "current": keyring.current_id, "batch": batch}
            )
            names = [d.name for d in cur.description or ()]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            if not rows:
                return done
            updates = []
            for row in rows:
                try:
                    notes = open_notes(keyring, row)
                except UnknownDataKey as exc:
                    raise UnknownDataKey(f"resident {row['id']}: {exc}") from None
                updates.append(
                    (*seal_notes(keyring, notes.health_notes, notes.access_notes), row["id"])
                )
            with conn.cursor() as up:
                up.executemany(
                    """UPDATE anbu.resident SET notes_sealed = %s, access_notes_sealed = %s,
                              sealed_key_id = %s, notes = NULL, access_notes = NULL
                        WHERE id = %s""",
                    updates,
                )
        done += len(rows)
        after = int(rows[-1]["id"])
        log.info("notes re-sealed", extra={"residents": done, "key_id": keyring.current_id})
