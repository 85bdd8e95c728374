"""The event feed (anbu.event_feed, migration 0069): alert events in the order they became
visible, for systems that poll `GET /api/v1/events?after=SEQ`.

publish() copies the alert events not yet in the feed, oldest id first, under a transaction
advisory lock: one copier at a time, so the seq it gives grows with every commit and a reader
never finds a smaller seq after a larger one. An event whose transaction commits late (it took
its id early) is copied when it is visible, with a later seq: late, never lost. Events more than
WINDOW ids behind the newest copied one are not looked for again (a transaction that holds its
event that long is not one anbu runs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.queries import Dongs, dong_list

FEED_LOCK = 0x616E627546454544  # 'anbuFEED'
WINDOW = 100_000
BATCH = 10_000

_COPY = """
INSERT INTO anbu.event_feed (event_id, published_at)
SELECT e.id, %(now)s FROM anbu.alert_events e
 WHERE e.id > (SELECT coalesce(max(event_id), 0) FROM anbu.event_feed) - %(window)s
   AND NOT EXISTS (SELECT 1 FROM anbu.event_feed f WHERE f.event_id = e.id)
 ORDER BY e.id
 LIMIT %(batch)s
"""

# One statement, one snapshot: the page and the feed's last seq as that snapshot sees it (a
# reader whose dongs had nothing new moves on to it, instead of scanning from the same place
# again; every seq below it is committed, since copiers run one at a time)
_READ = """
WITH top AS (SELECT coalesce(max(seq), 0) AS top FROM anbu.event_feed)
SELECT top.top, page.* FROM top LEFT JOIN LATERAL (
    SELECT f.seq, f.published_at, e.id AS event_id, e.at, e.alert_id, a.resident_id,
           r.dong_code, a.kind, a.severity, e.from_state, e.to_state, e.actor, e.reason
      FROM anbu.event_feed f
      JOIN anbu.alert_events e ON e.id = f.event_id
      JOIN anbu.alerts a ON a.id = e.alert_id
      JOIN anbu.resident r ON r.id = a.resident_id
     WHERE f.seq > %(after)s AND r.dong_code = ANY(%(dongs)s)
     ORDER BY f.seq
     LIMIT %(n)s
) page ON true
ORDER BY page.seq
"""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    seq: int
    published_at: datetime
    event_id: int
    at: datetime
    alert_id: int
    resident_id: int
    dong_code: str
    kind: str
    severity: str  # the alert's now
    from_state: str | None
    to_state: str
    actor: str
    reason: str


def publish(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Copy what is new into the feed, in the caller's transaction (committed with it);
    0 when another copier holds the lock (it copies the same events)."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (FEED_LOCK,)).fetchone()
    if not row or not row[0]:
        return 0
    copied = conn.execute(_COPY, {"now": now, "window": WINDOW, "batch": BATCH})
    return copied.rowcount


def read(
    conn: psycopg.Connection[Any], dongs: Dongs, after: int, limit: int
) -> tuple[list[FeedEvent], bool, int]:
    """The feed's events of `dongs` after seq `after`, at most `limit`; whether more follow;
    and the seq to ask after next (past other dongs' events when none of `dongs` follow)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _READ, {"after": after, "dongs": dong_list(dongs), "n": limit + 1}
        ).fetchall()
    top = int(rows[0]["top"]) if rows else after
    found = [FeedEvent(**{k: v for k, v in r.items() if k != "top"})
             for r in rows if r["seq"] is not None]  # fmt: skip
    more = len(found) > limit
    found = found[:limit]
    if more:
        return found, True, found[-1].seq
    return found, False, max(after, top, found[-1].seq if found else 0)


def residents_of(events: Sequence[FeedEvent]) -> list[int]:
    return sorted({e.resident_id for e in events})
