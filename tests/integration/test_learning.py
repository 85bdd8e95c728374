"""Nightly learning on a real PostgreSQL: readings in, a baseline row out, the sweep uses it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.inactivity import InactivityPolicy
from detectors.nightly import learn_all
from detectors.sweep import sweep
from ingest.store import Message, Store
from tests.unit.test_detectors_contract import START, routine

pytestmark = pytest.mark.storage_modes

DONG = "1111051500"


def _home(database: Database, unique: str, days: int, fridge: bool = False) -> int:
    rows = routine(days)
    if fridge:  # a compressor: on and off every half hour, day and night
        t0 = rows[0][0]
        rows += [
            (t0 + k * 1800.0, "fridge", "power", "kitchen", 90.0 if k % 2 else 2.0)
            for k in range(days * 48)
        ]
    with database.connection() as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, f"{unique}-h", DONG, "김영희", "+821012345678")
        gw = registry.add_gateway(conn, f"{unique}gw", rid)
        ids = {
            name: registry.add_sensor(conn, gw, name, SensorKind(kind), room)
            for name, kind, room in (
                ("pir", "motion", "living"),
                ("door", "door", "entrance"),
                ("bed", "contact", "bedroom"),
                ("fridge", "power", "kitchen"),
            )
        }
        first = datetime.fromtimestamp(rows[0][0], UTC).date() - timedelta(days=1)
        conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, %s)", (first, days + 3))
        with conn.cursor().copy("COPY anbu.readings (ts, sensor_id, value) FROM STDIN") as cp:
            seen = set()
            for t, sensor, _, _, value in rows:
                if (sensor, t) not in seen:
                    seen.add((sensor, t))
                    cp.write_row((datetime.fromtimestamp(t, UTC), ids[sensor], value))
    return rid


def test_learning_stores_a_baseline_and_the_sweep_judges_by_it(
    database: Database, unique: str
) -> None:
    rid = _home(database, unique, 12)
    now = START + timedelta(days=11, hours=3)
    assert learn_all(database, now) == 1
    with database.connection() as conn:
        grace, watch, model = conn.execute(
            "SELECT grace, watch_h, model FROM anbu.baselines WHERE resident_id = %s", (rid,)
        ).fetchone()
        assert grace is False and len(watch) == 48 and model["history_days"] > 10
        noon_watch = watch[24]
        assert noon_watch < 6.0
        last = START + timedelta(days=11, hours=11, minutes=55)
        conn.execute(
            "INSERT INTO anbu.home_activity (resident_id, last_activity_at, last_motion_at) "
            "VALUES (%s, %s, %s)",
            (rid, last, last),
        )
    policy = InactivityPolicy()
    with database.connection() as conn:  # before the learned watch: nothing
        assert sweep(conn, last + timedelta(hours=noon_watch * 0.5), policy) == []
    with database.connection() as conn:  # past it, long before the fixed 6 h
        found = sweep(conn, last + timedelta(hours=max(noon_watch, 1.0) + 0.1), policy)
    assert [f.resident_id for f in found] == [rid]
    assert "평소 이 시간에는" in found[0].finding.reason_ko
    assert found[0].finding.details["rule"] == "learned"


def test_a_young_home_stays_on_the_fixed_rule(database: Database, unique: str) -> None:
    rid = _home(database, unique, 3)
    assert learn_all(database, START + timedelta(days=3, hours=3)) == 1
    with database.connection() as conn:
        row = conn.execute(
            "SELECT grace, watch_h FROM anbu.baselines WHERE resident_id = %s", (rid,)
        ).fetchone()
    assert row == (True, None)


def test_a_fridge_learned_automatic_no_longer_keeps_the_home_active(
    database: Database, unique: str
) -> None:
    """Learning flags the plug that switches by itself; ingest then stops counting its steps,
    so the live sweep sees the same silence `anbu detect` does (a person moving still counts)."""
    rid = _home(database, unique, 12, fridge=True)
    store = Store(database)  # loaded its registry before learning: the flag reaches it later
    later = START + timedelta(days=12, hours=10)

    def batch(sensor: str, kind: str, minutes: float, value: float) -> None:
        ts = later + timedelta(minutes=minutes)
        body = {
            "readings": [{"sensor": sensor, "kind": kind, "ts": ts.isoformat(), "value": value}]
        }
        store.store_batch([Message(f"gw/{unique}gw/anbu/readings", json.dumps(body).encode())], ts)

    def last_activity() -> datetime:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT last_activity_at FROM anbu.home_activity WHERE resident_id = %s", (rid,)
            ).fetchone()
        assert row is not None
        return row[0]

    batch("fridge", "power", 0, 2.0)
    batch("fridge", "power", 1, 95.0)  # before learning: a step is activity
    assert last_activity() == later + timedelta(minutes=1)
    assert learn_all(database, START + timedelta(days=12, hours=3)) == 1
    with database.connection() as conn:
        flags = dict(
            conn.execute(
                "SELECT s.vendor_id, s.automatic FROM anbu.sensor s"
                " JOIN anbu.gateway g ON g.id = s.gateway_id WHERE g.resident_id = %s",
                (rid,),
            ).fetchall()
        )
    assert flags == {"pir": False, "door": False, "bed": False, "fridge": True}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ingest.store.REGISTRY_MAX_AGE_S", 0.0)  # the periodic reload, now
        batch("fridge", "power", 30, 2.0)
        batch("fridge", "power", 60, 96.0)
    assert last_activity() == later + timedelta(minutes=1)  # the fridge no longer counts
    batch("pir", "motion", 61, 1.0)
    assert last_activity() == later + timedelta(minutes=61)
