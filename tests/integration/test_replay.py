"""`anbu replay`: a slice of recorded homes, three dialects, through the real IngestService."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC
from pathlib import Path

import psycopg

from anbu.clock import SystemClock
from anbu.config import Settings
from anbu.db import Database
from anbu.embedded import EmbeddedMosquitto
from ingest.consumer import IngestService
from simulators.dialects import Event
from simulators.replay import ReplayTarget, load, register_homes, replay

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared beside the repo


def slice_of(home: str, n: int) -> list[Event]:
    return load(DATA / home / "events.csv", limit=n)


def stored(dsn: str) -> dict[tuple[str, str, str], float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT r.home, s.vendor_id, x.ts, x.value FROM anbu.readings x
               JOIN anbu.sensor s ON s.id = x.sensor_id
               JOIN anbu.gateway g ON g.id = s.gateway_id
               JOIN anbu.resident r ON r.id = g.resident_id"""
        ).fetchall()
    return {(h, v, ts.astimezone(UTC).isoformat()): float(val) for h, v, ts, val in rows}


def test_replay_stores_every_recorded_reading_once(
    settings: Settings, database: Database, broker: EmbeddedMosquitto, db_url: str, unique: str
) -> None:
    events = slice_of("uci-a", 300) + slice_of("eco-h2", 200) + slice_of("uci-b", 200)
    events.sort(key=lambda e: e.ts)
    dialects = {"uci-a": "zigbee2mqtt", "eco-h2": "tasmota", "uci-b": "native"}
    prefix = f"r{unique}-"
    target = ReplayTarget("127.0.0.1", broker.port, "replay-pw", prefix)
    homes = sorted({e.home for e in events})
    for home in homes[:-1]:
        broker.users[f"{prefix}{home}"] = "replay-pw"
    broker.add_user(f"{prefix}{homes[-1]}", "replay-pw")
    with psycopg.connect(db_url) as conn:
        assert register_homes(conn, events, prefix) == 3

    # A recorded 1 and its 0 may share a second: one (sensor, ts) row, either value.
    expected: dict[tuple[str, str, str], set[float]] = defaultdict(set)
    for e in events:
        expected[(e.home, e.sensor, e.ts.astimezone(UTC).isoformat())].add(e.value)

    service = IngestService(settings, database, SystemClock())
    service.start()
    try:
        assert service.subscribed.wait(15)
        result = replay(events, target, dialects, speed=None)
        assert result.events == len(events)
        deadline = time.monotonic() + 20
        while len(stored(db_url)) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # nothing more may arrive
        stats = service.stats
    finally:
        service.stop()
    rows = stored(db_url)
    assert set(rows) == set(expected)
    assert all(rows[key] in values for key, values in expected.items())
    assert stats.dead_lettered == 0
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.home_activity").fetchone()
    assert row is not None and row[0] == 3
