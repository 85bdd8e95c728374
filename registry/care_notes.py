"""Care notes (돌봄 메모): what a resident's care manager writes on their card after a visit or a
call, sealed at rest, never rewritten (migration 0075).

A correction is a new note naming the one it corrects; the database refuses any other change
but a key rotation's re-seal and the retention purge's emptying (`erase_bodies`). Each note
written is audited in anbu.resident_changes ('care_note', ids only). Bodies are opened only for
the reader the dashboards let read them; nothing here logs one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg

from core.crypto import DataKeyError, DataKeyMissing, Keyring, UnknownDataKey
from core.db import keyset_page
from registry.changes import InvalidChange, ResidentEnded, ResidentNotFound, record_changes

log = logging.getLogger(__name__)

NOTE_MAX_CHARS = 2000
KINDS = ("visit", "call", "other")  # the table's CHECK
ROTATE_BATCH = 500


class NoteNotFound(LookupError):
    """No such note of this resident (another resident's notes are invisible)."""


class NoteCorrected(InvalidChange):
    """The note was corrected already: the correction is to be corrected, not the note."""


TOKEN_MAX_CHARS = 64  # the table's CHECK


@dataclass(frozen=True, slots=True)
class CareNote:
    """A note as its readers see it: `body` None when emptied by the retention purge or when
    `unopened` (no configured key opens it)."""

    id: int
    resident_id: int
    written_by: int
    writer_name: str
    written_at: datetime
    kind: str
    body: str | None
    unopened: bool
    corrects: int | None
    corrected_by: int | None  # the note correcting this one


def sealed_field(resident_id: int, note_id: int) -> str:
    """The associated data a body is sealed with: a body opens only as this note of this
    resident (one copied onto another note, even the same resident's, does not open)."""
    return f"care_note:{resident_id}:{note_id}"


def clean_body(text: str) -> str:
    """The body to store: trimmed, line ends as one character (a browser sends CRLF);
    InvalidChange when empty, longer than NOTE_MAX_CHARS or not encodable text."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise InvalidChange("note_empty", "a note needs some text")
    if len(body) > NOTE_MAX_CHARS:
        raise InvalidChange("note_too_long", f"a note holds at most {NOTE_MAX_CHARS} characters")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidChange("note_unreadable", "the note is not readable text") from None
    return body


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidChange("note_kind", f"kind must be one of {', '.join(KINDS)}")
    return kind


def _lock_resident(conn: psycopg.Connection[Any], resident_id: int, dongs: Sequence[str]) -> None:
    """The resident of `dongs`, held against ending their service meanwhile; ResidentNotFound
    for any other dong, ResidentEnded once their service ended."""
    row = conn.execute(
        """SELECT status FROM anbu.resident WHERE id = %s AND dong_code = ANY(%s)
           FOR SHARE""",
        (resident_id, list(dongs)),
    ).fetchone()
    if row is None:
        raise ResidentNotFound(resident_id)
    if row[0] == "ended":
        raise ResidentEnded("resident_ended", "this resident's service has ended")


def add_note(
    conn: psycopg.Connection[Any],
    resident_id: int,
    dongs: Sequence[str],
    care_manager_id: int,
    text: str,
    kind: str,
    keyring: Keyring | None,
    now: datetime,
    corrects: int | None = None,
    token: str | None = None,
) -> int:
    """Write a note (or the correction of note `corrects`) for a resident of `dongs`, sealed,
    with its audit row, in the caller's transaction; its id. With the writer's `token`, a note
    already written with it is that note's id, nothing written again. InvalidChange for an
    empty or too long body, an unknown kind or a token used for another resident's note,
    NoteNotFound for a corrected note that is not this resident's, NoteCorrected when it was
    corrected already, DataKeyMissing without a key."""
    body = clean_body(text)
    _check_kind(kind)
    if token is not None and not 1 <= len(token) <= TOKEN_MAX_CHARS:
        raise InvalidChange("note_token", f"a token is 1 to {TOKEN_MAX_CHARS} characters")
    if keyring is None:
        raise DataKeyMissing("ANBU_DATA_KEY is not set: notes are sealed with it")
    _lock_resident(conn, resident_id, dongs)
    if (written := _written_with(conn, care_manager_id, token, resident_id)) is not None:
        return written
    if corrects is not None:
        row = conn.execute(
            """SELECT EXISTS (SELECT 1 FROM anbu.care_note c WHERE c.corrects = n.id)
                 FROM anbu.care_note n WHERE n.id = %s AND n.resident_id = %s""",
            (corrects, resident_id),
        ).fetchone()
        if row is None:
            raise NoteNotFound(corrects)
        if row[0]:
            raise NoteCorrected("note_corrected", "this note was corrected already")
    row = conn.execute("SELECT nextval(pg_get_serial_sequence('anbu.care_note', 'id'))").fetchone()
    assert row is not None
    note_id = int(row[0])  # known before sealing: the body is bound to it
    sealed = keyring.seal(body, sealed_field(resident_id, note_id))
    try:
        with conn.transaction():  # a savepoint: a correction that lost the race is a refusal
            conn.execute(
                """INSERT INTO anbu.care_note (id, resident_id, written_by, written_at, kind,
                                               body_sealed, sealed_key_id, corrects, client_token)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (note_id, resident_id, care_manager_id, now, kind, sealed.blob, sealed.key_id,
                 corrects, token),
            )  # fmt: skip
    except pg.UniqueViolation as exc:
        if exc.diag.constraint_name == "care_note_once":  # the same note, sent twice at once
            written = _written_with(conn, care_manager_id, token, resident_id)
            assert written is not None  # the other committed: its row is what refused ours
            return written
        if exc.diag.constraint_name == "care_note_corrected_once":
            raise NoteCorrected("note_corrected", "this note was corrected already") from None
        raise
    old = None if corrects is None else str(corrects)
    record_changes(conn, resident_id, now, [("care_note", old, str(note_id), False)],
                   care_manager_id=care_manager_id)  # fmt: skip
    log.info(
        "care note written",
        extra={"resident_id": resident_id, "care_manager_id": care_manager_id, "note_id": note_id,
               "corrects": corrects},
    )  # fmt: skip
    return note_id


def _written_with(
    conn: psycopg.Connection[Any], care_manager_id: int, token: str | None, resident_id: int
) -> int | None:
    """The note this writer wrote with `token`, if any; InvalidChange when it is another
    resident's (a token names one note)."""
    if token is None:
        return None
    row = conn.execute(
        "SELECT id, resident_id FROM anbu.care_note WHERE written_by = %s AND client_token = %s",
        (care_manager_id, token),
    ).fetchone()
    if row is None:
        return None
    if int(row[1]) != resident_id:
        raise InvalidChange("note_token", "this token was used for another resident's note")
    return int(row[0])


_NOTES = """
SELECT n.id, n.resident_id, n.written_by, m.display_name, n.written_at, n.kind, n.body_sealed,
       n.sealed_key_id, n.corrects, c.id
  FROM anbu.care_note n
  JOIN anbu.care_manager m ON m.id = n.written_by
  LEFT JOIN anbu.care_note c ON c.corrects = n.id
 WHERE n.resident_id = %(resident)s AND (%(id)s::bigint IS NULL OR n.id = %(id)s)
   AND (%(after_at)s::timestamptz IS NULL OR (n.written_at, n.id) < (%(after_at)s, %(after_id)s))
 ORDER BY n.written_at DESC, n.id DESC
 LIMIT %(limit)s
"""


def page_notes(
    conn: psycopg.Connection[Any],
    resident_id: int,
    keyring: Keyring | None,
    limit: int,
    after: Sequence[Any] | None = None,
) -> tuple[list[CareNote], tuple[datetime, int] | None]:
    """A resident's notes, newest first, a page at a time, opened; and the next page's place
    (written_at, id) or None. Call it after the reader's right to them was checked. A body no
    configured key opens is marked unopened (logged by id), never hiding the others."""
    return _read(conn, resident_id, keyring, limit, after, None)


def get_note(
    conn: psycopg.Connection[Any], resident_id: int, note_id: int, keyring: Keyring | None
) -> CareNote:
    """One note of the resident, opened; NoteNotFound for any other."""
    notes, _ = _read(conn, resident_id, keyring, 1, None, note_id)
    if not notes:
        raise NoteNotFound(note_id)
    return notes[0]


def _read(
    conn: psycopg.Connection[Any],
    resident_id: int,
    keyring: Keyring | None,
    limit: int,
    after: Sequence[Any] | None,
    note_id: int | None,
) -> tuple[list[CareNote], tuple[datetime, int] | None]:
    params = {
        "resident": resident_id, "limit": limit + 1, "id": note_id,
        "after_at": after[0] if after else None, "after_id": after[1] if after else None,
    }  # fmt: skip
    rows, more = keyset_page(conn.execute(_NOTES, params).fetchall(), limit, lambda r: (r[4], r[0]))
    notes = [
        CareNote(int(nid), int(rid), int(by), str(name), at, str(kind),
                 *_opened(keyring, int(nid), int(rid), blob, kid), corrects, corrected_by)
        for nid, rid, by, name, at, kind, blob, kid, corrects, corrected_by in rows
    ]  # fmt: skip
    return notes, (more[0], more[1]) if more else None


def _opened(
    keyring: Keyring | None, note_id: int, resident_id: int, blob: bytes | None, kid: str | None
) -> tuple[str | None, bool]:
    """A note's body and whether it stayed unopened (no key opens it: logged by id)."""
    if blob is None or kid is None:
        return None, False
    try:
        if keyring is None:
            raise DataKeyMissing("ANBU_DATA_KEY is not set: notes are sealed with it")
        return keyring.open(blob, kid, sealed_field(resident_id, note_id)), False
    except DataKeyError:
        log.error("care note could not be opened", extra={"note_id": note_id})
        return None, True


def erase_bodies(conn: psycopg.Connection[Any], resident_ids: list[int]) -> int:
    """Empty the note bodies of these residents, already pseudonymised in the caller's
    transaction (the table refuses it for anyone else); the rows stay, as other care
    records do. How many bodies were emptied."""
    cur = conn.execute(
        """UPDATE anbu.care_note SET body_sealed = NULL, sealed_key_id = NULL
            WHERE resident_id = ANY(%s) AND body_sealed IS NOT NULL""",
        (resident_ids,),
    )
    return cur.rowcount


def key_census(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Sealed note bodies per key id."""
    return {
        str(k): int(n)
        for k, n in conn.execute(
            """SELECT sealed_key_id, count(*) FROM anbu.care_note
                WHERE sealed_key_id IS NOT NULL GROUP BY 1 ORDER BY 1"""
        )
    }


def reseal_notes(conn: psycopg.Connection[Any], keyring: Keyring, batch: int = ROTATE_BATCH) -> int:
    """Re-seal under the current key every note body sealed under another, committing each
    batch; how many. Idempotent: a rerun after an interruption carries on. A batch holding a
    body no configured key opens changes nothing: UnknownDataKey names the note."""
    done, after = 0, 0
    while True:
        with conn.transaction():
            rows = conn.execute(
                """SELECT id, resident_id, body_sealed, sealed_key_id FROM anbu.care_note
                    WHERE id > %s AND sealed_key_id IS NOT NULL AND sealed_key_id <> %s
                    ORDER BY id LIMIT %s FOR NO KEY UPDATE""",
                (after, keyring.current_id, batch),
            ).fetchall()
            if not rows:
                return done
            updates = []
            for nid, rid, blob, kid in rows:
                try:
                    body = keyring.open(blob, kid, sealed_field(rid, nid))
                except UnknownDataKey as exc:
                    raise UnknownDataKey(f"care note {nid}: {exc}") from None
                sealed = keyring.seal(body, sealed_field(rid, nid))
                updates.append((sealed.blob, sealed.key_id, nid))
            with conn.cursor() as up:
                up.executemany(
                    "UPDATE anbu.care_note SET body_sealed = %s, sealed_key_id = %s WHERE id = %s",
                    updates,
                )
        done += len(rows)
        after = int(rows[-1][0])
        log.info("care notes re-sealed", extra={"notes": done, "key_id": keyring.current_id})
