"""What the care manager reads first on an emergency button's or a fire or gas alarm's page:
the 119 advice, then where the resident lives and how to get in.

The access notes are opened only for a role the one rule lets see them (Action.RESIDENTS_SITE)
and the read is recorded by the page; notes the data key cannot open are said to be so,
never a reason to hide the rest of an emergency's page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from alerts.routing import FIRST_ADVICE
from core.crypto import DataKeyError, Keyring
from registry.secrecy import resident_note

log = logging.getLogger(__name__)

LABELS: dict[str, tuple[str, str]] = {
    "heading": ("먼저 하실 일", "Do this first"),
    "address": ("주소", "Address"),
    "access_notes": ("출입 메모 (현관 비밀번호 등)", "Access notes (door code etc.)"),
    "unopened": ("출입 메모를 불러오지 못했습니다. 관리자에게 알려 주세요",
                 "Access notes could not be opened; tell the administrator"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FirstAid:
    """The top of an urgent alert's page."""

    advice: tuple[str, str]  # (Korean, English)
    address: str | None
    access_shown: bool  # the reader's role may see access notes
    access_notes: str | None
    access_unopened: bool  # sealed notes the data key could not open


def needs_first_aid(kind: str) -> bool:
    """An alert whose page opens with the advice and the way in."""
    return kind in FIRST_ADVICE


def first_aid(
    conn: psycopg.Connection[Any],
    kind: str,
    resident_id: int,
    keyring: Keyring | None,
    may_see_access: bool,
) -> FirstAid:
    """The advice for `kind`, the resident's address and (for a role that may) access notes."""
    row = conn.execute("SELECT address FROM anbu.resident WHERE id = %s", (resident_id,)).fetchone()
    notes, unopened = access_notes(conn, resident_id, keyring, may_see_access)
    return FirstAid(FIRST_ADVICE[kind], row[0] if row else None, may_see_access, notes, unopened)


def access_notes(
    conn: psycopg.Connection[Any], resident_id: int, keyring: Keyring | None, may_see: bool
) -> tuple[str | None, bool]:
    """The resident's access notes for a reader who may see them (else None), and whether
    sealed notes could not be opened (logged by id, never hiding the rest of the page)."""
    if not may_see:
        return None, False
    try:
        return resident_note(conn, resident_id, keyring, "access_notes"), False
    except DataKeyError:
        log.error("access notes could not be opened", extra={"resident_id": resident_id})
        return None, True
