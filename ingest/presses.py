"""A button's repeated event count is no press (issue 20), decided against the database.

A mains Shelly Gen1 device republishes its last `input_event` with the same `event_cnt` every
update period (~30 s). Its readings carry that count (`Resolved.event_count`); before a batch
stores its readings or raises its findings, each such reading is checked against the sensor's
last count in anbu.button_event_count: the same count is a repeat, dropped (no reading, no
finding, no activity), and so is a reading no newer than the stored count's (a redelivered
message, already judged); a new count is a press, and becomes the stored count in the batch's
transaction. Within a batch, one sensor's readings with the same count (in time order) are
one press. The first count ever seen for a sensor is a press: a newly installed Gen1 input
gives one test press at install (installers press it anyway). Kept in the database, not in a
worker's memory, a restart loses no press, and two workers sharing a subscription do not both
read one count: each locks the sensor's row (ascending sensor_id, before any other lock the
batch takes) and the second sees the first's count once the first commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ingest.state import Resolved


def drop_repeats(
    conn: psycopg.Connection[Any], resolved: list[Resolved], now: datetime
) -> tuple[list[Resolved], int]:
    """`resolved` without the repeated button events, and how many were dropped."""
    counted = sorted(
        (r.ref.sensor_id, r.reading.ts, n)
        for n, r in enumerate(resolved)
        if r.event_count is not None
    )
    if not counted:
        return resolved, 0
    ids = sorted({sid for sid, _, _ in counted})
    # the row first, so that the lock below covers a sensor met for the first time too
    conn.execute(
        """INSERT INTO anbu.button_event_count (sensor_id, event_count, updated_at)
           SELECT id, NULL, %s FROM unnest(%s::bigint[]) AS x(id) ORDER BY id
           ON CONFLICT (sensor_id) DO NOTHING""",
        (now, ids),
    )
    rows = conn.execute(
        """SELECT sensor_id, event_count, event_at FROM anbu.button_event_count
            WHERE sensor_id = ANY(%s) ORDER BY sensor_id FOR UPDATE""",
        (ids,),
    ).fetchall()
    stored: dict[int, tuple[int | None, datetime | None]] = {
        int(sid): (count, at) for sid, count, at in rows
    }
    last = dict(stored)
    dropped: set[int] = set()
    for sid, ts, n in counted:
        count, at = last.get(sid, (None, None))
        if resolved[n].event_count == count or (at is not None and ts <= at):
            dropped.add(n)
        else:
            last[sid] = (resolved[n].event_count, ts)
    changed = sorted((sid, c, at) for sid, (c, at) in last.items() if (c, at) != stored.get(sid))
    if changed:
        conn.execute(
            """UPDATE anbu.button_event_count b
                  SET event_count = x.count, event_at = x.at, updated_at = %s
                 FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[]) AS x(id, count, at)
                WHERE b.sensor_id = x.id""",
            (now, *(list(c) for c in zip(*changed, strict=True))),
        )
    if not dropped:
        return resolved, 0
    return [r for n, r in enumerate(resolved) if n not in dropped], len(dropped)
