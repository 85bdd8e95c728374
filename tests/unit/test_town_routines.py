"""The simulated resident's day: deterministic, well-formed, and silent once a scenario says so."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import VirtualClock
from core.domain import SensorKind
from simulators.routines import (
    SEOUL,
    Habits,
    SimEvent,
    apply_scenarios,
    draw_habits,
    routine_events,
)
from simulators.town import (
    Town,
    gateway_offline,
    leaves_home,
    make_homes,
    sleeps_in,
    stops_moving,
)

DAY = datetime(2026, 11, 23, tzinfo=SEOUL)
HOMES = make_homes(4, seed=11, prefix="unit")


def day_of(seed: int, home_index: int = 0, day: datetime = DAY, habits: Habits | None = None):
    home = HOMES[home_index]
    h = habits or draw_habits(random.Random(f"{seed}:habits"))
    return routine_events(home, day, random.Random(seed), h)


def local_hours(events: list[SimEvent]) -> list[float]:
    return [(e.ts.astimezone(SEOUL) - DAY).total_seconds() / 3600 for e in events if e.ts >= DAY]


def test_same_seed_same_day_different_seed_different_day() -> None:
    assert day_of(3) == day_of(3)
    assert day_of(3) != day_of(4)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    home_index=st.integers(0, len(HOMES) - 1),
    day_offset=st.integers(0, 400),
)
def test_a_day_is_well_formed(seed: int, home_index: int, day_offset: int) -> None:
    day = DAY + timedelta(days=day_offset)
    events = day_of(seed, home_index, day)
    assert events, "a resident at home moves every day"
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert all(day <= e.ts < day + timedelta(days=1) for e in events)
    assert all(e.ts.tzinfo is not None and e.ts.utcoffset() == timedelta(0) for e in events)
    assert all(e.ts.microsecond == 0 for e in events)
    # the database keeps one reading per (sensor, ts): never two in one second
    keys = [(e.sensor, e.ts) for e in events]
    assert len(keys) == len(set(keys))
    sensors = {s.vendor_id: s for s in HOMES[home_index].sensors}
    by_sensor: dict[str, list[float]] = defaultdict(list)
    for e in events:
        assert sensors[e.sensor].kind is e.kind
        assert e.gateway == HOMES[home_index].gateway_id
        by_sensor[e.sensor].append(e.value)
    for sensor, values in by_sensor.items():
        if sensors[sensor].kind in (SensorKind.MOTION, SensorKind.DOOR):
            assert values == [1.0, 0.0] * (len(values) // 2), f"{sensor} pulses must pair up"
        else:  # a plug: on at some watts, then off
            assert values[1::2] == [0.0] * (len(values) // 2) and len(values) % 2 == 0
            assert all(v > 0 for v in values[0::2])


def test_morning_activity_after_a_quiet_night() -> None:
    for seed in range(30):
        habits = draw_habits(random.Random(seed))
        hours = local_hours(
            [e for e in day_of(seed, habits=habits) if e.kind is SensorKind.MOTION and e.value]
        )
        assert any(5.0 <= h <= 10.0 for h in hours), f"seed {seed}: no morning movement"
        assert not any(0.0 <= h < 1.0 for h in hours), f"seed {seed}: restless just after midnight"
        # asleep an hour after bedtime (a night toilet trip is only after 1 h local)
        assert not any(habits.bed_hour + 1.5 < h < 24 for h in hours), f"seed {seed}"


def test_an_outing_opens_and_closes_the_front_door_with_no_motion_while_out() -> None:
    home = HOMES[0]
    door = next(s.vendor_id for s in home.sensors if s.kind is SensorKind.DOOR)
    for seed in range(10):
        events = routine_events(home, DAY, random.Random(seed), Habits(outing_probability=1.0))
        door_events = [e for e in events if e.sensor == door]
        assert [e.value for e in door_events] == [1.0, 0.0, 1.0, 0.0]
        left, back = door_events[1].ts, door_events[2].ts
        assert back - left >= timedelta(minutes=30)
        assert not [e for e in events if e.kind is SensorKind.MOTION and left < e.ts < back]


def test_no_activity_after_the_resident_stops_moving() -> None:
    events = day_of(5)
    moving = [e for e in events if e.kind is SensorKind.MOTION and e.value]
    # stop while a motion pulse is still open, so its closing 0 must be synthesised
    at = moving[len(moving) // 2].ts + timedelta(seconds=5)
    after = apply_scenarios(events, HOMES[0].home, [stops_moving(HOMES[0].home, at)])
    assert [e for e in after if e.ts < at] == [e for e in events if e.ts < at]
    tail = [e for e in after if e.ts >= at]
    assert tail, "the open pulse's closing 0 is synthesised"
    assert all(e.ts == at and e.kind is SensorKind.MOTION and e.value == 0 for e in tail)
    open_sensors: set[str] = set()
    for e in after:
        if e.kind is SensorKind.MOTION:
            (open_sensors.add if e.value else open_sensors.discard)(e.sensor)
    assert not open_sensors, "every motion sensor ends at 0"
    # another home is not affected
    assert apply_scenarios(events, HOMES[0].home, [stops_moving("elsewhere", at)]) == events


def test_gateway_offline_drops_the_window_only() -> None:
    events = day_of(6)
    start, end = DAY + timedelta(hours=9), DAY + timedelta(hours=15)
    kept = apply_scenarios(events, HOMES[0].home, [gateway_offline(HOMES[0].home, start, end)])
    assert kept == [e for e in events if not start <= e.ts < end]
    assert any(e.ts >= end for e in kept)


def test_native_wire_format() -> None:
    e = SimEvent(DAY, "gw-x", "pir_living", SensorKind.MOTION, 1.0)
    plug = SimEvent(DAY, "gw-x", "plug_tv", SensorKind.POWER, 95.5)
    body = json.loads(json.dumps({"readings": [e.native(), plug.native()]}))
    assert body["readings"][0] == {
        "sensor": "pir_living",
        "kind": "motion",
        "ts": "2026-11-22T15:00:00Z",
        "value": 1,
    }
    assert body["readings"][1]["value"] == 95.5


def test_make_homes_fake_residents() -> None:
    homes = make_homes(12, seed=1, prefix="t")
    assert len({h.gateway_id for h in homes}) == 12
    assert all(re.fullmatch(r"\+8210\d{8}", h.phone) for h in homes)
    assert homes[0].phone == "+821000000001"
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", h.gateway_id) for h in homes)
    for h in homes:
        kinds = [s.kind for s in h.sensors]
        assert kinds.count(SensorKind.DOOR) == 1
        assert {s.room for s in h.sensors if s.kind is SensorKind.MOTION} == {
            "living",
            "kitchen",
            "bedroom",
            "bathroom",
        }
        assert kinds.count(SensorKind.POWER) == 1


def test_town_schedule_has_no_gaps_or_repeats_across_midnight() -> None:
    clock = VirtualClock(DAY)
    town = Town(HOMES[:2], "127.0.0.1", 1, clock, seed=9)
    a = DAY + timedelta(hours=20)
    b = a + timedelta(hours=14)
    whole = town.due(a, b)
    cuts = sorted(a + timedelta(seconds=random.Random(1).randint(1, 50_399)) for _ in range(40))
    pieces: list[SimEvent] = []
    for lo, hi in zip([a, *cuts], [*cuts, b], strict=True):
        pieces.extend(town.due(lo, hi))
    assert pieces == whole
    both_days = town.events_for_day(DAY) + town.events_for_day(DAY + timedelta(days=1))
    assert whole == [e for e in both_days if a < e.ts <= b]
    assert {e.gateway for e in whole} == {h.gateway_id for h in HOMES[:2]}


def test_town_scenarios_apply_to_schedule_and_phone_personas() -> None:
    clock = VirtualClock(DAY)
    town = Town(HOMES[:2], "127.0.0.1", 1, clock, seed=9)
    before = town.due(DAY, DAY + timedelta(days=2))
    assert set(town.phone_personas().values()) == {"press:1"}
    at = DAY + timedelta(hours=10)
    town.add_scenario(stops_moving(HOMES[1].home, at))
    after = town.due(DAY, DAY + timedelta(days=2))
    gw = HOMES[1].gateway_id
    assert not [e for e in after if e.gateway == gw and (e.ts > at or (e.ts == at and e.value))]
    assert [e for e in after if e.gateway != gw] == [e for e in before if e.gateway != gw]
    assert town.phone_personas() == {HOMES[0].phone: "press:1", HOMES[1].phone: "no_answer"}


def test_leaving_home_closes_the_door_behind_the_resident_and_nothing_after() -> None:
    home = HOMES[0]
    events = day_of(7)
    moving = [e for e in events if e.kind is SensorKind.MOTION and e.value]
    at = moving[len(moving) // 2].ts + timedelta(seconds=5)  # a motion pulse still open
    after = apply_scenarios(events, home.home, [leaves_home(home.home, at)], home)
    assert [e for e in after if e.ts < at] == [e for e in events if e.ts < at]
    tail = [e for e in after if e.ts >= at]
    door = [e for e in tail if e.kind is SensorKind.DOOR]
    assert [(e.ts - at, e.value) for e in door] == [
        (timedelta(seconds=30), 1.0),
        (timedelta(seconds=40), 0.0),
    ]
    motion = [e for e in tail if e.kind is SensorKind.MOTION]
    assert motion, "the open motion pulse is closed"
    assert all(e.value == 0 for e in motion)  # closing pulses only
    assert all(e.gateway == home.gateway_id for e in door)
    with pytest.raises(ValueError, match="front door"):
        apply_scenarios(events, home.home, [leaves_home(home.home, at)])


def test_coming_back_opens_the_door_and_the_day_goes_on() -> None:
    home = HOMES[0]
    events = day_of(7)
    at, back = DAY + timedelta(hours=9), DAY + timedelta(hours=15)
    after = apply_scenarios(events, home.home, [leaves_home(home.home, at, back)], home)
    inside = [e for e in after if at < e.ts < back and e.kind is not SensorKind.DOOR]
    assert inside == []
    doors = [(e.ts, e.value) for e in after if e.kind is SensorKind.DOOR and at <= e.ts]
    assert (back, 1.0) in doors and (back + timedelta(seconds=10), 0.0) in doors
    assert [e for e in after if e.ts > back + timedelta(seconds=10)] == [
        e for e in events if e.ts > back + timedelta(seconds=10)
    ]


def test_sleeping_in_drops_the_night_and_the_morning_only() -> None:
    events = day_of(8)
    until = DAY + timedelta(hours=10)
    kept = apply_scenarios(events, HOMES[0].home, [sleeps_in(HOMES[0].home, DAY, until)])
    assert kept == [e for e in events if e.ts >= until]


def test_town_leaving_home_lands_on_its_own_day_and_the_past_is_as_published() -> None:
    clock = VirtualClock(DAY)
    town = Town(HOMES[:2], "127.0.0.1", 1, clock, seed=9)
    at = DAY + timedelta(hours=10)
    town.add_scenario(leaves_home(HOMES[0].home, at))
    gw = HOMES[0].gateway_id
    today = [e for e in town.events_for_day(DAY) if e.gateway == gw]
    assert [e.value for e in today if e.kind is SensorKind.DOOR][-2:] == [1.0, 0.0]
    assert not [e for e in town.events_for_day(DAY + timedelta(days=1)) if e.gateway == gw]
    yesterday = [e for e in town.events_for_day(DAY - timedelta(days=1)) if e.gateway == gw]
    assert yesterday and all(e.ts < DAY for e in yesterday)
    since, until = DAY - timedelta(hours=19), DAY + timedelta(hours=20)
    published = [
        (topic, r["sensor"], r["ts"], r["value"])
        for _, messages in town.past_messages(since, until)
        for topic, payload in messages
        for r in json.loads(payload)["readings"]
    ]
    expected = [
        (f"gw/{e.gateway}/anbu/readings", e.sensor, e.native()["ts"], e.native()["value"])
        for e in town.due(since - timedelta(microseconds=1), until)
        if e.ts < until
    ]
    assert sorted(published) == sorted(expected) and published
