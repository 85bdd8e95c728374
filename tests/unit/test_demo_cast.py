"""Who plays which scenario in the demo town, and which findings the demo must then show."""

from __future__ import annotations

from datetime import datetime, timedelta

from anbu.demo_cast import Cast
from core.clock import VirtualClock
from simulators.routines import SEOUL, ScenarioKind
from simulators.town import DONGS, Town, make_homes

START = datetime(2026, 11, 25, 6, 0, tzinfo=SEOUL)
DONG_CODES = list(DONGS)[:2]


def _cast(homes: int) -> Cast:
    specs = make_homes(homes, 7, dong_codes=DONG_CODES)
    town = Town(specs, "127.0.0.1", 1, VirtualClock(START), 7)
    return Cast.of(town, specs, DONG_CODES, START)


def test_six_homes_play_every_scenario() -> None:
    cast = _cast(6)
    assert [(e.kind, e.home) for e in cast.expected] == [
        ("inactivity", "home001"),
        ("gateway_offline", "home002"),
        ("not_back", "home005"),
        ("site_outage", None),
    ]
    cut = [s for s in cast.scenarios if s.kind is ScenarioKind.GATEWAY_OFFLINE and s.at.hour == 14]
    assert sorted(s.home for s in cut) == ["home002", "home004", "home006"]  # all of 사직동
    assert max(s.at for s in cut) - min(s.at for s in cut) < timedelta(minutes=1)
    (out,) = [s for s in cast.scenarios if s.kind is ScenarioKind.LEAVES_HOME]
    assert out.until is None and out.at.date() == (START - timedelta(days=1)).date()
    assert cast.sleepers == ["home003", "home004", "home006"]  # chosen once routines are learned


def test_a_small_town_plays_what_it_can() -> None:
    cast = _cast(4)  # two homes a dong: no one out, no site outage
    assert [e.kind for e in cast.expected] == ["inactivity", "gateway_offline"]
    assert cast.sleepers == ["home003", "home004"]
