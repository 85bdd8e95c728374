"""Nightly learning on a real PostgreSQL: readings in, a baseline row out, the sweep uses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from anbu import registry
from anbu.db import Database
from anbu.domain import SensorKind
from detectors.inactivity import InactivityPolicy
from detectors.nightly import learn_all
from detectors.sweep import sweep
from tests.unit.test_detectors_contract import START, routine

DONG = "1111051500"


def _home(database: Database, unique: str, days: int) -> int:
    rows = routine(days)
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
