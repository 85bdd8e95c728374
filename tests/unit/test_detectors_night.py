"""Night wandering: activity in a home's still night hours, learned from its own nights."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from detectors.night import NightPolicy, learn_stillness, night_activity
from detectors.routine_change import Event

KST = timezone(timedelta(hours=9))
NY = timezone(timedelta(hours=-5))
POLICY = NightPolicy()
START = date(2026, 10, 1)


def _nights(days: int, tz: timezone, wander_on: int | None = None) -> list[Event]:
    out: list[Event] = []
    for i in range(days):
        base = datetime.combine(START + timedelta(days=i), datetime.min.time(), tz)
        for h in (7, 9, 12, 15, 18, 21):
            t = (base + timedelta(hours=h)).timestamp()
            out += [(t, "pir", "motion", "living", 1.0), (t + 60, "pir", "motion", "living", 0.0)]
        if i % 10 == 3:  # a rare toilet visit at 02:xx
            t = (base + timedelta(hours=2, minutes=10)).timestamp()
            out += [(t, "pir_bath", "motion", "bathroom", 1.0)]
        if wander_on is not None and i == wander_on:
            for k in range(8):
                t = (base + timedelta(hours=3, minutes=5 * k)).timestamp()
                out += [
                    (t, "pir", "motion", "living", 1.0),
                    (t + 30, "pir", "motion", "living", 0.0),
                ]
    return out


def _until(day: int, tz: timezone) -> datetime:
    return datetime.combine(START + timedelta(days=day), datetime.min.time(), tz) + timedelta(
        hours=22
    )


def test_still_hours_are_learned_per_home() -> None:
    profile = learn_stillness(_nights(20, KST), KST, _until(20, KST), POLICY)
    assert not profile.grace
    assert profile.days == 19
    assert {0, 1, 2, 3, 4, 5, 22, 23} == profile.still_hours
    assert 0 < profile.rates[2] <= 0.15 and profile.rates[7] == 1.0


def test_wandering_in_still_hours_is_one_finding_per_night() -> None:
    events = _nights(25, KST, wander_on=22)
    profile = learn_stillness(events, KST, _until(20, KST), POLICY)
    found = night_activity(events, profile, KST, POLICY)
    assert [e.night for e in found] == [
        START + timedelta(days=21)
    ]  # 03:00 belongs to the evening before
    ep = found[0]
    assert ep.minutes == POLICY.min_active_minutes and ep.hours == (3,)
    assert "평소 조용한 03–04시" in ep.reason_ko
    # causal: cutting the stream just before the threshold raises nothing yet
    assert night_activity([e for e in events if e[0] < ep.at], profile, KST, POLICY) == []


def test_rare_toilet_visits_and_grace_raise_nothing() -> None:
    events = _nights(30, KST)
    profile = learn_stillness(events, KST, _until(15, KST), POLICY)
    assert night_activity(events, profile, KST, POLICY) == []
    young = learn_stillness(events, KST, _until(4, KST), POLICY)
    assert young.grace and young.still_hours == frozenset()
    assert night_activity(_nights(10, KST, wander_on=6), young, KST, POLICY) == []
    empty = learn_stillness([], KST, _until(4, KST), POLICY)
    assert empty.grace and empty.days == 0


def test_a_home_in_another_time_zone_uses_its_own_hours() -> None:
    events = _nights(25, NY, wander_on=22)
    profile = learn_stillness(events, NY, _until(20, NY), POLICY)
    assert 3 in profile.still_hours
    assert len(night_activity(events, profile, NY, POLICY)) == 1
    assert night_activity(events + events[:40], profile, NY, POLICY) == night_activity(
        events, profile, NY, POLICY
    )
