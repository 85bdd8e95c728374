"""A data key rotation as a whole: care managers' TOTP secrets, then residents' notes and their
care notes; and the census of every sealed value's key, which a rotation leaves at the current
key alone.

Its own module so that neither half imports the other (registry.secrecy is below
registry.care_managers, which reaches it through registry.enrolment).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg

from core.crypto import Keyring
from registry import care_notes
from registry.care_managers import rotate_totp_secrets
from registry.secrecy import ROTATE_BATCH, KeyCensus, reseal_notes
from registry.secrecy import key_census as resident_census


def rotate_keys(conn: psycopg.Connection[Any], keyring: Keyring, batch: int = ROTATE_BATCH) -> int:
    """Re-seal every care manager's TOTP secret, then every resident's notes and every care
    note, under the current key; returns how many residents' notes and care notes were
    re-sealed (registry.secrecy.reseal_notes, registry.care_notes.reseal_notes)."""
    rotate_totp_secrets(conn, keyring)
    return reseal_notes(conn, keyring, batch) + care_notes.reseal_notes(conn, keyring, batch)


def key_census(conn: psycopg.Connection[Any]) -> KeyCensus:
    """Sealed values per key id over every sealed column (a resident's notes count once, a care
    note once), and residents' notes still in plaintext."""
    residents = resident_census(conn)
    by_key = Counter(residents.by_key) + Counter(care_notes.key_census(conn))
    return KeyCensus(dict(sorted(by_key.items())), residents.plaintext)
