"""A data key rotation as a whole: care managers' TOTP secrets, event webhooks' secrets and kept
API answers, then
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
    reseal_api_answers(conn, keyring)
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


def api_answer_field(principal_id: int, key: str) -> str:
    """A kept API answer's associated data (dashboards.idempotency): it opens for its own
    caller and key only."""
    return f"api_idempotency:{principal_id}:{key}"


def reseal_api_answers(conn: psycopg.Connection[Any], keyring: Keyring) -> int:
    """Re-seal under the current key every kept API answer sealed under another (a day's keys
    at most: one transaction); how many."""
    with conn.transaction():
        rows = conn.execute(
            """SELECT principal_id, key, body, body_key_id FROM anbu.api_idempotency
                WHERE body_key_id IS NOT NULL AND body_key_id <> %s
                ORDER BY principal_id, key FOR NO KEY UPDATE""",
            (keyring.current_id,),
        ).fetchall()
        for principal_id, key, blob, kid in rows:
            field = api_answer_field(int(principal_id), str(key))
            sealed = keyring.seal(keyring.open(blob, kid, field), field)
            conn.execute(
                """UPDATE anbu.api_idempotency SET body = %s, body_key_id = %s
                    WHERE principal_id = %s AND key = %s""",
                (sealed.blob, sealed.key_id, principal_id, key),
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
    answers = dict(conn.execute(
        """SELECT body_key_id, count(*) FROM anbu.api_idempotency
            WHERE body_key_id IS NOT NULL GROUP BY 1"""
    ).fetchall())  # fmt: skip
    by_key = (Counter(residents.by_key) + Counter(care_notes.key_census(conn))
              + Counter(webhooks) + Counter(answers))  # fmt: skip
    return KeyCensus(dict(sorted(by_key.items())), residents.plaintext)
