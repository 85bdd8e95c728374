"""Score a running silence against the home's learned routine: the `score` verb.

A scorer turns (baseline, silence) into the moments at which each finding is reached; the
offline replay and the live sweep both ask it. Levels are multiples of what the home usually
does (data: `RoutinePolicy`), each capped by the fixed ceiling (default 24 h critical) that no
routine can exceed. While a home is in its grace period the fixed rule decides, and says so.
An outing (the door closed behind the resident, nothing inside since) is judged by "not back"
only, never before `not_back_min_h` nor before `not_back_factor` times the longest outing
seen, and by `not_back_max_h` at the latest (the last resort); the morning check (`not_up`)
is judged on events, once a night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo

from core.domain import Severity
from detectors.health import ROOM_EN, ROOM_KO
from detectors.inactivity import InactivityPolicy
from detectors.learning import HOUR, SLOT_S, Baseline

NOT_BACK_STEP_H = 12.0  # not back: from watch to warning
INACTIVITY = "inactivity"
NOT_UP = "not_up"
NOT_BACK = "not_back"
BATHROOM = "bathroom_long_stay"


@dataclass(frozen=True, slots=True)
class RoutinePolicy:
    """Floors and ceilings around the learned levels (the levels themselves are learned)."""

    min_h: float = 1.0
    not_up_margin_h: float = 0.5  # not up: this long past the latest first activity seen
    wake_range: tuple[float, float] = (5.0, 13.0)  # a learned wake outside it is no morning
    not_back_min_h: float = 12.0  # out and not back: never before this ...
    not_back_factor: float = 1.5  # ... nor before this many times the longest outing seen ...
    not_back_max_h: float = 48.0  # ... and by this at the latest, whatever the outings

    def not_back_hours(self, longest_h: float) -> float:
        """Hours out before "not back" (watch); warning comes NOT_BACK_STEP_H later."""
        hours = self.not_back_min_h
        if not math.isnan(longest_h):
            hours = max(hours, self.not_back_factor * longest_h)
        return min(hours, self.not_back_max_h)

    fixed: InactivityPolicy = field(default_factory=InactivityPolicy)

    def levels(self, watch_h: float, step_h: float) -> tuple[float, float, float]:
        """Hours of silence for watch, warning, critical; none beyond the fixed ceiling."""
        ceiling = self.fixed.critical_hours
        watch = min(ceiling, max(self.min_h, watch_h))
        warning = min(ceiling, max(watch, watch_h + step_h))
        return watch, warning, min(ceiling, max(warning, watch_h + 2 * step_h))


@dataclass(frozen=True, slots=True)
class Crossing:
    """A finding a silence reaches at `at` (epoch s), with its reason."""

    at: float
    kind: str
    severity: Severity
    reason_ko: str
    reason_en: str
    rule: str
    usual_h: float = math.nan  # learned inactivity: the slot's usual silence, for the reason


def learned_reason(usual_h: float, silence_s: float) -> tuple[str, str]:
    """The reason of a learned inactivity level, Korean and English, for a silence so long."""
    ko = (
        f"평소 이 시간에는 {_hours(usual_h * HOUR)} 안에 움직임이 있는데 "
        f"{_hours(silence_s)}째 움직임이 없습니다"
    )
    en = (
        f"At this time of day there is usually activity within {_hours_en(usual_h * HOUR)}; "
        f"none for {_hours_en(silence_s)}"
    )
    return ko, en


def coverage_note(sees: str) -> tuple[str, str]:
    """What a home's sensors cannot see (detectors.learning.coverage), said after an
    inactivity finding's reason, Korean and English; ("", "") when there is nothing to say.
    The check-in call the finding places settles what the sensors cannot."""
    if sees == "plugs":
        return (
            "전력 플러그만 있는 가구라 전기를 쓰지 않는 동안(수면·외출 등)은 알 수 없습니다. "
            "안부전화로 먼저 확인합니다",
            "Power plugs only: time without electricity use (sleep, going out) cannot be seen, "
            "so a check-in call comes first",
        )
    if sees == "no_motion":
        return (
            "동작 센서가 없어 문·수납장·가전을 쓸 때만 알 수 있습니다. 안부전화로 먼저 확인합니다",
            "No motion sensor: only doors, cupboards and appliances in use are seen, so a "
            "check-in call comes first",
        )
    if sees.startswith("one_room:"):
        room = sees.split(":", 1)[1]
        if room in ROOM_KO and room != "other":
            where_ko, where_en = f"{ROOM_KO[room]}에만", f"the {ROOM_EN[room]} only"
        else:
            where_ko, where_en = "한 곳에만", "one place only"
        return (
            f"동작 센서가 {where_ko} 있어 대상자가 다른 곳에 있는 동안은 알 수 없습니다. "
            "안부전화로 먼저 확인합니다",
            f"Motion is sensed in {where_en}: time elsewhere cannot be seen, so a check-in "
            "call comes first",
        )
    return "", ""


# what a home without motion sensors can say it has not had, in an inactivity reason
_NO_MOVEMENT = {"plugs": "전기 사용이", "no_motion": "활동 신호가"}


def with_coverage(reason_ko: str, reason_en: str, sees: str) -> tuple[str, str]:
    """An inactivity reason followed by what the home's sensors cannot see, if anything; a
    home without motion sensors says what it had none of instead of "움직임" (movement)."""
    ko, en = coverage_note(sees)
    if not ko:
        return reason_ko, reason_en
    reason_ko = reason_ko.replace("움직임이", _NO_MOVEMENT.get(sees, "움직임이"))
    return f"{reason_ko}. {ko}", f"{reason_en}. {en}"


def restate(c: Crossing, start: float, at: float) -> Crossing:
    """A level found only at `at`, after the moment it was reached (a routine learned that
    night is stricter than the last): its reason says the real silence, not the level's."""
    if c.kind not in (INACTIVITY, NOT_BACK):
        return replace(c, at=at)
    level, real = c.at - start, at - start  # every such reason leads with its hours
    ko = c.reason_ko.replace(f"{_hours(level)}째", f"{_hours(real)}째", 1)
    en = c.reason_en.replace(f"for {_hours_en(level)}", f"for {_hours_en(real)}", 1)
    return replace(c, at=at, reason_ko=ko, reason_en=en)


def _hours(seconds: float) -> str:
    seconds = round(seconds, 3)  # a level's start + h x 3600 - start is h x 3600 again
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}분"
    tenths = int(seconds // 360)
    return f"{tenths // 10}시간" if tenths % 10 == 0 else f"{tenths / 10:.1f}시간"


def _hours_en(seconds: float) -> str:
    seconds = round(seconds, 3)
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    tenths = int(seconds // 360)
    return f"{tenths // 10} h" if tenths % 10 == 0 else f"{tenths / 10:.1f} h"


def _slot(t: float, tz: tzinfo) -> int:
    d = datetime.fromtimestamp(t, tz)
    return (d.hour * 3600 + d.minute * 60) // int(SLOT_S)


def _next_local(t: float, tz: tzinfo, seconds_of_day: float) -> float:
    """The first moment at or after `t` whose local time of day is `seconds_of_day`."""
    d = datetime.fromtimestamp(t, tz)
    midnight = d.replace(hour=0, minute=0, second=0, microsecond=0)
    moment = midnight + timedelta(seconds=seconds_of_day)
    if moment.timestamp() < t:
        moment += timedelta(days=1)
    return moment.timestamp()


def crossings(
    baseline: Baseline | None,
    start: float,
    out: bool,
    room_is_bathroom: bool,
    tz: tzinfo,
    policy: RoutinePolicy,
) -> list[Crossing]:
    """Every finding the silence that began at `start` reaches if it goes on, by time; an
    inactivity finding's reason ends with what the home's sensors cannot see (`with_coverage`)."""
    if baseline is None or baseline.grace:
        return _covered(_fixed(baseline, start, policy), baseline)
    if out:
        return not_back(baseline, start, policy)
    slot = _slot(start, tz)
    watch = baseline.watch_h[slot] if baseline.watch_h else float("nan")
    usual = baseline.usual_h[slot] if baseline.usual_h else float("nan")
    if math.isnan(watch):
        return _covered(_fixed(baseline, start, policy), baseline)
    found: list[Crossing] = []
    for severity, hours in zip(Severity, policy.levels(watch, baseline.step_h[slot]), strict=True):
        s = hours * HOUR
        ko, en = learned_reason(usual, s)
        found.append(Crossing(start + s, INACTIVITY, severity, ko, en, "learned", usual))
    if room_is_bathroom:
        bath = bathroom_crossing(baseline, start, found[0].at, policy)
        if bath is not None:
            found.append(bath)
    found.sort(key=lambda c: c.at)
    return _covered(found, baseline)


def _covered(found: list[Crossing], baseline: Baseline | None) -> list[Crossing]:
    """The inactivity crossings' reasons followed by what the sensors cannot see."""
    sees = baseline.sees if baseline is not None else ""
    if not sees:
        return found
    out = []
    for c in found:
        if c.kind == INACTIVITY:
            ko, en = with_coverage(c.reason_ko, c.reason_en, sees)
            c = replace(c, reason_ko=ko, reason_en=en)
        out.append(c)
    return out


def bathroom_crossing(
    baseline: Baseline, start: float, first_level_at: float, policy: RoutinePolicy
) -> Crossing | None:
    """A silence that began in the bathroom, where the home's bathroom silences are short:
    its own finding at the learned bathroom watch, when that comes before the silence's first
    inactivity level (`first_level_at`, epoch s). The offline replay and the live sweep ask this.
    """
    if math.isnan(baseline.bathroom_h[0]):
        return None
    s = max(policy.min_h, baseline.bathroom_h[0]) * HOUR
    if start + s >= first_level_at:
        return None
    ko = f"욕실에서 {_hours(s)}째 움직임이 없습니다 (평소보다 깁니다)"
    en = f"No activity for {_hours_en(s)} since the bathroom (longer than usual)"
    return Crossing(start + s, BATHROOM, Severity.WATCH, ko, en, "learned")


def _fixed(baseline: Baseline | None, start: float, policy: RoutinePolicy) -> list[Crossing]:
    days = 0.0 if baseline is None else baseline.history_days
    found = []
    for severity, seconds in policy.fixed.thresholds:
        h = _hours(seconds)
        ko = f"{h}째 움직임이 없습니다 (생활 패턴 학습 중: 기록 {days:.0f}일, 고정 기준 적용)"
        en = (
            f"No activity for {_hours_en(seconds)} (routine still being learned: "
            f"{days:.0f} days of history, fixed rule applies)"
        )
        found.append(Crossing(start + seconds, INACTIVITY, severity, ko, en, "fixed"))
    return found


def not_back(baseline: Baseline | None, start: float, policy: RoutinePolicy) -> list[Crossing]:
    """An outing that began at `start` (the door closed behind the resident): its findings.

    Never before `not_back_min_h`, nor before `not_back_factor` times the longest outing the
    home has made; the offline replay and the live sweep both ask this. A home without a
    learned routine has only the floor, and its reason says so.
    """
    if baseline is None or baseline.grace:
        return _not_back_fixed(baseline, start, policy)
    longest = baseline.out_h[0]
    hours = policy.not_back_hours(longest)
    found = []
    for severity, h in _not_back_levels(hours):
        ko = f"외출 후 {_hours(h * HOUR)}째 돌아오지 않았습니다"
        en = f"Out for {_hours_en(h * HOUR)} and not back"
        if not math.isnan(longest) and h > longest:  # at 48 h a weekender may not be late yet
            ko += f" (평소 가장 긴 외출 {_hours(longest * HOUR)})"
            en += f" (longest usual outing {_hours_en(longest * HOUR)})"
        found.append(Crossing(start + h * HOUR, NOT_BACK, severity, ko, en, "learned"))
    return found


def _not_back_levels(hours: float) -> tuple[tuple[Severity, float], ...]:
    return (Severity.WATCH, hours), (Severity.WARNING, hours + NOT_BACK_STEP_H)


def _not_back_fixed(
    baseline: Baseline | None, start: float, policy: RoutinePolicy
) -> list[Crossing]:
    days = 0.0 if baseline is None else baseline.history_days
    found = []
    for severity, h in _not_back_levels(policy.not_back_hours(math.nan)):
        ko = (
            f"외출 후 {_hours(h * HOUR)}째 돌아오지 않았습니다 "
            f"(생활 패턴 학습 중: 기록 {days:.0f}일, 고정 기준 적용)"
        )
        en = (
            f"Out for {_hours_en(h * HOUR)} and not back (routine still being learned: "
            f"{days:.0f} days of history, fixed rule applies)"
        )
        found.append(Crossing(start + h * HOUR, NOT_BACK, severity, ko, en, "fixed"))
    return found


def not_up(
    baseline: Baseline | None, night_from: float, tz: tzinfo, policy: RoutinePolicy
) -> tuple[float, Crossing] | None:
    """The morning check after `night_from`: (the night's anchor, the finding), or None.

    The anchor is the home's stillest half hour of the night; the resident is "not up" when
    nothing happened between the next anchor and the latest first activity ever seen after
    it, plus a margin. Judged by events only: a bed mat still pressed is no sign of being up.
    """
    if baseline is None or baseline.grace or math.isnan(baseline.wake_h):
        return None
    if not policy.wake_range[0] <= baseline.wake_h <= policy.wake_range[1]:
        return None
    anchor = _next_local(night_from, tz, baseline.anchor_slot * SLOT_S)
    wake = (baseline.wake_h * HOUR - baseline.anchor_slot * SLOT_S) % 86400.0
    at = anchor + wake + policy.not_up_margin_h * HOUR
    local = datetime.fromtimestamp(at - policy.not_up_margin_h * HOUR, tz)
    ko = f"평소 {local:%H:%M}까지는 일어나시는데 아직 움직임이 없습니다"
    en = f"Usually up by {local:%H:%M}; no activity since the night"
    return anchor, Crossing(at, NOT_UP, Severity.WATCH, ko, en, "learned")
