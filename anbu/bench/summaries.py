"""`anbu bench summaries`: the worker's hourly activity pass on a throwaway PostgreSQL.

N homes with a motion sensor, a door, a bed contact and two plugs report for two hours (motion
about every 2 min, plugs every 5 min, the rest now and then). Printed: the first pass (every
home-hour), then a steady pass five minutes on (the current hour of every home recomputed
whole), beside the same run's baseline: counting those hours' readings with a bare GROUP BY,
the least any summary of them costs.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SENSORS = (("pir", "motion", "living", 120), ("door", "door", "entrance", 3600),
           ("bed", "contact", "bedroom", 1800), ("tv", "power", "living", 300),
           ("fridge", "power", "kitchen", 300))  # fmt: skip
T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def populate(conn: Any, homes: int) -> None:
    """Registry rows and two hours of readings for `homes` homes (received as they are timed)."""
    conn.execute("INSERT INTO anbu.dong (code, name, district) VALUES ('9999999998', 'b', 'b')")
    conn.execute(
        "INSERT INTO anbu.resident (home, dong_code, display_name, phone) "
        "SELECT 's' || g, '9999999998', 'x', '+820000000000' FROM generate_series(1, %s) g",
        (homes,),
    )
    conn.execute(
        "INSERT INTO anbu.gateway (id, resident_id) SELECT 'g' || id, id FROM anbu.resident"
    )
    for name, kind, room, _ in SENSORS:
        conn.execute(
            "INSERT INTO anbu.sensor (gateway_id, vendor_id, kind, room) "
            "SELECT id, %s, %s, %s FROM anbu.gateway",
            (name, kind, room),
        )
    conn.execute("SELECT anbu.ensure_reading_partitions(%s::date, 2)", (T0.date(),))
    for name, kind, _, every in SENSORS:
        value = {"motion": "(k %% 2)::float8", "door": "(k %% 2)::float8", "contact": "(k %% 2)::float8",
                 "power": "CASE WHEN k %% 4 = 0 THEN 80 + random() ELSE 2 + random() END"}[kind]  # fmt: skip
        conn.execute(
            f"INSERT INTO anbu.readings (ts, sensor_id, value, received_at) "
            f"SELECT t, s.id, {value}, t FROM anbu.sensor s, "
            f"LATERAL (SELECT %s::timestamptz + k * make_interval(secs => %s) "
            f"+ (s.id %% 60) * interval '1 second' AS t, k "
            f"FROM generate_series(0, %s) k) x WHERE s.vendor_id = %s",  # nosec B608  # {value} is one of the constant expressions above; data are parameters
            (T0, every, int(7200 / every) - 1, name),
        )
    conn.execute("ANALYZE")


def run(homes: int) -> tuple[float, float, float]:
    """(first pass, steady pass, GROUP BY baseline) seconds, printed."""
    import psycopg

    from core.db import migrate
    from detectors.summaries import summarize
    from simulators.servers import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as work:
        pg = EmbeddedPostgres(Path(work))
        pg.init()
        pg.start()
        try:
            migrate(pg.dsn)
            with psycopg.connect(pg.dsn) as conn:
                populate(conn, homes)
                conn.commit()
                (readings,) = conn.execute("SELECT count(*) FROM anbu.readings").fetchone() or (0,)
                end = T0 + timedelta(hours=2)
                began = time.perf_counter()
                first = summarize(conn, end - timedelta(minutes=5))
                conn.commit()
                first_s = time.perf_counter() - began
                began = time.perf_counter()
                steady = summarize(conn, end)
                conn.commit()
                steady_s = time.perf_counter() - began
                began = time.perf_counter()
                conn.execute(
                    """SELECT g.resident_id, date_trunc('hour', r.ts), count(*)
                         FROM anbu.readings r JOIN anbu.sensor s ON s.id = r.sensor_id
                         JOIN anbu.gateway g ON g.id = s.gateway_id
                        WHERE r.ts >= %s GROUP BY 1, 2""",
                    (end - timedelta(hours=1),),
                ).fetchall()
                floor_s = time.perf_counter() - began
        finally:
            pg.stop()
    print(f"summaries: homes={homes} readings={readings} first_pass_s={first_s:.2f} "
          f"home_hours={first} steady_pass_s={steady_s:.2f} home_hours={steady} "
          f"group_by_floor_s={floor_s:.2f}")  # fmt: skip
    return first_s, steady_s, floor_s
