"""The retention purge: the personal data of residents whose service ended longer ago than the
district's retention (ANBU_RETENTION_DAYS_AFTER_END) is pseudonymised in every table, a batch
to a transaction, idempotently; ids, alerts, calls and readings stay for the statistics. The
audit keeps that it happened (`pseudonymised`, by 'system:retention'), not what was removed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg

from core.db import Database
from registry import care_notes
from registry.changes import record_changes

log = logging.getLogger(__name__)

PURGE_BATCH = 200
PSEUDONYM_PHONE = "+8200000000"  # resident.phone is NOT NULL and E.164: a number that rings nobody
REMOVED = "(삭제됨 / removed)"
# the home (unique, named by enrolment files) is replaced: a file naming the old home enrols a
# new resident instead of adopting this one
PSEUDONYM_HOME = "(삭제됨)#"
# Twilio parameters kept in call_events that say what a resident answered
SPOKEN_PARAMS = ["SpeechResult", "Digits"]
# unmasked audit fields that still identify a person (the masked ones are emptied as well)
IDENTIFYING_AUDIT_FIELDS = ["external_id", "birth_year"]

_DUE_PURGE = """
SELECT id FROM anbu.resident
 WHERE status = 'ended' AND pseudonymised_at IS NULL
   AND COALESCE(ended_at, updated_at, created_at) <= %s
 ORDER BY COALESCE(ended_at, updated_at, created_at), id LIMIT %s
   FOR NO KEY UPDATE SKIP LOCKED
"""
_PSEUDONYMISE = [
    """UPDATE anbu.resident SET display_name = '종료 대상자 ' || id, phone = %(phone)s,
           mobile_phone = NULL, landline_phone = NULL, address = NULL, notes = NULL,
           access_notes = NULL, notes_sealed = NULL, access_notes_sealed = NULL,
           sealed_key_id = NULL, consent_recorded_by = NULL, external_id = NULL,
           birth_year = (birth_year / 10) * 10, pseudonymised_at = %(now)s, updated_at = %(now)s,
           home = %(home)s || id
     WHERE id = ANY(%(ids)s)""",
    "DELETE FROM anbu.emergency_contact WHERE resident_id = ANY(%(ids)s)",
    """UPDATE anbu.calls SET speech = NULL, digits = NULL, message_ko = NULL
     WHERE resident_id = ANY(%(ids)s)
       AND (speech IS NOT NULL OR digits IS NOT NULL OR message_ko IS NOT NULL)""",
    """UPDATE anbu.call_events e SET params = e.params - %(spoken)s::text[]
      FROM anbu.calls c WHERE c.id = e.call_id AND c.resident_id = ANY(%(ids)s)
       AND e.params ?| %(spoken)s::text[]""",
    # a message left on the care line is quoted in its finding and its alert's events
    """UPDATE anbu.findings f SET reason_ko = replace(f.reason_ko, i.transcript, %(removed)s)
      FROM anbu.incoming_calls i
     WHERE i.resident_id = ANY(%(ids)s) AND i.transcript <> '' AND f.resident_id = i.resident_id
       AND strpos(f.reason_ko, i.transcript) > 0""",
    """UPDATE anbu.alert_events e SET reason = replace(e.reason, i.transcript, %(removed)s)
      FROM anbu.alerts a, anbu.incoming_calls i
     WHERE a.id = e.alert_id AND a.resident_id = ANY(%(ids)s) AND i.resident_id = a.resident_id
       AND i.transcript <> '' AND strpos(e.reason, i.transcript) > 0""",
    """UPDATE anbu.incoming_calls SET transcript = NULL, recording_url = NULL
     WHERE resident_id = ANY(%(ids)s)""",
    """UPDATE anbu.findings SET details = details - 'recording_url'
     WHERE resident_id = ANY(%(ids)s) AND details ? 'recording_url'""",
    # what they answered on their routine conversations, and the needs in their own words
    """UPDATE anbu.call_answers SET speech = NULL, digits = NULL
     WHERE resident_id = ANY(%(ids)s) AND (speech IS NOT NULL OR digits IS NOT NULL)""",
    """UPDATE anbu.service_requests SET words = NULL, note = NULL
     WHERE resident_id = ANY(%(ids)s) AND (words IS NOT NULL OR note IS NOT NULL)""",
    """UPDATE anbu.notifications n SET body = %(removed)s
      FROM anbu.alerts a WHERE a.id = n.alert_id AND a.resident_id = ANY(%(ids)s)""",
    """UPDATE anbu.resident_changes SET old_value = NULL, new_value = NULL, masked = true
     WHERE resident_id = ANY(%(ids)s) AND (masked OR field = ANY(%(identifying)s))""",
]


def purge_due(db: Database, now: datetime, retention: timedelta, batch: int = PURGE_BATCH) -> int:
    """Pseudonymise every resident whose service ended more than `retention` ago, `batch` to a
    transaction (rows another purge holds are skipped); returns how many. Idempotent."""
    done = 0
    while True:
        with db.connection() as conn:
            ids = [int(r[0]) for r in conn.execute(_DUE_PURGE, (now - retention, batch))]
            if ids:
                pseudonymise(conn, ids, now)
        done += len(ids)
        if len(ids) < batch:
            break
    if done:
        log.info("ended residents pseudonymised after the retention", extra={"residents": done})
    return done


def pseudonymise(conn: psycopg.Connection[Any], ids: list[int], now: datetime) -> None:
    """Remove the personal data of these (locked) residents from every table, in the caller's
    transaction: name, phones and home replaced, address, contacts, notes, care notes' bodies,
    transcripts and messages emptied, birth year to its decade; alerts, calls, care notes and
    readings keep their ids and counts."""
    params = {"ids": ids, "now": now, "phone": PSEUDONYM_PHONE, "removed": REMOVED,
              "home": PSEUDONYM_HOME,
              "spoken": SPOKEN_PARAMS, "identifying": IDENTIFYING_AUDIT_FIELDS}  # fmt: skip
    for statement in _PSEUDONYMISE:
        conn.execute(statement, params)
    care_notes.erase_bodies(conn, ids)  # after the resident's row: only then may it
    for rid in ids:
        record_changes(conn, rid, now, [("pseudonymised", None, "true", False)],
                       care_manager_id=None, actor="system:retention")  # fmt: skip


# The API's idempotency keys (dashboards.idempotency, migration 0082) are kept 24 hours: their
# kept answers may hold personal data. A key still being answered is never forgotten.
API_KEYS_KEPT_HOURS = 24
API_KEY_LEASE_S = 60
_FORGET_API_KEYS = """
DELETE FROM anbu.api_idempotency
 WHERE ctid = ANY (ARRAY(
       SELECT ctid FROM anbu.api_idempotency
        WHERE first_at < now() - make_interval(hours => %(keep)s)
          AND (finished_at IS NOT NULL OR claimed_at < now() - make_interval(secs => %(lease)s))
        ORDER BY first_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED))
"""


def forget_api_keys(conn: psycopg.Connection[Any], limit: int) -> int:
    """Forget up to `limit` API idempotency keys past their 24 hours; how many."""
    params = {"keep": API_KEYS_KEPT_HOURS, "lease": API_KEY_LEASE_S, "limit": limit}
    return conn.execute(_FORGET_API_KEYS, params).rowcount


def forget_all_api_keys(db: Database, batch: int = 10_000) -> int:
    """The nightly job's part: every key past its 24 hours, a batch to a transaction."""
    done = 0
    while True:
        with db.connection() as conn:
            n = forget_api_keys(conn, batch)
        done += n
        if n < batch:
            return done
