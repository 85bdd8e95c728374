"""A data key rotation as a whole: care managers' TOTP secrets, then residents' notes.

Its own module so that neither half imports the other (registry.secrecy is below
registry.care_managers, which reaches it through registry.enrolment).
"""

from __future__ import annotations

from typing import Any

import psycopg

from core.crypto import Keyring
from registry.care_managers import rotate_totp_secrets
from registry.secrecy import ROTATE_BATCH, reseal_notes


def rotate_keys(conn: psycopg.Connection[Any], keyring: Keyring, batch: int = ROTATE_BATCH) -> int:
    """Re-seal every care manager's TOTP secret, then every resident's notes, under the current
    key; returns how many residents were re-sealed (registry.secrecy.reseal_notes)."""
    rotate_totp_secrets(conn, keyring)
    return reseal_notes(conn, keyring, batch)
