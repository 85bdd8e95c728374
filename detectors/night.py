"""Night wandering: activity at night hours when this home is normally still.

Learning (`learn_stillness`): from the home's own whole past days, the share of days with any
activity in each local hour; a night hour (22-06 by default) is *still* when activity in it is
rare (at most `still_max_rate` of days). A home with too little history has no still hours
(grace) and says so. Scoring (`night_activity`): within each night, the distinct minutes with
activity in still hours; reaching `min_active_minutes` raises one `night_activity` finding
(watch) for that night, at the moment it was reached (strictly causal). Pure, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import numpy as np

from detectors.routine_change import Event, person_times

KIND = "night_activity"


@dataclass(frozen=True, slots=True)
class NightPolicy:
    """Which hours are night, how rare is still, how much activity is wandering."""

    night_start_h: int = 22
    night_end_h: int = 6
    still_max_rate: float = 0.15
    min_days: int = 7
    window_days: int = 28
    min_active_minutes: int = 5

    def night_to_judge(self, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
        """The evening that begins the last night over by `now` (a night not yet over at
        `now` is left for the next review), and the start of the history it is judged by."""
        local = now.astimezone(tz)
        evening_day = local.date() - timedelta(days=1)
        if local.hour < self.night_end_h:  # the night is not over yet: judge the one before
            evening_day -= timedelta(days=1)
        evening = datetime.combine(evening_day, time(self.night_start_h), tz)
        return evening, evening - timedelta(days=self.window_days + 2)

    @property
    def night_hours(self) -> tuple[int, ...]:
        h, hours = self.night_start_h, []
        while h != self.night_end_h:
            hours.append(h)
            h = (h + 1) % 24
        return tuple(hours)


@dataclass(frozen=True, slots=True)
class StillnessProfile:
    """Per local hour, the share of learned days with activity; the still night hours."""

    rates: tuple[float, ...]
    still_hours: frozenset[int]
    days: int
    grace: bool
    learned_until: float  # epoch s: learned from events strictly before this


@dataclass(frozen=True, slots=True)
class NightEpisode:
    """One night's wandering: when it was raised, how much, in which still hours."""

    night: date  # the evening's date
    at: float  # epoch s of the activity that reached the threshold
    minutes: int  # active minutes in still hours by `at`
    hours: tuple[int, ...]
    reason_ko: str
    reason_en: str


def learn_stillness(
    events: Iterable[Event], tz: tzinfo, until: datetime, policy: NightPolicy
) -> StillnessProfile:
    """The stillness profile from whole local days before `until`'s day (within the window)."""
    times = person_times(e for e in events if e[0] < until.timestamp())
    last_day = until.astimezone(tz).date() - timedelta(days=1)
    active = np.zeros((policy.window_days, 24), dtype=bool)
    seen = np.zeros(policy.window_days, dtype=bool)
    for t in times:
        at = datetime.fromtimestamp(float(t), tz)
        back = (last_day - at.date()).days
        if 0 <= back < policy.window_days:
            active[back, at.hour] = True
    if times.size:  # whole days only (the first is partial); a day without activity is away
        first = datetime.fromtimestamp(float(times[0]), tz).date()
        whole = np.arange(policy.window_days) < (last_day - first).days
        seen = active.any(axis=1) & whole
    days = int(seen.sum())
    rates = active[seen].mean(axis=0) if days else np.zeros(24)
    grace = days < policy.min_days
    still = frozenset(
        h for h in policy.night_hours if not grace and rates[h] <= policy.still_max_rate
    )
    return StillnessProfile(tuple(float(r) for r in rates), still, days, grace, until.timestamp())


def night_activity(
    events: Iterable[Event], profile: StillnessProfile, tz: tzinfo, policy: NightPolicy
) -> list[NightEpisode]:
    """Nights with wandering among events at or after the profile was learned."""
    if not profile.still_hours:
        return []
    times = person_times(e for e in events if e[0] >= profile.learned_until)
    minutes: dict[date, set[int]] = {}
    hours: dict[date, set[int]] = {}
    found: dict[date, NightEpisode] = {}
    for t in times:
        at = datetime.fromtimestamp(float(t), tz)
        if at.hour not in profile.still_hours:
            continue
        night = at.date() - timedelta(days=1) if at.hour < policy.night_end_h else at.date()
        if night in found:
            continue
        minutes.setdefault(night, set()).add(int(t // 60))
        hours.setdefault(night, set()).add(at.hour)
        count = len(minutes[night])
        if count >= policy.min_active_minutes:
            found[night] = _episode(night, float(t), count, hours[night], profile)
    return [found[n] for n in sorted(found)]


def _episode(
    night: date, at: float, count: int, hours: set[int], profile: StillnessProfile
) -> NightEpisode:
    order = sorted(hours, key=lambda h: (h + 12) % 24)  # 22, 23, 0, 1 ... in night order
    span = f"{order[0]:02d}–{(order[-1] + 1) % 24:02d}시"
    usual = max(profile.rates[h] for h in order)
    ko = (f"평소 조용한 {span}에 {count}분 동안 움직임이 있었습니다 "
          f"(이 시간에 활동이 있는 날은 평소 {usual:.0%} 이하)")  # fmt: skip
    en = (
        f"Activity in {count} minutes at {order[0]:02d}-{(order[-1] + 1) % 24:02d} h, "
        f"when this home is usually still (active on {usual:.0%} of days at most)"
    )
    return NightEpisode(night, at, count, tuple(order), ko, en)
