"""The webhook delivery log is kept `event_webhooks_log_days` from when each delivery finished:
the nightly job deletes older delivered and cancelled deliveries with their attempts, never a
pending one, nor a backlog cancelled lately however long it waited; on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

import registry
from alerts import feed, webhooks
from core.clock import VirtualClock
from core.db import Database
from tests.integration.dashboard_support import OPENED_AT, seed_alert

DONG = "1111051500"


def _subscription(conn: psycopg.Connection[Any], admin: int) -> int:
    """A subscription of the district, as webhooks.create leaves it (its secret a stand-in)."""
    row = conn.execute(
        """INSERT INTO anbu.webhook_subscription (district, url, secret_sealed,
               secret_key_id, state_changed_at, state_changed_by, created_by, created_at)
           VALUES ('종로구', 'https://1.1.1.1/anbu', '\\x00', 'k', %s, 'system', %s, %s)
           RETURNING id""",
        (OPENED_AT, admin, OPENED_AT),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_old_finished_deliveries_go_with_their_attempts_and_pending_ones_stay(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock(OPENED_AT)
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        admin = registry.add_care_manager(conn, "adm", DONG, "관리", "+821000000009", "pw-123456a")
        resident = registry.add_resident(conn, "home-1", DONG, "김순자", "+821099990000")
    for kind in ("inactivity", "no_answer", "help_requested", "low_battery"):
        seed_alert(database, clock, resident, kind)
    with database.connection() as conn:
        feed.publish(conn, clock.now())
        seqs = [s for (s,) in conn.execute("SELECT seq FROM anbu.event_feed ORDER BY seq")]
        assert len(seqs) >= 4
        sub = _subscription(conn, admin)
        old, recent = OPENED_AT - timedelta(days=100), OPENED_AT - timedelta(days=10)
        rows = [  # state, queued, finished (delivered, or cancelled with its subscription)
            ("delivered", old, old),  # finished long ago: goes
            ("cancelled", old, old),  # finished long ago: goes
            ("cancelled", old, recent),  # an old backlog cancelled lately: stays
            ("pending", old, None),  # waiting, however old: stays
        ]
        ids = []
        for seq, (state, created, finished) in zip(seqs, rows, strict=False):
            (delivery,) = conn.execute(
                """INSERT INTO anbu.webhook_delivery (subscription_id, seq, state, attempts,
                       next_attempt_at, created_at, delivered_at, finished_at)
                   VALUES (%s, %s, %s, 2, %s, %s, %s, %s) RETURNING id""",
                (sub, seq, state, created, created,
                 finished if state == "delivered" else None, finished),
            ).fetchone()  # type: ignore[misc]  # fmt: skip
            ids.append(delivery)
            for attempt in (1, 2):
                conn.execute(
                    """INSERT INTO anbu.webhook_attempt (delivery_id, subscription_id, seq,
                           attempt, at, duration_ms, ok)
                       VALUES (%s, %s, %s, %s, %s, 5, %s)""",
                    (delivery, sub, seq, attempt, created, attempt == 2),
                )
    monkeypatch.setattr(webhooks, "PRUNE_BATCH", 1)
    assert webhooks.prune_log(database, OPENED_AT - timedelta(days=90)) == (2, 4)
    with database.connection() as conn:
        kept = [i for (i,) in conn.execute("SELECT id FROM anbu.webhook_delivery ORDER BY id")]
        attempts = conn.execute("SELECT count(*) FROM anbu.webhook_attempt").fetchone()
    assert kept == ids[2:] and attempts == (4,)
    assert webhooks.prune_log(database, OPENED_AT - timedelta(days=90)) == (0, 0)


def test_a_subscription_deleted_cancels_its_backlog_as_of_now(database: Database) -> None:
    """The cancel dates the deliveries it finishes: they are kept the full time from it."""
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        admin = registry.add_care_manager(conn, "adm", DONG, "관리", "+821000000009", "pw-123456a")
        resident = registry.add_resident(conn, "home-1", DONG, "김순자", "+821099990000")
    clock = VirtualClock(OPENED_AT)
    seed_alert(database, clock, resident, "inactivity")
    with database.connection() as conn:
        feed.publish(conn, clock.now())
        (seq,) = conn.execute("SELECT min(seq) FROM anbu.event_feed").fetchone()  # type: ignore[misc]
        sub = _subscription(conn, admin)
        queued = OPENED_AT - timedelta(days=200)
        conn.execute(
            """INSERT INTO anbu.webhook_delivery (subscription_id, seq, next_attempt_at,
                   created_at) VALUES (%s, %s, %s, %s)""",
            (sub, seq, queued, queued),
        )
        webhooks.delete(conn, "종로구", sub, admin, OPENED_AT)
        row = conn.execute("SELECT state, finished_at FROM anbu.webhook_delivery").fetchone()
    assert row == ("cancelled", OPENED_AT)
    assert webhooks.prune_log(database, OPENED_AT - timedelta(days=90)) == (0, 0)
