"""The schema on a real PostgreSQL: migrations, partitions, uniqueness, one open alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import registry
from core.db import load_migrations, migrate, storage_mode
from core.domain import SensorKind

pytestmark = pytest.mark.storage_modes
DUPLICATE_READING = "duplicate key value violates unique constraint"


def _seed(conn: psycopg.Connection) -> tuple[int, int]:
    registry.add_dong(conn, "1111051500", "청운효자동", "종로구")
    rid = registry.add_resident(conn, "h1", "1111051500", "김영희", "+821012345678")
    registry.add_gateway(conn, "gw1", rid)
    sid = registry.add_sensor(conn, "gw1", "door1", SensorKind.DOOR, "entrance")
    return rid, sid


def test_migrations_are_recorded_and_idempotent(db_url: str) -> None:
    assert migrate(db_url) == []
    with psycopg.connect(db_url) as conn:
        versions = [
            r[0] for r in conn.execute("SELECT version FROM anbu.schema_migrations ORDER BY 1")
        ]
    assert versions == [m.version for m in load_migrations()]


def test_the_database_has_the_mode_asked_for(db_url: str, storage: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert storage_mode(conn) == storage
        hypertables = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        partitioned = conn.execute(
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'anbu.readings'::regclass"
        ).fetchone()
    # plain PostgreSQL means no extension at all in that database, even on a Timescale server
    assert (hypertables, partitioned) == (
        ((1,), (0,)) if storage == "timescaledb" else ((0,), (1,))
    )


def test_an_existing_database_keeps_its_mode(db_url: str, storage: str) -> None:
    other = "partitions" if storage == "timescaledb" else "timescaledb"
    assert migrate(db_url, storage=other) == []  # nothing to apply, nothing re-decided
    with psycopg.connect(db_url) as conn:
        assert storage_mode(conn) == storage


def test_readings_unique_and_routed_to_daily_partitions(db_url: str, storage: str) -> None:
    with psycopg.connect(db_url) as conn:
        _, sid = _seed(conn)
        now = datetime.now(UTC).replace(microsecond=0)
        far = now + timedelta(days=400)
        for ts in (now, now, far):
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value) VALUES (%s, %s, 1)"
                " ON CONFLICT DO NOTHING",
                (ts, sid),
            )
        assert conn.execute("SELECT count(*) FROM anbu.readings").fetchone() == (2,)
        with (
            pytest.raises(psycopg.errors.UniqueViolation, match=DUPLICATE_READING),
            conn.transaction(),
        ):
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value) VALUES (%s, %s, 0)", (now, sid)
            )
        if storage == "timescaledb":
            # each day is a chunk of the hypertable, made when its first reading arrives
            chunks = conn.execute(
                """SELECT count(*) FROM timescaledb_information.chunks
                   WHERE hypertable_schema = 'anbu' AND hypertable_name = 'readings'"""
            ).fetchone()
            assert chunks == (2,)
            assert conn.execute(
                "SELECT anbu.ensure_reading_partitions(%s::date, 1)", (far.date(),)
            ).fetchone() == (0,)
            return
        part = conn.execute(
            "SELECT tableoid::regclass::text FROM anbu.readings WHERE ts = %s", (now,)
        ).fetchone()
        assert part == (f"anbu.readings_{now:%Y%m%d}",)
        # the far-future row waits in the default partition, then moves when its day is made
        made = conn.execute(
            "SELECT anbu.ensure_reading_partitions(%s::date, 1)", (far.date(),)
        ).fetchone()
        assert made == (1,)
        part = conn.execute(
            "SELECT tableoid::regclass::text FROM anbu.readings WHERE ts = %s", (far,)
        ).fetchone()
        assert part == (f"anbu.readings_{far:%Y%m%d}",)
        with pytest.raises(psycopg.errors.UniqueViolation, match=DUPLICATE_READING):
            conn.execute(
                "INSERT INTO anbu.readings (ts, sensor_id, value) VALUES (%s, %s, 0)", (far, sid)
            )


def test_timescale_path(db_url: str, storage: str) -> None:
    with psycopg.connect(db_url) as conn:
        if storage != "timescaledb":
            # no hypertable, and Timescale's catalogue is not even there
            assert conn.execute(
                "SELECT to_regclass('_timescaledb_catalog.hypertable')"
            ).fetchone() == (None,)
            return
        row = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
        ).fetchone()
        assert row == (1,)
        settings = conn.execute(
            """SELECT segmentby, orderby, index
                 FROM timescaledb_information.hypertable_compression_settings
                WHERE hypertable = 'anbu.readings'::regclass"""
        ).fetchone()
        assert settings is not None
        assert settings[:2] == ("sensor_id", "ts DESC")
        assert {"type": "minmax", "column": "received_at", "source": "config"} in settings[2]
        jobs = conn.execute(
            """SELECT proc_name FROM timescaledb_information.jobs
               WHERE hypertable_name = 'readings' ORDER BY 1"""
        ).fetchall()
        assert [j[0] for j in jobs] == ["policy_compression", "policy_retention"]


def test_one_open_alert_per_resident_and_kind(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        rid, _ = _seed(conn)
        sql = """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at)
                 VALUES (%s, 'inactivity', 'watch', %s, now(), now())"""
        conn.execute(sql, (rid, "open"))
        with (
            pytest.raises(psycopg.errors.UniqueViolation, match="alerts_one_open"),
            conn.transaction(),
        ):
            conn.execute(sql, (rid, "escalated"))
        conn.execute("UPDATE anbu.alerts SET state = 'resolved'")
        conn.execute(sql, (rid, "open"))


def test_passwords_are_hashed(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _seed(conn)
        registry.add_care_manager(conn, "cm1", "1111051500", "박담당", "+821099990000", "s3cret!")
        (stored,) = conn.execute("SELECT password_hash FROM anbu.care_manager").fetchone()
    assert "s3cret" not in stored
    assert registry.verify_password(stored, "s3cret!")
    assert not registry.verify_password(stored, "wrong")
