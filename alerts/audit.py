"""The alerts' audit trail: every transition appended to alert_events with who and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from core.domain import AlertState


def record_event(
    conn: psycopg.Connection[Any],
    alert_id: int,
    now: datetime,
    actor: str,
    from_state: AlertState | None,
    to_state: AlertState,
    reason: str,
) -> None:
    """Append one transition to alert_events, in the caller's transaction."""
    conn.execute(
        """INSERT INTO anbu.alert_events (alert_id, at, actor, from_state, to_state, reason)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (alert_id, now, actor, from_state.value if from_state else None, to_state.value, reason),
    )
