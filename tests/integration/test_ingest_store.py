"""Store on a real PostgreSQL: readings, activity, gateway liveness and dead letters in one go."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from ingest.store import Message, Store
from ingest.store_process import OneConnection

pytestmark = pytest.mark.storage_modes

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
GW = "gw-a"
LATER = T0 + timedelta(hours=3)


@pytest.fixture
def seeded(database: Database) -> dict[str, int]:
    with database.connection() as conn:
        registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
        rid = registry.add_resident(conn, "home-a", "1111051500", "홍길동", "+821000000001")
        registry.add_gateway(conn, GW, rid)
        ids = {
            "resident": rid,
            "door1": registry.add_sensor(conn, GW, "door1", SensorKind.DOOR, "entrance"),
            "pir1": registry.add_sensor(conn, GW, "pir1", SensorKind.MOTION, "bedroom"),
            "plug1": registry.add_sensor(conn, GW, "plug1", SensorKind.POWER, "kitchen"),
            "fridge": registry.add_sensor(conn, GW, "fridge", SensorKind.CONTACT, "kitchen"),
        }
    return ids


def msg(*items: tuple[str, str, datetime, float], gateway: str = GW) -> Message:
    body = {
        "readings": [
            {"sensor": s, "kind": k, "ts": ts.isoformat(), "value": v} for s, k, ts, v in items
        ]
    }
    return Message(f"gw/{gateway}/anbu/readings", json.dumps(body).encode())


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def one(db: Database, sql: str, params: Any = None) -> Any:
    with db.connection() as conn:
        row = conn.execute(sql, params).fetchone()
    return row


def activity(db: Database, rid: int) -> Any:
    return one(
        db,
        """SELECT last_activity_at, last_motion_at, last_door_at, last_power_at, last_room
           FROM anbu.home_activity WHERE resident_id = %s""",
        (rid,),
    )


def test_batch_is_stored_and_duplicates_are_harmless(
    database: Database, seeded: dict[str, int]
) -> None:
    store = Store(database)
    batch = [msg(("door1", "door", at(0), 1), ("pir1", "motion", at(1), 1))]
    first = store.store_batch(batch, NOW)
    assert (first.stored, first.duplicates, first.dead_lettered) == (2, 0, 0)
    again = store.store_batch(batch + batch, NOW)
    assert (again.stored, again.duplicates, again.dead_lettered) == (0, 4, 0)
    assert one(database, "SELECT count(*) FROM anbu.readings") == (2,)
    rows = one(
        database,
        "SELECT array_agg(sensor_id ORDER BY ts), array_agg(received_at) FROM anbu.readings",
    )
    assert rows[0] == [seeded["door1"], seeded["pir1"]] and set(rows[1]) == {NOW}
    assert activity(database, seeded["resident"]) == (at(1), at(1), at(0), None, "bedroom")
    assert one(database, "SELECT last_seen_at FROM anbu.gateway WHERE id = %s", (GW,)) == (NOW,)


def test_activity_rules(database: Database, seeded: dict[str, int]) -> None:
    store = Store(database)
    rid = seeded["resident"]
    store.store_batch([msg(("door1", "door", at(0), 1))], NOW)  # first door reading counts
    assert activity(database, rid) == (at(0), None, at(0), None, "entrance")
    # the same door state again, motion 0 and a closed fridge are no sign of a person
    store.store_batch(
        [
            msg(
                ("door1", "door", at(1), 1),
                ("pir1", "motion", at(2), 0),
                ("fridge", "contact", at(3), 0),
            )
        ],
        NOW,
    )
    assert activity(database, rid) == (at(0), None, at(0), None, "entrance")
    # power: the first reading counts, then only steps of at least 10 W
    store.store_batch([msg(("plug1", "power", at(4), 80.0))], NOW)
    assert activity(database, rid)[3] == at(4)
    store.store_batch([msg(("plug1", "power", at(5), 89.9), ("plug1", "power", at(6), 95.0))], NOW)
    assert activity(database, rid)[3] == at(4)  # 80 -> 89.9 -> 95: each step under 10 W
    store.store_batch([msg(("plug1", "power", at(7), 105.0))], NOW)  # 95 -> 105
    assert activity(database, rid)[0] == at(7) and activity(database, rid)[4] == "kitchen"
    # an older reading arriving late never moves activity backwards
    store.store_batch([msg(("pir1", "motion", at(-30), 1))], NOW)
    assert activity(database, rid) == (at(7), at(-30), at(0), at(7), "kitchen")
    store.store_batch([msg(("fridge", "contact", at(8), 1))], NOW)
    assert activity(database, rid)[0] == at(8) and activity(database, rid)[4] == "kitchen"


def test_an_on_repeated_is_nobody_new(database: Database, seeded: dict[str, int]) -> None:
    """A PIR that reports its "off" and then re-sends "on" (stuck, or re-reporting on a timer)
    is one doing; an events-only PIR (never an "off") counts each "on" unless they come on a
    timer, judged with its readings stored before the batch."""
    with database.connection() as conn:
        registry.add_sensor(conn, GW, "pir2", SensorKind.MOTION, "living")
    store = Store(database)
    rid = seeded["resident"]
    store.store_batch([msg(("pir1", "motion", at(0), 1), ("pir1", "motion", at(1), 0))], LATER)
    assert one(
        database, "SELECT off_at FROM anbu.sensor_state WHERE sensor_id = %s", (seeded["pir1"],)
    ) == (at(1),)
    store.store_batch([msg(("pir1", "motion", at(2), 1))], LATER)
    assert activity(database, rid)[:2] == (at(2), at(2))
    for m in (12, 22, 32):  # one a batch, and then two in one
        store.store_batch([msg(("pir1", "motion", at(m), 1))], LATER)
    store.store_batch([msg(("pir1", "motion", at(42), 1), ("pir1", "motion", at(47), 1))], LATER)
    assert activity(database, rid)[:2] == (at(2), at(2))
    # a state row from before its "off" was recorded (before migration 0083): the "off" among
    # its stored readings tells
    with database.connection() as conn:
        conn.execute("UPDATE anbu.sensor_state SET off_at = NULL")
    for m in (53, 62, 74, 82, 93):  # re-sent at irregular times: not a timer
        store.store_batch([msg(("pir1", "motion", at(m), 1))], LATER)
    assert activity(database, rid)[:2] == (at(2), at(2))
    # the last one delivered again (a late batch: read back past its ten "on"s to its "off")
    store.store_batch([msg(("pir1", "motion", at(93), 1))], LATER)
    assert activity(database, rid)[:2] == (at(2), at(2))

    for m in (80, 90, 100):  # every "on" of an events-only sensor is someone...
        store.store_batch([msg(("pir2", "motion", at(m), 1))], LATER)
        assert activity(database, rid)[0] == at(m)
    for m in (110, 120):  # ...until three equal gaps of ten minutes: a timer
        store.store_batch([msg(("pir2", "motion", at(m), 1))], LATER)
    assert activity(database, rid)[0] == at(100)
    store.store_batch([msg(("pir2", "motion", at(127), 1))], LATER)  # off the timer: someone
    assert activity(database, rid)[0] == at(127)
    store.store_batch([msg(("pir1", "motion", at(130), 0), ("pir1", "motion", at(131), 1))], LATER)
    assert activity(database, rid)[0] == at(131)
    assert one(
        database, "SELECT off_at FROM anbu.sensor_state WHERE sensor_id = %s", (seeded["pir1"],)
    ) == (at(130),)  # the latest "off"
    # a copy of a re-report, a minute after: one judgement, not someone new
    store.store_batch(
        [msg(("pir1", "motion", at(140), 1), ("pir1", "motion", at(140.02), 1))], LATER
    )
    store.store_batch(
        [msg(("pir2", "motion", at(137), 1), ("pir2", "motion", at(137.01), 1))], LATER
    )
    assert activity(database, rid)[0] == at(137)
    for m in (147, 157, 167):
        store.store_batch(
            [msg(("pir2", "motion", at(m), 1), ("pir2", "motion", at(m + 0.01), 1))], LATER
        )
    assert activity(database, rid)[0] == at(147)  # 127, 137, 147, 157: a timer from 157


def test_bad_input_becomes_dead_letters_and_the_rest_is_stored(
    database: Database, seeded: dict[str, int]
) -> None:
    store = Store(database)
    bad = [
        Message(f"gw/{GW}/anbu/readings", b"{not json"),
        msg(("door1", "door", at(0), 1), gateway="gw-nobody"),
        msg(("door9", "door", at(0), 1)),
        msg(("door1", "door", at(0), 5)),
        msg(("door1", "door", NOW + timedelta(hours=1), 1)),
        msg(("pir1", "door", at(0), 1)),
        Message(
            f"gw/{GW}/anbu/readings",
            b'{"readings":[{"sensor":"x\\u0000\\ud800","kind":"door","ts":"2026-11-22T09:00:00Z","value":1}]}',
        ),
        Message("gw/x/unknown/y", b"\x00\xff"),
        Message("gw/gw-nobody/anbu/status", b"online"),
    ]
    good = msg(("door1", "door", at(2), 1))
    summary = store.store_batch([*bad, good], NOW)
    assert (summary.stored, summary.dead_lettered) == (1, len(bad))
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT topic, payload, reason FROM anbu.dead_letters ORDER BY id"
        ).fetchall()
    reasons = [r[2] for r in rows]
    for fragment in [
        "not JSON",
        "unknown gateway 'gw-nobody'",
        "unknown sensor 'door9'",
        "out of range for door",
        "in the future",
        "registered as motion",
        "unknown sensor",
        "unknown dialect",
        "unknown gateway",
    ]:
        assert any(fragment in r for r in reasons), (fragment, reasons)
    assert rows[0][1] == b"{not json" and rows[7][1] == b"\x00\xff"
    assert one(database, "SELECT count(*) FROM anbu.readings") == (1,)


def test_gateway_status_and_liveness(database: Database, seeded: dict[str, int]) -> None:
    store = Store(database)
    status = Message(f"gw/{GW}/anbu/status", b"offline")
    store.store_batch([status], NOW)
    assert one(
        database,
        "SELECT online, status_changed_at, last_seen_at FROM anbu.gateway WHERE id = %s",
        (GW,),
    ) == (False, NOW, None)
    later = NOW + timedelta(minutes=5)
    store.store_batch([status], later)  # no change: status_changed_at stays
    store.store_batch([Message(f"gw/{GW}/anbu/status", b"online")], later + timedelta(minutes=1))
    assert one(
        database,
        "SELECT online, status_changed_at, last_seen_at FROM anbu.gateway WHERE id = %s",
        (GW,),
    ) == (True, later + timedelta(minutes=1), later + timedelta(minutes=1))


def test_a_status_change_is_dated_when_its_message_arrived(
    database: Database, seeded: dict[str, int]
) -> None:
    """A will stored minutes after it arrived (a backlog, a busy host) keeps its arrival time:
    a power cut's wills stored in two batches stay inside the site detector's window."""
    store = Store(database)
    arrived = NOW + timedelta(seconds=3)
    will = Message(f"gw/{GW}/anbu/status", b"offline", received_at=arrived)
    store.store_batch([will], NOW + timedelta(minutes=10))
    row = one(database, "SELECT online, status_changed_at FROM anbu.gateway WHERE id = %s", (GW,))
    assert row == (False, arrived)
    # an arrival stamped before the change already stored never dates the next change earlier
    back = Message(f"gw/{GW}/anbu/status", b"online", received_at=NOW)
    store.store_batch([back], NOW + timedelta(minutes=11))
    row = one(database, "SELECT online, status_changed_at FROM anbu.gateway WHERE id = %s", (GW,))
    assert row == (True, arrived)


def test_registry_is_refreshed_on_a_miss(database: Database, seeded: dict[str, int]) -> None:
    store = Store(database, registry_refresh_s=0)
    reading = msg(("tv", "appliance", at(0), 1))
    assert store.store_batch([reading], NOW).dead_lettered == 1
    with database.connection() as conn:
        registry.add_sensor(conn, GW, "tv", SensorKind.APPLIANCE, "living")
    assert store.store_batch([reading], NOW).stored == 1


def test_database_errors_propagate_and_nothing_is_half_stored(
    database: Database, seeded: dict[str, int], db_url: str
) -> None:
    store = Store(database)
    store.store_batch([msg(("door1", "door", at(0), 1))], NOW)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE anbu.home_activity RENAME TO home_activity_away")
    with pytest.raises(psycopg.errors.UndefinedTable, match="home_activity"):
        store.store_batch([msg(("pir1", "motion", at(1), 1)), Message("bad", b"x")], NOW)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE anbu.home_activity_away RENAME TO home_activity")
    assert one(database, "SELECT count(*) FROM anbu.readings") == (1,)
    assert one(database, "SELECT count(*) FROM anbu.dead_letters") == (0,)


def test_a_late_reading_into_an_old_compressed_day_is_stored_once(
    database: Database, seeded: dict[str, int], storage: str
) -> None:
    """A gateway that buffered for weeks: its readings land in a day that is already stored
    away (under Timescale, a compressed chunk), are stored, and a redelivery is still refused."""
    old = T0 - timedelta(days=20)
    store = Store(database)
    first = [msg(*[("pir1", "motion", old + timedelta(minutes=m), m % 2) for m in range(50)])]
    assert store.store_batch(first, NOW).stored == 50
    if storage == "timescaledb":
        with database.connection() as conn:
            compressed = conn.execute(
                """SELECT count(compress_chunk(c)) FROM show_chunks('anbu.readings',
                          older_than => %s::timestamptz) c""",
                (NOW - timedelta(days=7),),
            ).fetchone()
        assert compressed == (1,)
    late = [
        msg(
            ("pir1", "motion", old + timedelta(minutes=10), 1),  # already stored (and compressed)
            ("pir1", "motion", old + timedelta(minutes=10, seconds=30), 1),  # new, late
            ("door1", "door", old + timedelta(minutes=11), 1),  # new sensor in that day
        )
    ]
    result = store.store_batch(late, NOW + timedelta(days=1))
    assert (result.stored, result.duplicates) == (2, 1)
    assert one(database, "SELECT count(*) FROM anbu.readings") == (52,)
    assert one(
        database,
        "SELECT value, received_at FROM anbu.readings WHERE sensor_id = %s AND ts = %s",
        (seeded["pir1"], old + timedelta(minutes=10)),
    ) == (0.0, NOW)  # the first delivery kept, not overwritten
    again = store.store_batch(late, NOW + timedelta(days=2))
    assert (again.stored, again.duplicates) == (0, 3)
    if storage == "timescaledb":
        # the day is still compressed: the late readings did not undo it
        assert one(
            database,
            """SELECT bool_and(is_compressed) FROM timescaledb_information.chunks
               WHERE hypertable_name = 'readings' AND range_end <= %s""",
            (NOW - timedelta(days=7),),
        ) == (True,)


def test_new_readings_go_straight_in_and_a_redelivery_takes_the_careful_way(
    database: Database, seeded: dict[str, int]
) -> None:
    """A batch of readings never stored is copied straight into anbu.readings (no staging
    table is made); one that holds a reading stored before is stored through the staging
    table, keeps the first delivery's value and stores the rest."""
    held = OneConnection(database.conninfo)  # one session, as the storing process holds
    store = Store(held)

    def staged() -> bool:
        with held.connection() as conn:
            row = conn.execute("SELECT to_regclass('pg_temp.ingest_staging')").fetchone()
        return row is not None and row[0] is not None

    try:
        fresh = [msg(*[("plug1", "power", at(m), 100.0 * (m % 3)) for m in range(20)])]
        assert store.store_batch(fresh, NOW).stored == 20
        assert not staged()
        mixed = [msg(("plug1", "power", at(3), 999.0), ("plug1", "power", at(30), 50.0))]
        result = store.store_batch(mixed, NOW + timedelta(minutes=5))
        assert (result.stored, result.duplicates) == (1, 1)
        assert staged()
    finally:
        held.close()
    assert one(
        database,
        "SELECT value, received_at FROM anbu.readings WHERE sensor_id = %s AND ts = %s",
        (seeded["plug1"], at(3)),
    ) == (0.0, NOW)
    assert one(database, "SELECT count(*) FROM anbu.readings") == (21,)


def test_two_readings_of_one_sensor_and_time_in_a_batch_keep_the_first_and_go_straight_in(
    database: Database, seeded: dict[str, int]
) -> None:
    held = OneConnection(database.conninfo)
    try:
        batch = [msg(("plug1", "power", at(1), 100.0), ("plug1", "power", at(1), 200.0))]
        result = Store(held).store_batch(batch, NOW)
        with held.connection() as conn:
            staged = conn.execute("SELECT to_regclass('pg_temp.ingest_staging')").fetchone()
    finally:
        held.close()
    assert (result.stored, result.duplicates) == (1, 1)
    assert staged == (None,)
    assert one(
        database, "SELECT value FROM anbu.readings WHERE sensor_id = %s", (seeded["plug1"],)
    ) == (100.0,)


def test_a_gateway_that_sends_old_readings_again_goes_the_careful_way_alone(
    database: Database, seeded: dict[str, int]
) -> None:
    """The gateway whose reading met the unique key has its readings stored the careful way
    for a while; another gateway's still go straight in, and both are stored right."""
    with database.connection() as conn:
        rid = registry.add_resident(conn, "home-b", "1111051500", "김영희", "+821000000002")
        registry.add_gateway(conn, "gw-b", rid)
        registry.add_sensor(conn, "gw-b", "pir9", SensorKind.MOTION, "bedroom")
    store = Store(database)
    assert store.store_batch([msg(("pir1", "motion", at(0), 1))], NOW).stored == 1
    again = [msg(("pir1", "motion", at(0), 0)), msg(("pir9", "motion", at(0), 1), gateway="gw-b")]
    result = store.store_batch(again, NOW + timedelta(minutes=1))
    assert (result.stored, result.duplicates) == (1, 1)
    assert set(store._careful) == {GW}  # only the gateway whose reading met the key
    later = [
        msg(("pir1", "motion", at(0), 0), ("pir1", "motion", at(5), 1)),
        msg(("pir9", "motion", at(5), 1), gateway="gw-b"),
    ]
    result = store.store_batch(later, NOW + timedelta(minutes=6))
    assert (result.stored, result.duplicates) == (2, 1)
    assert set(store._careful) == {GW}
    assert one(database, "SELECT count(*), sum(value) FROM anbu.readings") == (4, 4.0)
    first = "SELECT value FROM anbu.readings WHERE sensor_id = %s AND ts = %s"
    assert one(database, first, (seeded["pir1"], at(0))) == (1.0,)  # never the copy's 0


def test_the_copy_stores_each_reading_s_instant_and_value_exactly(
    database: Database, seeded: dict[str, int]
) -> None:
    """The COPY data is built in PostgreSQL's binary format by hand (numpy): instants before
    2000 and far ahead, microseconds, other offsets than UTC, values to the last bit, and the
    first of two readings with one (sensor, ts) even when a later one comes first in order."""
    kst = timezone(timedelta(hours=9))
    instants = [
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2026, 11, 22, 18, 0, 0, 1, tzinfo=kst),
        datetime(2026, 11, 22, 9, 0, 0, 123_457, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    values = [0.1, 0.0, 3.141592653589793, 1e-300, 1234.567890123456]
    readings = Message(
        f"gw/{GW}/anbu/readings",
        json.dumps(
            {
                "readings": [
                    {"sensor": "plug1", "kind": "power", "ts": ts.isoformat(), "value": v}
                    for ts, v in [*zip(instants[::-1], values, strict=True), (instants[2], 7.0)]
                ]
                + [{"sensor": "door1", "kind": "door", "ts": instants[0].isoformat(), "value": 1}]
            }
        ).encode(),
    )
    store = Store(database, future_tolerance_s=100 * 365 * 86400)
    result = store.store_batch([readings], NOW)
    assert (result.stored, result.duplicates, result.dead_lettered) == (6, 1, 0)
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT sensor_id, ts, value, received_at FROM anbu.readings ORDER BY sensor_id, ts"
        ).fetchall()
    expected = sorted(
        [(seeded["plug1"], ts, v, NOW) for ts, v in zip(instants[::-1], values, strict=True)]
        + [(seeded["door1"], instants[0], 1.0, NOW)]
    )
    assert rows == expected


def test_a_batch_prepared_before_the_registry_changed_is_sorted_out_again(
    database: Database, seeded: dict[str, int]
) -> None:
    """The storing process prepares a batch while the one before is stored; if the registry
    was loaded again meanwhile, what was prepared with the old one is not used."""
    store = Store(database, registry_refresh_s=0)
    assert store.store_batch([msg(("plug1", "power", at(0), 5.0))], NOW).stored == 1
    batch = [msg(("plug1", "power", at(1), 6.0))]
    prepared = store.prepare(batch, NOW)  # the plug is a power sensor in this registry
    assert prepared.ready is not None and len(prepared.ready.columns.sensor) == 1
    with database.connection() as conn:
        conn.execute("UPDATE anbu.sensor SET kind = 'appliance' WHERE id = %s", (seeded["plug1"],))
        registry.add_sensor(conn, GW, "tv", SensorKind.APPLIANCE, "living")
    # a miss (the new tv) loads the registry again
    assert store.store_batch([msg(("tv", "appliance", at(1), 1))], NOW).stored == 1
    result = store.store_batch(batch, NOW, prepared)
    assert (result.stored, result.dead_lettered) == (0, 1)  # registered as appliance now
    assert one(
        database, "SELECT count(*) FROM anbu.readings WHERE sensor_id = %s", (seeded["plug1"],)
    ) == (1,)


def test_a_prepared_batch_with_a_careful_gateway_s_reading_takes_the_careful_way(
    database: Database, seeded: dict[str, int]
) -> None:
    """Prepared COPY columns go straight in only when none of their gateways is careful."""
    store = Store(database)
    assert store.store_batch([msg(("pir1", "motion", at(0), 1))], NOW).stored == 1
    again = [msg(("pir1", "motion", at(0), 0))]
    assert store.store_batch(again, NOW).duplicates == 1  # the gateway is careful now
    batch = [msg(("pir1", "motion", at(0), 0), ("pir1", "motion", at(1), 1))]
    result = store.store_batch(batch, NOW, store.prepare(batch, NOW))
    assert (result.stored, result.duplicates) == (1, 1)
    assert one(database, "SELECT count(*), sum(value) FROM anbu.readings") == (2, 2.0)


def test_a_batch_prepared_from_other_messages_is_not_used(
    database: Database, seeded: dict[str, int]
) -> None:
    store = Store(database)
    store.store_batch([msg(("pir1", "motion", at(0), 1))], NOW)  # the registry is loaded
    other = store.prepare([msg(("plug1", "power", at(1), 5.0))], NOW)
    batch = [msg(("door1", "door", at(2), 1))]
    assert store.store_batch(batch, NOW, other).stored == 1
    rows = "SELECT sensor_id FROM anbu.readings WHERE ts > %s"
    with database.connection() as conn:
        assert conn.execute(rows, (at(0),)).fetchall() == [(seeded["door1"],)]
