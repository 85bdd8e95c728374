"""`anbu bench sweep`: the live sweep's learned scoring over N homes, numpy beside a Python loop.

Arrays are shaped like the tables the sweep reads (home_activity: one silence start per home;
baselines: 48 per-slot watch thresholds and steps per home). With `--db-homes` > 0, on a
throwaway PostgreSQL: reading every home's whole per-slot arrays (what the sweep read until it
asked the database for the start slot's values only), then the live sweep itself, end to end,
twice (the first sweep stores every finding; the next minute's finds little new); then the
worker's minute tick (detectors.sweep_due: the homes due only) beside that full scan at the same
moment on the same state, a minute after activity arrived at 2 % of the homes, each rolled back,
their findings compared. The result line: `sweep: homes=N tick_seconds=S full_scan_seconds=F`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.inactivity import InactivityPolicy
from detectors.levels import learned_levels, loop_levels, start_slots


def tables(homes: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Silence starts, watch and step tables for `homes` homes, and a sweep moment."""
    rng = np.random.default_rng(seed)
    now = 1_764_000_000.0
    since = now - rng.exponential(3 * 3600.0, homes)
    watch = rng.uniform(1.0, 12.0, (homes, 48)).astype(np.float32)
    step = rng.uniform(0.2, 4.0, (homes, 48)).astype(np.float32)
    watch[rng.random(homes) < 0.05] = np.nan  # homes still in their grace period
    return since, watch, step, now


def run(homes: int, loop_homes: int) -> tuple[float, float, int]:
    """(numpy seconds for `homes`, loop seconds per home, homes raised) and prints both."""
    policy = InactivityPolicy()
    since, watch, step, now = tables(homes)
    began = time.perf_counter()
    slots = start_slots(since, 9 * 3600.0)
    levels = learned_levels(since, now, slots, watch, step, policy)
    numpy_s = time.perf_counter() - began
    n = min(loop_homes, homes)
    w, st = watch[:n].tolist(), step[:n].tolist()
    s_list, slot_list = since[:n].tolist(), slots[:n].tolist()
    began = time.perf_counter()
    loop = loop_levels(s_list, now, slot_list, w, st, policy)
    loop_per_home = (time.perf_counter() - began) / max(n, 1)
    if loop != levels[:n].tolist():
        raise AssertionError("the numpy sweep and the loop disagree")
    print(f"numpy: homes={homes} seconds={numpy_s:.3f} raised={int((levels > 0).sum())}")
    print(
        f"loop: homes={n} seconds={loop_per_home * n:.3f} "
        f"(extrapolated to {homes}: {loop_per_home * homes:.2f} s)"
    )
    return numpy_s, loop_per_home, int((levels > 0).sum())


def db_read(conninfo: str, homes: int) -> float:
    """Seconds to read the sweep's rows for `homes` homes from PostgreSQL (rows made first)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE ha (resident_id bigint, last_activity_at timestamptz)")
        conn.execute("CREATE TEMP TABLE bl (resident_id bigint, watch_h real[], step_h real[])")
        conn.execute(
            "INSERT INTO ha SELECT g, now() - (random() * interval '10 hours') "
            "FROM generate_series(1, %s) g",
            (homes,),
        )
        conn.execute(
            "INSERT INTO bl SELECT g, array_fill(3.0::real, ARRAY[48]), "
            "array_fill(1.0::real, ARRAY[48]) FROM generate_series(1, %s) g",
            (homes,),
        )
        began = time.perf_counter()
        with conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT h.resident_id, h.last_activity_at, b.watch_h, b.step_h "
                "FROM ha h LEFT JOIN bl b USING (resident_id)"
            )
            rows = cur.fetchall()
        took = time.perf_counter() - began
    print(f"db read of whole per-slot arrays: homes={len(rows)} seconds={took:.2f}")
    return took


def populate(conn: Any, homes: int, seed: int = 7) -> datetime:
    """`homes` residents with activity and learned baselines, as the sweep finds them; the
    sweep moment (noon in Seoul). A quarter silent for 0-12 h, 5 % without a baseline, 2 % away,
    1 % gone out; learned wake times 05:30-09:30."""
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    conn.execute("SELECT setseed(%s)", (seed / 100,))
    conn.execute(
        "INSERT INTO anbu.dong (code, name, district) VALUES ('9999999999', '벤치동', '벤치구')"
    )
    conn.execute(
        "INSERT INTO anbu.resident (home, dong_code, display_name, phone, status, status_until) "
        "SELECT 'b' || g, '9999999999', 'x', '+820000000000', "
        "CASE WHEN g %% 50 = 0 THEN 'away' ELSE 'active' END, "
        "CASE WHEN g %% 50 = 0 THEN %s::timestamptz + interval '2 days' END "
        "FROM generate_series(1, %s) g",
        (now, homes),
    )
    conn.execute(
        "INSERT INTO anbu.home_activity (resident_id, last_activity_at, last_motion_at, last_door_at) "
        "SELECT id, t, CASE WHEN id %% 100 = 0 THEN t - interval '1 min' ELSE t END, "
        "CASE WHEN id %% 100 = 0 THEN t END FROM ("
        "SELECT id, %s::timestamptz - CASE WHEN random() < 0.25 THEN random() * interval '12 hours' "
        "ELSE random() * interval '40 minutes' END AS t FROM anbu.resident) r",
        (now,),
    )
    conn.execute(
        "INSERT INTO anbu.baselines (resident_id, learned_at, history_days, grace, watch_h, step_h,"
        " usual_h, model, anchor_slot, wake_h, out_h) SELECT id, %s, 56, false, w, s, u,"
        " '{}'::jsonb, 6, 5.5 + random() * 4, 1 + random() * 6 FROM anbu.resident,"
        " LATERAL (SELECT array_agg((1 + random() * 11)::real) w, array_agg((0.2 + random() * 4)::real) s,"
        " array_agg((0.2 + random() * 2)::real) u FROM generate_series(1, 48) WHERE id > 0) a"
        " WHERE id %% 20 <> 0",
        (now - timedelta(hours=3),),
    )
    conn.execute("ANALYZE")
    return now


def db_sweep(conninfo: str, homes: int) -> tuple[float, float, float, float]:
    """Seconds of the live sweep (`detectors.sweep.sweep`) over `homes` homes on PostgreSQL:
    the first sweep (which stores every finding) and the next minute's (nothing new); then the
    steady tick over the homes due and the full scan at the same moment (`due_tick`)."""
    import psycopg

    from core.db import migrate
    from detectors.sweep import sweep

    migrate(conninfo)
    policy = InactivityPolicy()
    with psycopg.connect(conninfo) as conn:
        now = populate(conn, homes)
        conn.commit()
        began = time.perf_counter()
        first = sweep(conn, now, policy)
        conn.commit()
        first_s = time.perf_counter() - began
        began = time.perf_counter()
        again = sweep(conn, now + timedelta(minutes=1), policy)
        conn.commit()
        next_s = time.perf_counter() - began
        print(
            f"db sweep: homes={homes} first_seconds={first_s:.2f} findings={len(first)} "
            f"next_minute_seconds={next_s:.2f} findings={len(again)}"
        )
        routines_read(conn)
        tick_s, full_s = due_tick(conn, now + timedelta(minutes=2), policy)
    return first_s, next_s, tick_s, full_s


def due_tick(conn: Any, now: datetime, policy: InactivityPolicy) -> tuple[float, float]:
    """(steady tick seconds, full scan seconds) a minute after `now`: the tick's first pass
    rebuilds every due time at `now`; activity then arrives at 2 % of the homes (through the
    triggers, as ingest's writes do); a minute later the tick (best of three) and the full scan
    run on the same state, each rolled back, and must raise the same findings."""
    from detectors.sweep import sweep
    from detectors.sweep_due import DueSweep

    sweeper = DueSweep(policy)
    sweeper.tick(conn, now)
    conn.commit()
    rebuild = sweeper.last
    assert rebuild is not None
    conn.execute(
        "UPDATE anbu.home_activity SET last_activity_at = %s, last_motion_at = %s, "
        "last_room = 'living' WHERE resident_id %% 50 = 7",
        (now + timedelta(seconds=30), now + timedelta(seconds=30)),
    )
    conn.commit()
    later = now + timedelta(minutes=1)
    ticks = []
    for _ in range(3):
        began = time.perf_counter()
        found = sweeper.tick(conn, later)
        ticks.append(time.perf_counter() - began)
        conn.rollback()
    tick = sweeper.last
    assert tick is not None and tick.full is None
    began = time.perf_counter()
    full = sweep(conn, later, policy)
    full_s = time.perf_counter() - began
    conn.rollback()
    if _keys(found) != _keys(full):
        raise AssertionError("the tick over the homes due and the full scan disagree")
    print(
        f"due tick: rebuild_seconds={rebuild.seconds:.2f} homes_read={tick.homes} "
        f"judged={tick.judged} findings={len(found)} (the full scan's: {len(full)})"
    )
    return min(ticks), full_s


def _keys(found: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((n.resident_id, n.finding.kind, n.finding.severity.label) for n in found)


# What the routine checks read before anbu.baselines had columns for it: fields of the model.
_FROM_MODEL = """
SELECT resident_id, learned_at, history_days, grace, (model->>'anchor_slot')::int,
       (model->>'wake_h')::float8, (model->'out_h'->>0)::float8, (model->'bathroom_h'->>0)::float8
  FROM anbu.baselines WHERE resident_id = ANY(%s)
"""


def routines_read(conn: Any) -> tuple[float, float]:
    """Seconds to read the routine checks' fields for every learned home: from each home's whole
    model (a real-sized document, 12 sensors) as before, and from their own columns as now."""
    from detectors.learning import Baseline
    from detectors.nightly import store_baseline
    from detectors.sweep_routine import ROUTINES

    rng = np.random.default_rng(7)

    def hours(k: int, scale: float) -> tuple[float, ...]:  # learned values do not compress
        return tuple(float(x) for x in rng.uniform(0.1, scale, k))

    model = Baseline(0.0, 56.0, False, tuple(f"gw/s{i}" for i in range(12)), hours(12, 3600.0),
                     (False,) * 12, hours(48, 12.0), hours(48, 4.0), hours(48, 2.0), (0.8, 0.3),
                     (4.2, 1.0), 6, 7.5, hours(48, 1.0))  # fmt: skip
    ids = [int(r[0]) for r in conn.execute("SELECT resident_id FROM anbu.baselines")]
    store_baseline(conn, ids[0], datetime.now(UTC), model)  # the real document and columns
    conn.execute(
        "UPDATE anbu.baselines b SET model = m.model, anchor_slot = m.anchor_slot, "
        "wake_h = m.wake_h, out_h = m.out_h, bathroom_h = m.bathroom_h "
        "FROM anbu.baselines m WHERE m.resident_id = %s",
        (ids[0],),
    )
    conn.commit()
    took = []
    for query in (_FROM_MODEL, ROUTINES):
        began = time.perf_counter()
        rows = conn.execute(query, (ids,)).fetchall()
        took.append(time.perf_counter() - began)
    print(
        f"routine fields: homes={len(rows)} from_model_seconds={took[0]:.2f} "
        f"from_columns_seconds={took[1]:.2f}"
    )
    return took[0], took[1]


def main(homes: int, loop_homes: int, db_homes: int) -> None:
    numpy_s, loop_per_home, _ = run(homes, loop_homes)
    speedup = loop_per_home * homes / max(numpy_s, 1e-9)
    print(f"numpy vs loop: homes={homes} seconds={numpy_s:.3f} speedup_vs_loop={speedup:.0f}")
    if db_homes > 0:
        import tempfile
        from pathlib import Path

        from simulators.servers import EmbeddedPostgres

        with tempfile.TemporaryDirectory(prefix="anbu-bench-", ignore_cleanup_errors=True) as work:
            pg = EmbeddedPostgres(Path(work))
            pg.init()
            pg.start()
            try:
                db_read(pg.dsn, db_homes)
                _, _, tick_s, full_s = db_sweep(pg.dsn, db_homes)
            finally:
                pg.stop()
        print(f"sweep: homes={db_homes} tick_seconds={tick_s:.3f} full_scan_seconds={full_s:.3f}")
