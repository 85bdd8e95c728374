"""The live sweep's routine checks on a real PostgreSQL: "not back" after an outing, "not up" in
the morning, once each, held back (and recorded) while a resident is away."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

import registry
from core.db import Database
from detectors.inactivity import InactivityPolicy
from detectors.learning import Baseline
from detectors.nightly import store_baseline
from detectors.sweep import NewFinding, sweep

SEOUL = ZoneInfo("Asia/Seoul")
POLICY = InactivityPolicy()
DONG = "1111051500"
NIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=SEOUL)  # the last activity before the night
ANCHOR_SLOT = 6  # the home's stillest half hour: 03:00
WAKE_H = 7.5  # always up by 07:30: "not up" at 08:00


def _resident(conn: psycopg.Connection[Any], home: str) -> int:
    registry.add_dong(conn, DONG, "청운효자동", "종로구")
    return registry.add_resident(conn, home, DONG, "김영희", "+821012345678")


def _activity(
    conn: psycopg.Connection[Any], rid: int, at: datetime, door: datetime | None = None
) -> None:
    """What ingest leaves in home_activity: the last sign of a person (a door: the door's)."""
    motion = at if door is None else door - timedelta(minutes=2)
    conn.execute(
        """INSERT INTO anbu.home_activity AS h
                  (resident_id, last_activity_at, last_motion_at, last_door_at)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (resident_id) DO UPDATE SET last_activity_at = excluded.last_activity_at,
               last_motion_at = greatest(h.last_motion_at, excluded.last_motion_at),
               last_door_at = greatest(h.last_door_at, excluded.last_door_at)""",
        (rid, door or at, motion, door),
    )


def _baseline(
    conn: psycopg.Connection[Any],
    rid: int,
    longest_out_h: float = 4.0,
    bathroom_h: float = float("nan"),
) -> None:
    """A learned routine as the nightly job stores it: watch at 12 h all day, up by 07:30."""
    b = Baseline(
        bathroom_h=(bathroom_h, 0.5),
        learned_at=(NIGHT - timedelta(hours=20)).timestamp(),
        history_days=30.0,
        grace=False,
        watch_h=(12.0,) * 48,
        step_h=(2.0,) * 48,
        usual_h=(1.0,) * 48,
        out_h=(longest_out_h, 2.0),
        anchor_slot=ANCHOR_SLOT,
        wake_h=WAKE_H,
    )
    store_baseline(conn, rid, NIGHT - timedelta(hours=20), b)


def _run(database: Database, now: datetime) -> list[tuple[str, str, str]]:
    with database.connection() as conn:
        found: list[NewFinding] = sweep(conn, now, POLICY)
    return sorted((f.finding.home, f.finding.kind, f.finding.severity.label) for f in found)


def test_an_outing_raises_not_back_after_the_threshold_and_never_inactivity(
    database: Database,
) -> None:
    out = datetime(2026, 11, 24, 10, 0, tzinfo=SEOUL)
    with database.connection() as conn:
        learned = _resident(conn, "learned")
        _baseline(conn, learned)  # longest outing 4 h: the 12 h floor applies
        traveller = _resident(conn, "traveller")
        _baseline(conn, traveller, longest_out_h=30.0)  # 1.5 x 30 h = 45 h
        weekender = _resident(conn, "weekender")
        _baseline(conn, weekender, longest_out_h=40.0)  # 1.5 x 40 h = 60 h: 48 h at the latest
        young = _resident(conn, "young")  # no routine learned: the floor, and it says so
        for rid in (learned, traveller, weekender, young):
            _activity(conn, rid, out, door=out)
    for hours in (1, 6, 11.9):
        assert _run(database, out + timedelta(hours=hours)) == [], hours  # no inactivity
    assert _run(database, out + timedelta(hours=12)) == [
        ("learned", "not_back", "watch"),
        ("young", "not_back", "watch"),
    ]
    assert _run(database, out + timedelta(hours=13)) == []  # once per outing and level
    assert _run(database, out + timedelta(hours=23, minutes=59)) == []
    assert _run(database, out + timedelta(hours=24)) == [
        ("learned", "not_back", "warning"),
        ("young", "not_back", "warning"),
    ]
    assert _run(database, out + timedelta(hours=44, minutes=59)) == []
    assert _run(database, out + timedelta(hours=45)) == [("traveller", "not_back", "watch")]
    assert _run(database, out + timedelta(hours=47, minutes=59)) == []
    assert _run(database, out + timedelta(hours=48)) == [("weekender", "not_back", "watch")]
    assert _run(database, out + timedelta(hours=57)) == [("traveller", "not_back", "warning")]
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT r.home, f.reason_ko, f.reason_en, f.details->>'rule' FROM anbu.findings f
               JOIN anbu.resident r ON r.id = f.resident_id
               WHERE f.severity = 'watch' ORDER BY r.home"""
        ).fetchall()
    reasons = {home: (ko, en, rule) for home, ko, en, rule in rows}
    assert reasons["learned"] == (
        "외출 후 12시간째 돌아오지 않았습니다 (평소 가장 긴 외출 4시간)",
        "Out for 12 h and not back (longest usual outing 4 h)",
        "learned",
    )
    assert reasons["traveller"][0].startswith("외출 후 45시간째")
    assert (
        reasons["weekender"][0] == "외출 후 48시간째 돌아오지 않았습니다 (평소 가장 긴 외출 40시간)"
    )
    assert "학습 중" in reasons["young"][0] and reasons["young"][2] == "fixed"


def test_coming_back_through_the_door_ends_the_outing(database: Database) -> None:
    out = datetime(2026, 11, 24, 10, 0, tzinfo=SEOUL)
    back = out + timedelta(hours=30)
    with database.connection() as conn:
        rid = _resident(conn, "h1")
        _baseline(conn, rid)
        _activity(conn, rid, out, door=out)
        _activity(conn, rid, back)  # motion inside after the door: home again
    assert _run(database, back + timedelta(hours=11, minutes=59)) == []
    assert _run(database, back + timedelta(hours=12)) == [("h1", "inactivity", "watch")]
    assert _run(database, back + timedelta(hours=14)) == [("h1", "inactivity", "warning")]
    assert [f for f in _run(database, out + timedelta(hours=60)) if f[1] == "not_back"] == []


def _not_up(database: Database, now: datetime) -> list[str]:
    return [home for home, kind, _ in _run(database, now) if kind == "not_up"]


def test_not_up_once_per_morning_and_not_after_stirring(database: Database) -> None:
    with database.connection() as conn:
        asleep = _resident(conn, "asleep")
        early = _resident(conn, "early")  # up at 02:30 for the toilet, before the anchor
        stirred = _resident(conn, "stirred")  # up at 03:30, after the anchor, then still
        young = _resident(conn, "young")  # no learned wake time: no morning check
        for rid in (asleep, early, stirred):
            _baseline(conn, rid)
        _activity(conn, asleep, NIGHT)
        _activity(conn, early, NIGHT + timedelta(hours=3, minutes=30))
        _activity(conn, stirred, NIGHT + timedelta(hours=4, minutes=30))
        _activity(conn, young, NIGHT)
    morning = datetime(2026, 11, 25, 8, 0, tzinfo=SEOUL)
    assert _not_up(database, morning - timedelta(minutes=1)) == []
    assert _not_up(database, morning) == ["asleep", "early"]
    assert _not_up(database, morning + timedelta(minutes=1)) == []  # once per morning
    assert _not_up(database, morning + timedelta(hours=2)) == []
    with database.connection() as conn:
        reason, details = conn.execute(
            """SELECT f.reason_ko, f.details FROM anbu.findings f JOIN anbu.resident r
                ON r.id = f.resident_id WHERE r.home = 'asleep' AND f.kind = 'not_up'"""
        ).fetchone() or ("", {})
    assert reason == "평소 07:30까지는 일어나시는데 아직 움직임이 없습니다"
    anchor = datetime(2026, 11, 25, 3, 0, tzinfo=SEOUL)
    assert datetime.fromisoformat(details["since"]) == anchor and details["rule"] == "learned"
    # still nothing the next morning: a new night, a new check
    next_morning = morning + timedelta(days=1)
    assert _not_up(database, next_morning - timedelta(minutes=1)) == []
    assert _not_up(database, next_morning) == ["asleep", "early", "stirred"]


def test_a_resident_out_at_night_is_not_checked_for_getting_up(database: Database) -> None:
    with database.connection() as conn:
        rid = _resident(conn, "out")
        _baseline(conn, rid)
        _activity(conn, rid, NIGHT, door=NIGHT)
    assert _not_up(database, datetime(2026, 11, 25, 9, 0, tzinfo=SEOUL)) == []


def _suppressed(database: Database) -> list[tuple[str, str, str, str]]:
    with database.connection() as conn:
        rows = conn.execute(
            """SELECT r.home, s.kind, s.severity, s.status FROM anbu.suppressions s
               JOIN anbu.resident r ON r.id = s.resident_id ORDER BY s.id"""
        ).fetchall()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def test_away_and_hospital_hold_both_back_and_record_it(database: Database) -> None:
    out = NIGHT - timedelta(hours=13)  # 10:00 the day before
    back_on = NIGHT + timedelta(days=5)
    with database.connection() as conn:
        travelling = _resident(conn, "travelling")
        in_hospital = _resident(conn, "hospital")
        for rid in (travelling, in_hospital):
            _baseline(conn, rid)
        _activity(conn, travelling, out, door=out)
        _activity(conn, in_hospital, NIGHT)
        conn.execute(
            "UPDATE anbu.resident SET status = 'away', status_until = %s WHERE id = %s",
            (back_on, travelling),
        )
        conn.execute(
            "UPDATE anbu.resident SET status = 'hospital', status_until = %s WHERE id = %s",
            (back_on, in_hospital),
        )
    morning = datetime(2026, 11, 25, 8, 0, tzinfo=SEOUL)
    assert _not_up(database, morning) == []
    assert ("hospital", "not_up", "watch", "hospital") in _suppressed(database)
    assert _run(database, out + timedelta(hours=36)) == []
    assert _run(database, out + timedelta(hours=49)) == []
    assert [s for s in _suppressed(database) if s[0] == "travelling"] == [
        ("travelling", "not_back", "watch", "away"),
        ("travelling", "not_back", "warning", "away"),
    ]
    assert _run(database, out + timedelta(hours=50)) == []  # recorded once per level
    assert len(_suppressed(database)) == len(set(_suppressed(database)))


def _in_room(conn: psycopg.Connection[Any], rid: int, at: datetime, room: str) -> None:
    conn.execute(
        """INSERT INTO anbu.home_activity (resident_id, last_activity_at, last_motion_at, last_room)
           VALUES (%s, %s, %s, %s)""",
        (rid, at, at, room),
    )


def test_a_long_stay_in_the_bathroom_is_raised_live_ahead_of_inactivity(
    database: Database,
) -> None:
    """Bathroom silences of this home end within 0.8 h: one begun there is a finding at the
    1 h floor, once, then inactivity at the home's 12 h watch; elsewhere, or where bathroom
    silences are not learned short, only inactivity."""
    went_in = datetime(2026, 11, 24, 14, 0, tzinfo=SEOUL)
    with database.connection() as conn:
        bath = _resident(conn, "bath")
        kitchen = _resident(conn, "kitchen")
        unlearned = _resident(conn, "unlearned")
        _baseline(conn, bath, bathroom_h=0.8)
        _baseline(conn, kitchen, bathroom_h=0.8)
        _baseline(conn, unlearned)
        _in_room(conn, bath, went_in, "bathroom")
        _in_room(conn, kitchen, went_in, "kitchen")
        _in_room(conn, unlearned, went_in, "bathroom")
    assert _run(database, went_in + timedelta(minutes=59)) == []
    assert _run(database, went_in + timedelta(hours=1)) == [("bath", "bathroom_long_stay", "watch")]
    assert _run(database, went_in + timedelta(hours=2)) == []  # once per silence
    assert _run(database, went_in + timedelta(hours=12)) == [
        ("bath", "inactivity", "watch"),
        ("kitchen", "inactivity", "watch"),
        ("unlearned", "inactivity", "watch"),
    ]
    with database.connection() as conn:
        reason = conn.execute(
            "SELECT reason_ko FROM anbu.findings WHERE kind = 'bathroom_long_stay'"
        ).fetchone()
    assert reason == ("욕실에서 1시간째 움직임이 없습니다 (평소보다 깁니다)",)
