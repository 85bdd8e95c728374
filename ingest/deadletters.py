"""Dead letters: list them, and replay them after a fix (a sensor registered late, say).

Replaying runs each letter through the same parsing and storage as live traffic, in one
transaction per batch of letters: a letter that now stores gets `replayed_at`; one that
still fails keeps its row with the new reason. Rows are claimed FOR UPDATE SKIP LOCKED, so
two replays at once never store a letter twice (and readings are unique anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.db import Database
from ingest.store import Message, Store


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message, as kept."""

    id: int
    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    replayed_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did: letters stored now, letters still refused."""

    replayed: int
    still_dead: int


def list_dead_letters(
    db: Database, *, since: datetime | None = None, include_replayed: bool = False, limit: int = 100
) -> list[DeadLetter]:
    """The newest dead letters first."""
    with db.connection() as conn:
        rows = conn.execute(
            """SELECT id, received_at, topic, payload, reason, replayed_at FROM anbu.dead_letters
               WHERE (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)
                 AND (%(all)s OR replayed_at IS NULL)
               ORDER BY received_at DESC, id DESC LIMIT %(limit)s""",
            {"since": since, "all": include_replayed, "limit": limit},
        ).fetchall()
    return [DeadLetter(int(i), at, t, bytes(p), r, rep) for i, at, t, p, r, rep in rows]


def replay_dead_letters(
    db: Database,
    store: Store,
    now: datetime,
    *,
    ids: list[int] | None = None,
    since: datetime | None = None,
    batch: int = 500,
) -> ReplayResult:
    """Replay letters not yet replayed (all, or those with `ids`, or received since `since`)."""
    replayed = still = 0
    done: set[int] = set()
    while True:
        with db.connection() as conn:
            rows = _claim(conn, ids, since, batch, sorted(done))
            if not rows:
                return ReplayResult(replayed, still)
            ok: list[int] = []
            for lid, received_at, topic, payload in rows:
                done.add(int(lid))
                message = Message(topic, bytes(payload), received_at=received_at)
                outcome = store.store_in(conn, [message], now, straight=False)
                if outcome.dead:
                    still += 1
                    conn.execute(
                        "UPDATE anbu.dead_letters SET reason = %s WHERE id = %s",
                        (outcome.dead[0][1], lid),
                    )
                else:
                    ok.append(int(lid))
            conn.execute(
                "UPDATE anbu.dead_letters SET replayed_at = %s WHERE id = ANY(%s)", (now, ok)
            )
            replayed += len(ok)


def _claim(
    conn: Any, ids: list[int] | None, since: datetime | None, batch: int, skip: list[int]
) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = conn.execute(
        """SELECT id, received_at, topic, payload FROM anbu.dead_letters
           WHERE replayed_at IS NULL AND NOT truncated  -- a cut payload cannot be read again
             AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
             AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)
             AND NOT (id = ANY(%(skip)s::bigint[]))
           ORDER BY received_at, id LIMIT %(batch)s
           FOR UPDATE SKIP LOCKED""",
        {"ids": ids, "since": since, "batch": batch, "skip": skip},
    ).fetchall()
    return rows
