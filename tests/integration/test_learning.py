"""Nightly learning on a real PostgreSQL: readings in, a baseline row out, the sweep uses it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import registry
from core.db import Database
from core.domain import SensorKind
from detectors.evidence import Row, build_evidence
from detectors.inactivity import InactivityPolicy
from detectors.learning import LearningPolicy
from detectors.nightly import learn_all
from detectors.replay import replay_home
from detectors.routine import RoutinePolicy
from detectors.sweep import sweep
from ingest.store import Message, Store
from tests.unit.test_detectors_contract import KST, START, routine

pytestmark = pytest.mark.storage_modes

DONG = "1111051500"
SEOUL = ZoneInfo("Asia/Seoul")
LEARNING = LearningPolicy()
ROUTINE = RoutinePolicy()


def _home(
    database: Database,
    unique: str,
    days: int,
    fridge: bool = False,
    rows: list[Row] | None = None,
) -> int:
    rows = routine(days) if rows is None else rows
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


def _through_ingest(database: Database, unique: str, rows: list[Row]) -> None:
    """Each reading as the home's gateway publishes it, one message at a time, in time order."""
    store = Store(database)
    for t, sensor, kind, _, value in sorted(rows):
        ts = datetime.fromtimestamp(t, UTC)
        body = {
            "readings": [{"sensor": sensor, "kind": kind, "ts": ts.isoformat(), "value": value}]
        }
        store.store_batch([Message(f"gw/{unique}gw/anbu/readings", json.dumps(body).encode())], ts)


def _worker(
    database: Database, start: datetime, until: datetime
) -> list[tuple[str, str, datetime]]:
    """The worker on a virtual clock from `start` to `until`: its nightly learning at 03:00
    local, its sweep every 5 minutes; the findings the sweep raised (kind, level, when)."""
    policy = InactivityPolicy()
    learned: set[datetime] = set()
    live: list[tuple[str, str, datetime]] = []
    now = start
    while now <= until:
        local = now.astimezone(SEOUL)
        three = local.replace(hour=3, minute=0, second=0, microsecond=0)
        if three <= local and three not in learned:  # the nightly job, at 03:00
            learned.add(three)
            assert learn_all(database, three) == 1
        with database.connection() as conn:
            live += [
                (f.finding.kind, f.finding.severity.label, now) for f in sweep(conn, now, policy)
            ]
        now += timedelta(minutes=5)
    return live


def _last_activity(database: Database, rid: int) -> datetime:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT last_activity_at FROM anbu.home_activity WHERE resident_id = %s", (rid,)
        ).fetchone()
    assert row is not None
    last: datetime = row[0]
    return last


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


def test_a_home_seen_in_one_room_says_so_in_its_finding_live_as_offline(
    database: Database, unique: str
) -> None:
    """A home with one motion sensor (the living room) and its entrance door: nightly learning
    records what its sensors cannot see, and the sweep's inactivity finding says it after its
    reason, as `anbu detect` does; a home that sees its rooms says nothing more."""
    rows = [r for r in routine(12) if r[1] in ("pir", "door")]
    rid = _home(database, unique, 12, rows=rows)
    now = START + timedelta(days=11, hours=3)
    assert learn_all(database, now) == 1
    with database.connection() as conn:
        (model,) = conn.execute(
            "SELECT model FROM anbu.baselines WHERE resident_id = %s", (rid,)
        ).fetchone()
        assert model["sees"] == "one_room:living"
        last = START + timedelta(days=11, hours=11, minutes=55)
        conn.execute(
            "INSERT INTO anbu.home_activity (resident_id, last_activity_at, last_motion_at) "
            "VALUES (%s, %s, %s)",
            (rid, last, last),
        )
    with database.connection() as conn:
        found = sweep(conn, last + timedelta(hours=7), InactivityPolicy())
    note_ko = (
        "동작 센서가 거실에만 있어 대상자가 다른 곳에 있는 동안은 알 수 없습니다. "
        "안부전화로 먼저 확인합니다"
    )
    assert [f.resident_id for f in found] == [rid]
    assert found[0].finding.reason_ko.endswith(f"움직임이 없습니다. {note_ko}")
    assert found[0].finding.reason_en.endswith(
        "Motion is sensed in the living room only: time elsewhere cannot be seen, so a check-in "
        "call comes first"
    )
    cut = last.timestamp()
    offline = replay_home(
        build_evidence([r for r in rows if r[0] <= cut]), cut + 7 * 3600, KST, LEARNING, ROUTINE
    )
    late = [f for f in offline if f.at > cut and f.kind == "inactivity"]
    assert late and all(f.reason_ko.endswith(note_ko) for f in late)


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
        return _last_activity(database, rid)

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


def test_a_bed_mat_holds_the_live_silence_as_it_holds_anbu_detect(
    database: Database, unique: str
) -> None:
    """Live = offline for a resident who went to bed and never got up: the last evening's
    readings arrive through ingest, the worker's nightly learning runs at 03:00, the sweep runs
    every 5 minutes; it raises the findings `anbu detect` raises on the same readings, of the
    same kinds and levels, each within one sweep interval. The bed mat stays pressed: as offline,
    it holds the home "occupied" for its learned longest usual stay (stored per sensor by
    learning), and the morning check goes by doings only. Before, the live silence began at the
    press, so the learned levels (made of silences that begin after the hold) fired at night."""
    rows = routine(12)  # the last evening: bed at about 22:30 on day 11, then nothing
    press = max(r[0] for r in rows if r[1] == "bed" and r[4] == 1)
    cut = press - 3600
    rid = _home(database, unique, 12, rows=[r for r in rows if r[0] < cut])
    _through_ingest(database, unique, [r for r in rows if r[0] >= cut])
    night = datetime.fromtimestamp(press, UTC)
    until = night + timedelta(hours=22)
    live = _worker(database, night, until)
    with database.connection() as conn:
        hold = conn.execute(
            "SELECT s.hold_s FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id"
            " WHERE g.resident_id = %s AND s.vendor_id = 'bed'",
            (rid,),
        ).fetchone()
    assert hold is not None and 6 * 3600 < hold[0] < 12 * 3600  # learned: the usual night
    offline = [
        (f.kind, f.severity.label, datetime.fromtimestamp(f.at, UTC))
        for f in replay_home(build_evidence(rows), until.timestamp(), KST, LEARNING, ROUTINE)
        if f.at > press
    ]
    assert offline and {k for k, _, _ in offline} >= {"inactivity", "not_up"}
    assert [(k, s) for k, s, _ in live] == [(k, s) for k, s, _ in offline]
    for (_, _, at_live), (_, _, at_off) in zip(live, offline, strict=True):
        assert at_off <= at_live < at_off + timedelta(minutes=5)
    first = min(at for _, _, at in live)
    assert first - night > timedelta(hours=6)  # nothing while the mat holds the night


def test_a_pir_stuck_on_does_not_hide_a_still_resident_live_as_offline(
    database: Database, unique: str
) -> None:
    """Live = offline for a resident who stopped moving one evening while the living room's PIR,
    stuck on, re-sent 1 every ten minutes for a day: through ingest, with the nightly learning
    at 03:00 and the sweep every 5 minutes, the worker raises what `anbu detect` raises on the
    same readings (kinds and levels, each within one sweep interval), and it raises something:
    before, each re-send was a doing, and the home stayed "active" as long as the PIR did."""
    rows = routine(12)
    press = max(r[0] for r in rows if r[1] == "bed" and r[4] == 1)
    fall = max(r[0] for r in rows if r[1] == "pir" and r[4] == 0 and r[0] < press - 2 * 3600)
    rows = [r for r in rows if r[0] <= fall]
    rows += [(fall + 120 + 600.0 * k, "pir", "motion", "living", 1) for k in range(6 * 24)]
    cut = fall - 3600
    _home(database, unique, 12, rows=[r for r in rows if r[0] < cut])
    _through_ingest(database, unique, [r for r in rows if r[0] >= cut])
    start = datetime.fromtimestamp(fall, UTC)
    until = start + timedelta(hours=22)
    live = _worker(database, start, until)
    offline = [
        (f.kind, f.severity.label, datetime.fromtimestamp(f.at, UTC))
        for f in replay_home(build_evidence(rows), until.timestamp(), KST, LEARNING, ROUTINE)
        if f.at > fall
    ]
    assert offline and "inactivity" in {k for k, _, _ in offline}
    assert [(k, s) for k, s, _ in live] == [(k, s) for k, s, _ in offline]
    for (_, _, at_live), (_, _, at_off) in zip(live, offline, strict=True):
        assert at_off <= at_live < at_off + timedelta(minutes=5)


def test_a_new_home_fridge_found_at_night_no_longer_hides_a_still_resident(
    database: Database, unique: str
) -> None:
    """Day 4 of a new home: the resident stops at 11:00; the fridge, not yet known for what it
    is, goes on stepping through ingest and keeps the home "active". The nightly job finds it
    switching by itself (grace or not) and the silence counts again from the resident's last
    doing, as `anbu detect` counts it: the sweep right after raises what the replay raises."""
    stop = (START + timedelta(days=4, hours=11)).timestamp()
    t0 = routine(5)[0][0]
    fridge: list[Row] = [
        (t0 + k * 1800.0, "fridge", "power", "kitchen", 90.0 if k % 2 else 2.0)
        for k in range(6 * 48)
    ]
    learning_at = START + timedelta(days=5, hours=3)
    rows = [r for r in routine(5) if r[0] < stop] + [
        r for r in fridge if r[0] < learning_at.timestamp()
    ]
    rid = _home(database, unique, 6, rows=[r for r in rows if r[0] < stop])
    _through_ingest(database, unique, [r for r in rows if r[0] >= stop])

    def last_activity() -> datetime:
        return _last_activity(database, rid)

    assert last_activity() > learning_at - timedelta(hours=1)  # the fridge counted
    with database.connection() as conn:
        assert sweep(conn, learning_at - timedelta(minutes=1), InactivityPolicy()) == []
    assert learn_all(database, learning_at) == 1
    ev = build_evidence(r for r in rows if r[1] != "fridge")
    assert last_activity() == datetime.fromtimestamp(float(ev.event_t[-1]), UTC)  # her last doing
    with database.connection() as conn:
        found = sweep(conn, learning_at + timedelta(minutes=1), InactivityPolicy())
    live = [(f.finding.kind, f.finding.severity.label) for f in found]
    offline = [
        (f.kind, f.severity.label)
        for f in replay_home(
            build_evidence(rows), learning_at.timestamp() + 60, KST, LEARNING, ROUTINE
        )
        if f.at > stop
    ]
    assert live == offline[-1:] == [("inactivity", "warning")]  # 16 h: past the fixed 12 h
