"""The demo town's safety devices (issue 20): every home's pendant and kitchen smoke detector,
the detectors' check-ins, a pendant pressed and a smoke alarm's test press."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from anbu.demo_cast import Cast
from core.clock import VirtualClock
from core.domain import AlarmValue, ButtonValue, SensorKind
from simulators.routines import (
    HEARTBEAT_EVERY_H,
    SEOUL,
    HomeSpec,
    ScenarioKind,
    apply_scenarios,
    presses_alarm_test,
    presses_button,
)
from simulators.town import (
    DONGS,
    Town,
    gateway_offline,
    local_midnight,
    make_homes,
    stops_moving,
    with_safety_devices,
)

START = datetime(2026, 11, 25, 6, 0, tzinfo=SEOUL)
DONG_CODES = list(DONGS)[:2]


def _town(homes: int = 6, safety: bool = True) -> tuple[Town, list[HomeSpec]]:
    specs = make_homes(homes, 7, dong_codes=DONG_CODES)
    if safety:
        specs = with_safety_devices(specs)
    return Town(specs, "127.0.0.1", 1, VirtualClock(START), 7), specs


def test_every_home_gets_a_pendant_and_a_kitchen_smoke_detector_once() -> None:
    _, specs = _town()
    for h in specs:
        safety = [(s.kind, s.room) for s in h.sensors if s.kind in (SensorKind.BUTTON,
                                                                     SensorKind.SMOKE)]  # fmt: skip
        assert safety == [(SensorKind.BUTTON, "living"), (SensorKind.SMOKE, "kitchen")]
    assert with_safety_devices(specs) == specs


def test_smoke_detectors_check_in_all_day_in_the_native_format() -> None:
    town, _ = _town(1)
    day = local_midnight(START)
    beats = [e for e in town.events_for_day(day) if e.kind is SensorKind.SMOKE]
    assert all(e.value == AlarmValue.CLEAR for e in beats)
    gaps = [b.ts - a.ts for a, b in pairwise(beats)]
    assert 6 <= len(beats) <= 11
    assert max(gaps) <= timedelta(hours=HEARTBEAT_EVERY_H[1])
    native = beats[0].native()
    assert (
        native["kind"] == "smoke" and native["value"] == 0 and native["sensor"] == "smoke_kitchen"
    )
    assert not [e for e in town.events_for_day(day) if e.kind is SensorKind.BUTTON]


def test_check_ins_go_on_when_the_resident_stops_but_not_while_the_gateway_is_down() -> None:
    town, specs = _town(2)
    home1, home2 = specs[0].home, specs[1].home
    day = local_midnight(START)
    town.add_scenario(stops_moving(home1, START))
    town.add_scenario(gateway_offline(home2, START, START + timedelta(hours=12)))
    events = town.events_for_day(day)
    after = [e for e in events if e.ts > START + timedelta(hours=1)]
    stopped = [e.kind for e in after if e.gateway == specs[0].gateway_id]
    assert stopped and set(stopped) == {SensorKind.SMOKE}  # nobody moves; the detector reports
    down = [e for e in events if e.gateway == specs[1].gateway_id
            and START <= e.ts < START + timedelta(hours=12)]  # fmt: skip
    assert down == []


def test_a_press_and_a_test_press_as_the_native_readings_say_them() -> None:
    _, specs = _town(1)
    home = specs[0]
    at = START + timedelta(hours=5, microseconds=7)
    out = apply_scenarios([], home.home, [presses_button(home.home, at)], home)
    assert [(e.sensor, e.kind, e.value, e.ts) for e in out] == [
        ("sos1", SensorKind.BUTTON, ButtonValue.PRESS, at.replace(microsecond=0))
    ]
    out = apply_scenarios([], home.home, [presses_alarm_test(home.home, at)], home)
    assert [(e.sensor, e.value) for e in out] == [
        ("smoke_kitchen", AlarmValue.TEST), ("smoke_kitchen", AlarmValue.CLEAR)
    ]  # fmt: skip
    assert json.loads(json.dumps(out[0].native()))["value"] == 2
    bare = make_homes(1, 7)[0]
    with pytest.raises(ValueError, match="button"):
        apply_scenarios([], bare.home, [presses_button(bare.home, at)], bare)


def test_the_cast_presses_a_pendant_and_tests_a_smoke_alarm_and_forbids_the_fire() -> None:
    town, specs = _town()
    cast = Cast.of(town, specs, DONG_CODES, START)
    kinds = [(e.kind, e.home) for e in cast.expected]
    assert ("help_button", "home004") in kinds and ("alarm_test", "home006") in kinds
    assert [(e.kind, e.home) for e in cast.absent] == [("fire_alarm", "home006")]
    press = next(s for s in cast.scenarios if s.kind is ScenarioKind.PRESSES_BUTTON)
    test = next(s for s in cast.scenarios if s.kind is ScenarioKind.TESTS_ALARM)
    cut = min(s.at for s in cast.scenarios if s.kind is ScenarioKind.GATEWAY_OFFLINE
              and s.home == "home004" and s.at.hour == 14)  # fmt: skip
    assert START + timedelta(hours=4) <= press.at < test.at < cut  # late morning, before the cut
    assert cast.sleepers == ["home003", "home004", "home006"]
    # without safety devices the cast is the one it always was
    plain, plain_specs = _town(safety=False)
    assert not Cast.of(plain, plain_specs, DONG_CODES, START).absent
