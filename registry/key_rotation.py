"""A data key rotation as a whole: care managers' TOTP secrets and event webhooks' secrets, then
residents' notes and their care notes; and the census of every sealed value's key, which a rotation leaves at the current
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
    reseal_webhook_secrets(conn, keyring)
    return reseal_notes(conn, keyring, batch) + care_notes.reseal_notes(conn, keyring, batch)


def webhook_secret_field(subscription_id: int) -> str:
    """A webhook secret's associated data: it opens for its own subscription only."""
    return f"webhook_secret:{subscription_id}"


def reseal_webhook_secrets(conn: psycopg.Connection[Any], keyring: Keyring) -> int:
    """Re-seal under the current key every event webhook secret sealed under another (a
    district has a handful: one transaction); how many."""
    with conn.transaction():
        rows = conn.execute(
            """SELECT id, secret_sealed, secret_key_id FROM anbu.webhook_subscription
                WHERE secret_key_id IS NOT NULL AND secret_key_id <> %s
                ORDER BY id FOR NO KEY UPDATE""",
            (keyring.current_id,),
        ).fetchall()
        for sub_id, blob, kid in rows:
            field = webhook_secret_field(int(sub_id))
            sealed = keyring.seal(keyring.open(blob, kid, field), field)
            conn.execute(
                """UPDATE anbu.webhook_subscription SET secret_sealed = %s, secret_key_id = %s
                    WHERE id = %s""",
                (sealed.blob, sealed.key_id, sub_id),
            )
    return len(rows)


def key_census(conn: psycopg.Connection[Any]) -> KeyCensus:
    """Sealed values per key id over every sealed column (a resident's notes count once, a care
    note once), and residents' notes still in plaintext."""
    residents = resident_census(conn)
    webhooks = dict(conn.execute(
        """SELECT secret_key_id, count(*) FROM anbu.webhook_subscription
            WHERE secret_key_id IS NOT NULL GROUP BY 1"""
    ).fetchall())  # fmt: skip
    by_key = Counter(residents.by_key) + Counter(care_notes.key_census(conn)) + Counter(webhooks)
    return KeyCensus(dict(sorted(by_key.items())), residents.plaintext)
