"""The inactivity sweep on a real PostgreSQL: new findings only, statuses, resets, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import registry
from core.db import Database
from core.domain import Severity
from detectors.inactivity import InactivityPolicy
from detectors.sweep import NewFinding, sweep

POLICY = InactivityPolicy()
LAST = datetime(2026, 11, 24, 12, 10, tzinfo=UTC)
DONG = "1111051500"


def _resident(conn: psycopg.Connection[Any], home: str, last: datetime | None) -> int:
    registry.add_dong(conn, DONG, "청운효자동", "종로구")
    rid = registry.add_resident(conn, home, DONG, "김영희", "+821012345678")
    if last is not None:
        _activity(conn, rid, last)
    return rid


def _activity(conn: psycopg.Connection[Any], rid: int, at: datetime) -> None:
    """What ingest writes when a person does something (ingest is not imported here)."""
    conn.execute(
        """INSERT INTO anbu.home_activity (resident_id, last_activity_at, last_motion_at)
           VALUES (%s, %s, %s)
           ON CONFLICT (resident_id) DO UPDATE SET last_activity_at = excluded.last_activity_at,
               last_motion_at = excluded.last_motion_at""",
        (rid, at, at),
    )


def _status(conn: psycopg.Connection[Any], rid: int, status: str, until: datetime | None) -> None:
    conn.execute(
        "UPDATE anbu.resident SET status = %s, status_until = %s WHERE id = %s",
        (status, until, rid),
    )


def _run(database: Database, now: datetime) -> list[NewFinding]:
    with database.connection() as conn:
        return sweep(conn, now, POLICY)


def _levels(found: list[NewFinding]) -> list[tuple[int, Severity]]:
    return sorted((f.resident_id, f.finding.severity) for f in found)


def test_sweep_raises_each_severity_once_per_silence(database: Database) -> None:
    with database.connection() as conn:
        rid = _resident(conn, "h1", LAST)
        quiet = _resident(conn, "h2", LAST + timedelta(hours=5))
        _resident(conn, "h3", None)  # no activity on record: nothing to measure from

    assert _run(database, LAST + timedelta(hours=5)) == []
    first = _run(database, LAST + timedelta(hours=7))
    assert _levels(first) == [(rid, Severity.WATCH)]
    finding = first[0].finding
    assert (finding.home, finding.kind, finding.raised_at) == (
        "h1",
        "inactivity",
        LAST + timedelta(hours=7),
    )
    assert finding.reason_ko == "7시간째 움직임이 없습니다 (마지막 활동 11-24 21:10)"

    assert _run(database, LAST + timedelta(hours=7)) == []  # same moment again: nothing new
    assert _run(database, LAST + timedelta(hours=8)) == []  # still watch, already raised
    later = _run(database, LAST + timedelta(hours=12, minutes=1))
    assert _levels(later) == [(rid, Severity.WARNING), (quiet, Severity.WATCH)]

    with database.connection() as conn:
        stored = conn.execute(
            """SELECT id, resident_id, kind, severity, raised_at, details->>'rule'
               FROM anbu.findings ORDER BY id"""
        ).fetchall()
    assert sorted((r[1], r[3]) for r in stored) == sorted(
        [(rid, "watch"), (rid, "warning"), (quiet, "watch")]
    )
    assert {r[0] for r in stored} == {f.finding_id for f in first + later}
    assert {r[5] for r in stored} == {"fixed"}


def test_activity_after_a_finding_starts_a_new_silence(database: Database) -> None:
    with database.connection() as conn:
        rid = _resident(conn, "h1", LAST)
    assert _levels(_run(database, LAST + timedelta(hours=6))) == [(rid, Severity.WATCH)]
    back = LAST + timedelta(hours=9)
    with database.connection() as conn:
        _activity(conn, rid, back)
    assert _run(database, back + timedelta(hours=5)) == []
    again = _run(database, back + timedelta(hours=6))
    assert _levels(again) == [(rid, Severity.WATCH)]


def test_away_and_hospital_suppress_until_their_end(database: Database) -> None:
    back_on = LAST + timedelta(days=3)
    with database.connection() as conn:
        away = _resident(conn, "away", LAST)
        hospital = _resident(conn, "hospital", LAST)
        open_ended = _resident(conn, "open", LAST)
        ended = _resident(conn, "ended", LAST)
        _status(conn, away, "away", back_on)
        _status(conn, hospital, "hospital", back_on)
        _status(conn, open_ended, "away", None)  # no end date: cannot silence the sweep
        _status(conn, ended, "ended", None)

    during = _run(database, LAST + timedelta(days=2))
    assert _levels(during) == [(open_ended, Severity.CRITICAL)]
    # After the stay ends the silence is counted from its end, not from before they left.
    assert _run(database, back_on + timedelta(hours=5)) == []
    after = _run(database, back_on + timedelta(hours=6))
    assert _levels(after) == [(away, Severity.WATCH), (hospital, Severity.WATCH)]


def test_a_sweep_waits_for_a_concurrent_one_and_adds_nothing(db_url: str) -> None:
    """Sweep B runs while sweep A (a second later clock) has not committed yet."""
    with psycopg.connect(db_url) as conn:
        rids = [_resident(conn, f"h{i}", LAST - timedelta(hours=i)) for i in range(20)]
    results: dict[str, list[NewFinding]] = {}
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as watcher:
        watcher.autocommit = True
        results["a"] = sweep(a, LAST + timedelta(hours=7), POLICY)

        def other() -> None:
            with psycopg.connect(db_url) as b:
                results["b"] = sweep(b, LAST + timedelta(hours=7, seconds=1), POLICY)

        thread = threading.Thread(target=other)
        thread.start()
        while thread.is_alive():  # until B blocks on A (or, without a lock, has finished)
            waiting = watcher.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            ).fetchone()
            if waiting is not None and waiting[0] > 0:
                break
            thread.join(0.01)
        a.commit()
        thread.join()
    assert len(results["a"]) == len(rids)
    assert results["b"] == []
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anbu.findings").fetchone()
    assert row is not None and row[0] == len(rids)


def _sweep_worker(db_url: str, now: str, start: Any, out: Any) -> None:
    """One sweep process with its own connection: wait for the others, sweep once, report the
    new findings' (finding id, resident id), or the exception that ended it."""
    try:
        with psycopg.connect(db_url) as conn:
            start.wait(60)
            found = sweep(conn, datetime.fromisoformat(now), POLICY)
        out.put((os.getpid(), [(f.finding_id, f.resident_id) for f in found], None))
    except BaseException as exc:  # reported to the test, which fails on it
        out.put((os.getpid(), None, f"{type(exc).__name__}: {exc}"))
        raise


def test_concurrent_sweeps_insert_once(database: Database, db_url: str) -> None:
    """Four sweep processes at once (two at the same moment): each silence is stored once and
    handed to exactly one of them; every process finished without an error."""
    with database.connection() as conn:
        rids = [_resident(conn, f"h{i}", LAST - timedelta(hours=i)) for i in range(40)]
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(4), ctx.Queue()
    moments = [LAST + timedelta(hours=7, seconds=s) for s in (0, 0, 1, 2)]
    workers = [
        ctx.Process(target=_sweep_worker, args=(db_url, m.isoformat(), start, out)) for m in moments
    ]
    for w in workers:
        w.start()
    reports = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0], reports
    assert sorted(pid for pid, _, _ in reports) == sorted(w.pid for w in workers)
    assert [err for _, _, err in reports] == [None] * 4, reports
    new = [f for _, found, _ in reports for f in found or []]
    with database.connection() as conn:
        stored = conn.execute(
            "SELECT id, resident_id FROM anbu.findings ORDER BY resident_id"
        ).fetchall()
    # every home is at least 7 h silent: one finding each, stored once, handed out once
    assert sorted(r for _, r in stored) == sorted(rids)
    assert sorted(new, key=lambda f: f[1]) == [(i, r) for i, r in stored]


def test_a_care_managers_caps_bring_the_levels_forward(database: Database) -> None:
    with database.connection() as conn:
        frail = _resident(conn, "frail", LAST)
        other = _resident(conn, "other", LAST)
        conn.execute(
            "UPDATE anbu.resident SET watch_h_max = 2, critical_h_max = 4 WHERE id = %s", (frail,)
        )
    assert _run(database, LAST + timedelta(hours=1, minutes=59)) == []
    assert _levels(_run(database, LAST + timedelta(hours=2))) == [(frail, Severity.WATCH)]
    # critical at the 4 h cap (the fixed rule: 24 h); the other home keeps the fixed 6 h watch
    assert _levels(_run(database, LAST + timedelta(hours=3, minutes=59))) == []
    assert _levels(_run(database, LAST + timedelta(hours=4))) == [(frail, Severity.CRITICAL)]
    assert _levels(_run(database, LAST + timedelta(hours=6))) == [(other, Severity.WATCH)]


def _suppressions(database: Database, rid: int) -> list[tuple[str, str]]:
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT severity, status FROM anbu.suppressions WHERE resident_id = %s ORDER BY id",
            (rid,),
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_what_an_away_status_held_back_is_recorded_once_per_level(database: Database) -> None:
    with database.connection() as conn:
        rid = _resident(conn, "away", LAST)
        _status(conn, rid, "hospital", LAST + timedelta(days=3))
    assert _run(database, LAST + timedelta(hours=5)) == []
    assert _suppressions(database, rid) == []  # nothing reached yet: nothing held back
    for hours in (6, 7, 11):
        assert _run(database, LAST + timedelta(hours=hours)) == []
    assert _suppressions(database, rid) == [("watch", "hospital")]
    assert _run(database, LAST + timedelta(hours=12)) == []
    assert _suppressions(database, rid) == [("watch", "hospital"), ("warning", "hospital")]


def test_a_stay_ended_early_counts_the_silence_from_the_change(database: Database) -> None:
    """Set back to active before its end date, a home is not judged on weeks-old activity."""
    changed = LAST + timedelta(days=10)
    with database.connection() as conn:
        rid = _resident(conn, "back", LAST)
        manager = registry.add_care_manager(conn, "mgr", DONG, "담당", "+821000000009", "pw")
        registry.set_status(conn, rid, "away", LAST + timedelta(days=20), manager, now=LAST)
        registry.set_status(conn, rid, "active", None, manager, now=changed)
    assert _run(database, changed + timedelta(minutes=1)) == []
    assert _run(database, changed + timedelta(hours=5, minutes=59)) == []
    assert _levels(_run(database, changed + timedelta(hours=6))) == [(rid, Severity.WATCH)]


def test_a_home_whose_gateways_are_down_is_unknown_not_inactive(database: Database) -> None:
    """Missing data is not a still resident: no inactivity while every gateway is down."""
    with database.connection() as conn:
        rid = _resident(conn, "dark", LAST)
        for gw in ("dark-a", "dark-b"):
            registry.add_gateway(conn, gw, rid)
        conn.execute(
            "UPDATE anbu.gateway SET online = false, status_changed_at = %s WHERE resident_id = %s",
            (LAST + timedelta(hours=1), rid),
        )
    assert _run(database, LAST + timedelta(hours=8)) == []  # fixed watch is 6 h: held
    with database.connection() as conn:  # one gateway back: the home is judged again
        conn.execute(
            "UPDATE anbu.gateway SET online = true, status_changed_at = %s WHERE id = 'dark-a'",
            (LAST + timedelta(hours=9),),
        )
    assert _levels(_run(database, LAST + timedelta(hours=9))) == [(rid, Severity.WATCH)]


def _learned(conn: psycopg.Connection[Any], rid: int, watch: list[float]) -> None:
    """A learned routine with these per-slot watch hours (steps of 2 h, usual 0.5 h)."""
    conn.execute(
        """INSERT INTO anbu.baselines (resident_id, learned_at, history_days, grace, watch_h,
                                       step_h, usual_h, model)
           VALUES (%s, %s, 30, false, %s, %s, %s, '{}')""",
        (rid, LAST - timedelta(days=1), watch, [2.0] * 48, [0.5] * 48),
    )


def test_the_sweep_reads_the_learned_level_of_the_slot_the_silence_began_in(
    database: Database,
) -> None:
    """Slot 18 is 09:00-09:30 in Seoul: a silence begun then watches at 2 h, others at 10 h."""
    watch = [10.0] * 48
    watch[18] = 2.0
    seoul_0910 = datetime(2026, 11, 24, 0, 10, tzinfo=UTC)  # 09:10 KST
    with database.connection() as conn:
        early = _resident(conn, "early", seoul_0910)
        late = _resident(conn, "late", seoul_0910 + timedelta(minutes=30))  # 09:40, slot 19
        _learned(conn, early, watch)
        _learned(conn, late, watch)
    assert _run(database, seoul_0910 + timedelta(hours=1, minutes=59)) == []
    found = _run(database, seoul_0910 + timedelta(hours=2))
    assert _levels(found) == [(early, Severity.WATCH)]
    assert found[0].finding.details["rule"] == "learned"
    assert found[0].finding.reason_ko.startswith("평소 이 시간에는 30분 안에")
    assert _levels(_run(database, seoul_0910 + timedelta(hours=4))) == [(early, Severity.WARNING)]
    assert _levels(_run(database, seoul_0910 + timedelta(hours=10, minutes=30))) == [
        (early, Severity.CRITICAL),
        (late, Severity.WATCH),
    ]


def test_a_cap_under_an_hour_is_not_lost_to_the_sweeps_prefilter(database: Database) -> None:
    """The sweep skips homes silent for less than any level can be, caps included."""
    with database.connection() as conn:
        frail = _resident(conn, "frail", LAST)
        _resident(conn, "other", LAST)
        conn.execute("UPDATE anbu.resident SET watch_h_max = 0.5 WHERE id = %s", (frail,))
    assert _run(database, LAST + timedelta(minutes=29)) == []
    assert _levels(_run(database, LAST + timedelta(minutes=30))) == [(frail, Severity.WATCH)]
    assert _run(database, LAST + timedelta(minutes=45)) == []  # raised once per silence
