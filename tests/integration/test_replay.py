"""`anbu replay`: a slice of recorded homes, five dialects, through the real IngestService.

Every dialect but ESPHome carries the recorded time, so those homes must land as exactly the
recorded (sensor, ts) rows. ESPHome has no time in its payload: its home's readings carry the
time ingest received them, so that home is checked by count, kind, value and order per sensor,
its times within the replay's own window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from core.clock import SystemClock
from core.config import Settings
from core.db import Database
from ingest.consumer import IngestService
from simulators.dialects import TIMELESS, Event, sensor_id
from simulators.replay import ReplayTarget, load, register_homes, replay
from simulators.servers import EmbeddedMosquitto
from tests.integration.test_ingest_store_process import eventually

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared beside the repo


def slice_of(home: str, n: int) -> list[Event]:
    return load(DATA / home / "events.csv", limit=n)


def as_home(events: list[Event], home: str) -> list[Event]:
    """The same rows as another home's (a mixed home: another home's sensors and plugs)."""
    return [replace(e, home=home) for e in events]


def rows_of(dsn: str) -> list[tuple[str, str, str, datetime, float]]:
    """(home, vendor id, kind, ts, value) of every stored reading, in time order."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT r.home, s.vendor_id, s.kind, x.ts, x.value FROM anbu.readings x
               JOIN anbu.sensor s ON s.id = x.sensor_id
               JOIN anbu.gateway g ON g.id = s.gateway_id
               JOIN anbu.resident r ON r.id = g.resident_id
               ORDER BY x.ts, x.received_at"""
        ).fetchall()
    return [(h, v, k, ts, float(val)) for h, v, k, ts, val in rows]


def stored(dsn: str) -> dict[tuple[str, str, str], float]:
    return {(h, v, ts.astimezone(UTC).isoformat()): val for h, v, _, ts, val in rows_of(dsn)}


def test_replay_stores_every_recorded_reading_once(
    settings: Settings, database: Database, broker: EmbeddedMosquitto, db_url: str, unique: str
) -> None:
    # Shelly and ESPHome homes mix a home's binary sensors with eco-h2's plugs: every kind.
    plugs = slice_of("eco-h2", 100)
    events = (
        slice_of("uci-a", 300)
        + slice_of("eco-h2", 200)
        + slice_of("uci-b", 200)
        + as_home(slice_of("uci-a", 200) + plugs, "mix-shelly")
        + as_home(slice_of("uci-b", 300) + plugs, "mix-esphome")
    )
    events.sort(key=lambda e: e.ts)
    dialects = {
        "uci-a": "zigbee2mqtt",
        "eco-h2": "tasmota",
        "uci-b": "native",
        "mix-shelly": "shelly",
        "mix-esphome": "esphome",
    }
    for home in ("mix-shelly", "mix-esphome"):
        assert {e.kind for e in events if e.home == home} == {
            "door", "motion", "contact", "appliance", "power",
        }  # fmt: skip
    prefix = f"r{unique}-"
    target = ReplayTarget("127.0.0.1", broker.port, "replay-pw", prefix)
    homes = sorted({e.home for e in events})
    for home in homes[:-1]:
        broker.users[f"{prefix}{home}"] = "replay-pw"
    broker.add_user(f"{prefix}{homes[-1]}", "replay-pw")
    with psycopg.connect(db_url) as conn:
        assert register_homes(conn, events, prefix, dialects) == 5

    # A recorded 1 and its 0 may share a second: one (sensor, ts) row, either value.
    expected: dict[tuple[str, str, str], set[float]] = defaultdict(set)
    timeless: dict[tuple[str, str], list[Event]] = defaultdict(list)  # by (home, vendor id)
    for e in events:
        vendor = sensor_id(dialects[e.home], e)
        if dialects[e.home] in TIMELESS:
            timeless[(e.home, vendor)].append(e)  # every row a reading of its own
        else:
            expected[(e.home, vendor, e.ts.astimezone(UTC).isoformat())].add(e.value)
    want_rows = len(expected) + sum(map(len, timeless.values()))

    service = IngestService(settings, database, SystemClock())
    service.start()
    try:
        assert service.subscribed.wait(15)
        began = datetime.now(UTC)
        result = replay(events, target, dialects, speed=None)
        assert result.events == len(events)
        # one message per event: all of them stored (each commit before its acknowledgement)
        eventually(lambda: service.stats.acked >= result.events, what="every message stored")
        ended = datetime.now(UTC)
        stats = service.stats
    finally:
        service.stop()
    assert (stats.messages, stats.acked) == (result.events, result.events)
    assert stats.dead_lettered == 0
    everything = rows_of(db_url)
    assert len(everything) == want_rows

    # Homes whose dialect carries the recorded time: exactly the recorded rows.
    rows = {k: v for k, v in stored(db_url).items() if dialects[k[0]] not in TIMELESS}
    assert expected and set(rows) == set(expected)
    assert all(rows[key] in values for key, values in expected.items())
    shelly_rows = sum(1 for home, *_ in rows if home == "mix-shelly")
    assert shelly_rows == len({(s, t) for h, s, t in expected if h == "mix-shelly"}) > 0

    # ESPHome: every row, per sensor in the recorded order with its kind and value, stamped
    # when ingest received it (within the replay's window).
    got: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for home, vendor, kind, ts, value in everything:
        if dialects[home] in TIMELESS:
            assert began - timedelta(seconds=1) <= ts <= ended, (vendor, ts)
            got[(home, vendor)].append((kind, value))
    assert set(got) == set(timeless)
    for key, recorded in timeless.items():
        assert got[key] == [(e.kind, e.value) for e in recorded], key
    assert sum(map(len, got.values())) == sum(1 for e in events if e.home == "mix-esphome")

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.home_activity").fetchone()
    assert row is not None and row[0] == 5
