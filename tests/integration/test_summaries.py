"""Hourly activity summaries on a real PostgreSQL, from readings stored by ingest's own store."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.summaries import rebuild, summarize
from ingest.store import Message, Store

pytestmark = pytest.mark.storage_modes

DONG = "1111051500"
T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
SENSORS = (
    ("pir", "motion", "living"),
    ("door", "door", "entrance"),
    ("bed", "contact", "bedroom"),
    ("tv", "power", "living"),
    ("fridge", "power", "kitchen"),
)


def _home(database: Database, unique: str) -> tuple[int, str]:
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-h", DONG, "김영희", "+821012345678")
        gw = registry.add_gateway(conn, f"{unique}gw", rid)
        for name, kind, room in SENSORS:
            registry.add_sensor(conn, gw, name, SensorKind(kind), room)
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, 3)", (T0.date(),))
    return rid, gw


def _day() -> list[tuple[datetime, str, str, float]]:
    """Readings of a morning: motion on and off, the door, the bed, a TV on then off, a
    fridge cycling (90 W / 2 W every 20 min) and the TV's small flicker (3 W, no step)."""
    rows: list[tuple[datetime, str, str, float]] = []
    for k in range(18):  # 00:00-06:00, every 20 min
        rows.append((T0 + timedelta(minutes=20 * k), "fridge", "power", 90.0 if k % 2 else 2.0))
    rows.append((T0 + timedelta(hours=1, minutes=5), "bed", "contact", 1.0))
    rows.append((T0 + timedelta(hours=1, minutes=50), "bed", "contact", 0.0))
    for m in (10, 12, 40):
        rows.append((T0 + timedelta(hours=2, minutes=m), "pir", "motion", 1.0))
        rows.append((T0 + timedelta(hours=2, minutes=m + 1), "pir", "motion", 0.0))
    rows.append((T0 + timedelta(hours=3, minutes=1), "door", "door", 1.0))
    rows.append((T0 + timedelta(hours=3, minutes=2), "door", "door", 1.0))  # repeated: no change
    rows.append((T0 + timedelta(hours=3, minutes=3), "door", "door", 0.0))
    rows.append((T0 + timedelta(hours=4), "tv", "power", 80.0))
    # the bed mat pressed again, then its gateway re-reporting "pressed" (it has reported its
    # "off" before): one doing, not three
    for m in (10, 20, 30):
        rows.append((T0 + timedelta(hours=4, minutes=m), "bed", "contact", 1.0))
    rows.append((T0 + timedelta(hours=4, minutes=30), "tv", "power", 83.0))
    rows.append((T0 + timedelta(hours=5, minutes=15), "tv", "power", 1.0))
    return rows


def _messages(gw: str, rows: list[tuple[datetime, str, str, float]], at: datetime) -> list[Message]:
    readings = [{"sensor": s, "kind": k, "ts": t.isoformat(), "value": v} for t, s, k, v in rows]
    return [
        Message(f"gw/{gw}/anbu/readings", json.dumps({"readings": readings}).encode(), False, at)
    ]


def _rows(database: Database, rid: int) -> dict[int, tuple[int, int, int, int, int, list[str]]]:
    with database.connection() as conn:
        got = conn.execute(
            """SELECT hour, activity, motion, door, power_steps, readings, rooms
                 FROM anbu.activity_hourly WHERE resident_id = %s ORDER BY hour""",
            (rid,),
        ).fetchall()
    return {int((h - T0).total_seconds() // 3600): tuple(r) for h, *r in got}  # type: ignore[misc]


def test_each_hour_counts_a_persons_doings_as_ingest_does(database: Database, unique: str) -> None:
    rid, gw = _home(database, unique)
    received = T0 + timedelta(hours=6)
    Store(database).store_batch(_messages(gw, _day(), received), received)
    with database.connection() as conn:
        assert summarize(conn, received + timedelta(minutes=1)) == 6
    rows = _rows(database, rid)
    fridge = Counter(int(t.hour) for t, s, _, _ in _day() if s == "fridge")
    # hour 0: the fridge's first reading counts (nothing before it), its steps of 88 W too:
    # every fridge reading is a step until learning marks it automatic
    assert rows[0] == (3, 0, 0, 3, fridge[0], ["kitchen"])
    assert rows[1] == (4, 0, 0, 3, fridge[1] + 2, ["bedroom", "kitchen"])  # bed pressed, not freed
    assert rows[2] == (6, 3, 0, 3, fridge[2] + 6, ["kitchen", "living"])
    assert rows[3] == (5, 0, 2, 3, fridge[3] + 3, ["entrance", "kitchen"])  # open, close
    # the TV on (+3 W is no step); the bed pressed once, re-reported twice
    assert rows[4] == (5, 0, 0, 4, fridge[4] + 5, ["bedroom", "kitchen", "living"])
    assert rows[5] == (4, 0, 0, 4, fridge[5] + 1, ["kitchen", "living"])  # off


def test_automatic_plugs_late_readings_and_repeated_passes(database: Database, unique: str) -> None:
    rid, gw = _home(database, unique)
    store = Store(database)
    received = T0 + timedelta(hours=6)
    store.store_batch(_messages(gw, _day(), received), received)
    with database.connection() as conn:
        conn.execute(
            "UPDATE anbu.sensor SET automatic = true WHERE gateway_id = %s AND vendor_id = 'fridge'",
            (gw,),
        )
        summarize(conn, received)
    first = _rows(database, rid)
    assert [first[h][0] for h in range(6)] == [0, 1, 3, 2, 2, 1]  # the fridge no longer counts
    assert first[0][4] == 3  # but its readings are still readings

    with database.connection() as conn:  # the next pass looks again (overlap): same rows
        assert summarize(conn, received + timedelta(minutes=5)) == 6
    assert _rows(database, rid) == first
    with database.connection() as conn:  # once a pass is past the overlap: nothing new, nothing
        summarize(conn, received + timedelta(minutes=30))
        assert summarize(conn, received + timedelta(minutes=60)) == 0

    # a gateway back online delivers what it buffered: readings of 02:00-03:00, received at 09:00
    late = T0 + timedelta(hours=9)
    buffered = [(T0 + timedelta(hours=2, minutes=55), "pir", "motion", 1.0)]
    store.store_batch(_messages(gw, buffered, late), late)
    with database.connection() as conn:
        assert summarize(conn, late + timedelta(minutes=1)) == 1  # only the hour it touched
    after = _rows(database, rid)
    assert after[2][:2] == (4, 4) and after[2][4] == first[2][4] + 1
    assert {h: after[h] for h in after if h != 2} == {h: first[h] for h in first if h != 2}

    with database.connection() as conn:  # rebuilding a span gives the same rows
        conn.execute("DELETE FROM anbu.activity_hourly WHERE resident_id = %s", (rid,))
        assert rebuild(conn, T0, T0 + timedelta(hours=6)) == 6
    assert _rows(database, rid) == after


def test_anbu_summarize_rebuilds_a_span(database: Database, db_url: str, unique: str) -> None:
    """The command a technician runs after replaying old dead letters."""
    import subprocess
    import sys

    rid, gw = _home(database, unique)
    received = T0 + timedelta(hours=6)
    Store(database).store_batch(_messages(gw, _day(), received), received)
    argv = [sys.executable, "-m", "anbu.cli", "summarize", "--since", "2026-11-24T02:00+00:00"]
    argv += ["--until", "2026-11-24T04:00+00:00"]
    done = subprocess.run(
        argv, env={**os.environ, "ANBU_DATABASE_URL": db_url}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "summarised: 2 home-hours" in done.stdout
    assert sorted(_rows(database, rid)) == [2, 3]
    bad = subprocess.run(
        [*argv[:4], "--since", "2026-11-24T02:00"],
        env={**os.environ, "ANBU_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "offset" in bad.stdout + bad.stderr
