"""Learn one home's routine from its own past: the `learn` verb (scoring is detectors.routine).

From the readings before `at` only (never the future), within a rolling window:
- how long each binary sensor usually stays on (its hold: a mat keeps the home "active" up to
  its usual longest stay; a sensor usually on for longer than any stay holds nothing);
- which plugs switch by themselves (a fridge cycles day and night alike; a kettle does not);
- per 30-minute slot of the day, the longest silence at home that began near it, times the
  home's record factor (learned by holding each day out: how far beyond the other days'
  longest its silences went; in a home that sees its resident leave, the second furthest),
  plus a margin: the watch level (sleep is not silence). Silences at home of 24 h or more are
  left out: the fixed ceiling flags them whatever the routine, and they tell of absences the
  sensors missed, not of the resident's day;
- after a silence in the bathroom, the same, where bathroom silences are short; outings (the
  longest, for "not back");
- the stillest half hour of the night and the latest first activity after it (not up).
A home with fewer than `grace_days` of history gets a baseline that says so (`grace`), and
the scorer falls back to the fixed rule; from `automatic_min_days` of data on, it already says
which plugs switch by themselves, so that a new home's fridge is no one's activity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.evidence import BATHROOM, DOOR, KIND_CODES, POWER, ROOMS, Evidence, before
from detectors.silences import Silences, find_silences

HOUR = 3600.0
DAY = 86400.0
SLOTS = 48  # 30-minute slots of a local day
SLOT_S = DAY / SLOTS
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LearningPolicy:
    """How much history is enough and how the routine is summarised; data, not code."""

    grace_days: float = 7.0
    window_days: float = 56.0  # eight weeks: a home's extremes need a long memory
    min_hold_s: float = 600.0
    max_hold_s: float = 12 * HOUR
    default_hold_s: float = 3600.0
    hold_quantile: float = 0.9  # an open interval holds presence up to its usual longest
    hold_factor: float = 1.0
    slot_window: int = 4  # slots each side pooled for a slot's silences (±2 h)
    min_samples: int = 20  # widen the pool until it holds this many silences
    extreme_factor: float = 1.2  # watch: at least this many times the longest similar silence
    max_factor: float = 3.0  # ... and at most this many (the home's record factor between)
    extreme_margin_h: float = 1.0  # ... plus this
    extreme_rank: int = 1  # the record factor: the largest held-out ratio (2: the second) ...
    # ... in a home that sees its resident leave (an entrance door that has reported): most of
    # its long silences are outings it sees, so one broken record is not yet its rule
    extreme_rank_seen: int = 2
    wake_quantile: float = 1.0  # not up: later than the latest first activity seen ...
    min_wake_days: int = 10  # mornings seen before the not-up check is trusted
    bathroom_max_h: float = 1.0  # bathroom watch only where bathroom silences stay this short
    night_end_h: float = 7.0  # the stillest half hour of the night is sought before this hour
    # a plug that steps in this share of the night's hours (01-05 h, every night) switches by
    # itself (a fridge's compressor); a person's TV, even watched late, leaves most night hours still
    automatic_night_hours: float = 0.5
    automatic_per_day: float = 4.0
    automatic_min_days: float = 3.0  # days with data before any plug is judged (grace included)
    # a silence at home this long is flagged by the fixed ceiling whatever the routine: it tells
    # of an absence the sensors missed, not of the resident's day, and is left out of the levels
    routine_max_h: float = 24.0


@dataclass(frozen=True, slots=True)
class Baseline:
    """One home's learned routine at `learned_at` (epoch s); what the baselines table stores."""

    learned_at: float
    history_days: float
    grace: bool
    sensors: tuple[str, ...] = ()
    hold_s: tuple[float, ...] = ()
    automatic: tuple[bool, ...] = ()
    watch_h: tuple[float, ...] = ()  # per start slot: silence at home that reaches watch
    step_h: tuple[float, ...] = ()  # per slot: hours from one level to the next
    usual_h: tuple[float, ...] = ()  # per slot: the silence that 90 % of them stay within
    bathroom_h: tuple[float, float] = (float("nan"), float("nan"))  # (watch, step)
    out_h: tuple[float, float] = (float("nan"), float("nan"))  # outings: (watch, step)
    anchor_slot: int = 8  # stillest slot of the night (local)
    wake_h: float = float("nan")  # latest usual first activity after the anchor, local hours
    slot_activity: tuple[float, ...] = field(default=())  # share of days active in each slot
    sees: str = ""  # what the home's sensors cannot see (`coverage`): "" when they see rooms

    def hold_array(self, ev: Evidence) -> F64:
        """Hold per sensor of `ev` (sensors unseen at learning get the default)."""
        known = dict(zip(self.sensors, self.hold_s, strict=True))
        return np.array([known.get(s, 3600.0) for s in ev.sensors], dtype=np.float64)

    def automatic_array(self, ev: Evidence) -> npt.NDArray[np.bool_]:
        known = dict(zip(self.sensors, self.automatic, strict=True))
        return np.array([known.get(s, False) for s in ev.sensors], dtype=np.bool_)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN becomes null), as stored in `anbu.baselines.model`."""
        return {k: _plain(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        fields: dict[str, Any] = {k: (float("nan") if v is None else v) for k, v in data.items()}
        for k in ("sensors", "hold_s", "automatic", "watch_h", "step_h", "usual_h"):
            fields[k] = tuple(fields.get(k, ()))
        for k in ("bathroom_h", "out_h"):
            fields[k] = tuple(float("nan") if v is None else v for v in fields[k])
        fields["slot_activity"] = tuple(fields.get("slot_activity", ()))
        return cls(**fields)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def local_seconds(t: F64, tz: tzinfo) -> F64:
    """Seconds since local midnight for epoch times (offset taken per moment)."""
    out = np.empty_like(t)
    for i, x in enumerate(t.tolist()):
        d = datetime.fromtimestamp(x, tz)
        out[i] = d.hour * 3600 + d.minute * 60 + d.second
    return out


def fixed_offset_seconds(t: F64, tz: tzinfo) -> F64:
    """Fast local seconds-of-day when the zone's offset does not change over `t`."""
    if t.size == 0:
        return t.copy()
    first = datetime.fromtimestamp(float(t[0]), tz).utcoffset()
    last = datetime.fromtimestamp(float(t[-1]), tz).utcoffset()
    if first is None or first != last:
        return local_seconds(t, tz)
    return np.mod(t + first.total_seconds(), DAY)


def _holds(ev: Evidence, policy: LearningPolicy) -> F64:
    hold = np.full(len(ev.sensors), policy.default_hold_s)
    closed = np.isfinite(ev.interval_end)
    for s in range(len(ev.sensors)):
        d = (ev.interval_end - ev.interval_start)[closed & (ev.interval_sensor == s)]
        if d.size >= 3:
            usual = np.quantile(d, policy.hold_quantile) * policy.hold_factor
            # a sensor that usually stays on longer than any stay is idle when on: no presence
            hold[s] = usual if usual <= policy.max_hold_s else policy.min_hold_s
    clipped: F64 = np.clip(hold, policy.min_hold_s, policy.max_hold_s)
    return clipped


def days_with_data(ev: Evidence, days: float, tz: tzinfo) -> float:
    """Of the last `days`, how many the home reported on: local dates with any doing of any
    sensor (a gateway that is often down leaves days without data; they say nothing)."""
    if ev.event_t.size == 0:
        return 0.0
    local = fixed_offset_seconds(ev.event_t, tz)
    dates = np.unique(np.round((ev.event_t - local) / 60.0))  # local midnights, in minutes
    return float(min(days, dates.size))


def _automatic(
    ev: Evidence, days: float, tz: tzinfo, policy: LearningPolicy
) -> npt.NDArray[np.bool_]:
    """Plugs that step in most night hours on the days the home reported: a fridge."""
    auto = np.zeros(len(ev.sensors), dtype=np.bool_)
    days = days_with_data(ev, days, tz)
    if days < policy.automatic_min_days:
        return auto
    for s in np.flatnonzero(ev.sensor_kind == POWER).tolist():
        t = ev.event_t[ev.event_sensor == s]
        if t.size < policy.automatic_per_day * days:
            continue
        local = fixed_offset_seconds(t, tz)
        hour = (local // HOUR).astype(np.int64)
        night = (hour >= 1) & (hour < 5)
        midnight = np.round((t - local)[night] / 60.0).astype(np.int64)  # local midnight, minutes
        cells = np.unique(midnight * 24 + hour[night]).size
        auto[s] = bool(cells >= policy.automatic_night_hours * 4 * days)
    return auto


def _pool(
    starts: F64, day: npt.NDArray[np.int64], values: F64, policy: LearningPolicy, rank: int = 1
) -> tuple[F64, F64, F64, float]:
    """Per slot: watch threshold, level step and 90th percentile of silences starting near it.

    Watch is the time by which a silence starting in this slot would be extreme: longer than
    every silence at home that began within the pooled slots in the window, times the home's
    own record factor. That factor is learned by holding each day out: how far beyond the
    other days' longest did this home's silences ever go (a home whose record keeps being
    broken, by absences nobody can see, gets a wider margin). `rank` 2 takes the second
    largest ratio instead of the largest.
    """
    slot = (starts // SLOT_S).astype(np.int64) % SLOTS
    watch = np.full(SLOTS, np.nan)
    step = np.full(SLOTS, np.nan)
    p90 = np.full(SLOTS, np.nan)
    if values.size == 0:
        return watch, step, p90, float("nan")
    ring = np.arange(SLOTS)
    dist = np.abs((ring[:, None] - ring[None, :] + SLOTS // 2) % SLOTS - SLOTS // 2)
    width = np.full(SLOTS, SLOTS)
    for s in range(SLOTS):
        for w in (policy.slot_window, 2 * policy.slot_window, 4 * policy.slot_window):
            if np.count_nonzero(dist[s, slot] <= w) >= policy.min_samples:
                width[s] = w
                break
    pooled = dist[slot][:, slot] <= width[slot][:, None]  # [i, j]: j is in i's pool
    others = np.where(pooled & (day[:, None] != day[None, :]), values[None, :], 0.0)
    best = others.max(axis=1)
    ratio = np.sort(values[best > 0] / best[best > 0])[::-1]
    factor = policy.extreme_factor
    if ratio.size:
        factor = float(ratio[min(rank, ratio.size) - 1])
    factor = float(np.clip(factor, policy.extreme_factor, policy.max_factor))
    for s in range(SLOTS):
        v = values[dist[s, slot] <= width[s]]
        if v.size:
            watch[s] = float(v.max()) * factor + policy.extreme_margin_h
            step[s] = max(1.0, 0.5 * watch[s])
            p90[s] = np.quantile(v, 0.9)
    return watch, step, p90, factor


def learn(ev: Evidence, at: float, tz: tzinfo, policy: LearningPolicy) -> Baseline:
    """The home's baseline from its evidence strictly before `at`."""
    history = 0.0 if np.isnan(ev.first_t) else max(0.0, (at - ev.first_t) / DAY)
    if history < min(policy.grace_days, policy.automatic_min_days):  # no plug judged yet
        return Baseline(learned_at=at, history_days=history, grace=True)
    past = before(ev, at)
    if history < policy.grace_days:  # the fixed rule decides; a fridge is still no one
        auto = _automatic(past, history, tz, policy)
        every = np.ones(past.event_t.size, dtype=np.bool_)
        return Baseline(
            at,
            history,
            True,
            ev.sensors,
            automatic=tuple(bool(x) for x in auto),
            sees=coverage(past, auto, every),
        )
    lo = at - policy.window_days * DAY
    days = min(history, policy.window_days)
    recent_events = past.event_t >= lo
    hold = _holds(past, policy)
    windowed = Evidence(
        past.sensors, past.sensor_kind, past.sensor_room, past.event_t[recent_events],
        past.event_sensor[recent_events], past.event_on[recent_events],
        past.interval_start, past.interval_end, past.interval_sensor, past.first_t, past.last_t,
    )  # fmt: skip
    auto = _automatic(windowed, days, tz, policy)
    sil = find_silences(past, hold, auto, at)
    done = (sil.end < at) & (sil.start >= lo)
    dur_h = (sil.end - sil.start)[done] / HOUR
    start_local = fixed_offset_seconds(sil.start[done], tz)
    home = ~sil.out[done] & (dur_h < policy.routine_max_h)
    day = np.floor((sil.start[done] - lo) / DAY).astype(np.int64)
    rank = policy.extreme_rank_seen if sees_leaving(past) else policy.extreme_rank
    watch, step, usual, factor = _pool(start_local[home], day[home], dur_h[home], policy, rank)
    room = np.where(sil.last_sensor[done] >= 0, past.sensor_room[sil.last_sensor[done]], -1)
    bath = dur_h[home & (room == BATHROOM)]
    outs = dur_h[sil.out[done]]
    # activity profile: share of days with a person's event in each slot
    person = ~auto[past.event_sensor] & recent_events if past.event_t.size else recent_events
    et = past.event_t[person]
    day_index = np.floor((et - lo) / DAY).astype(np.int64)
    slot = (fixed_offset_seconds(et, tz) // SLOT_S).astype(np.int64)
    active = np.zeros((int(np.ceil(days)) + 1, SLOTS), dtype=np.bool_)
    active[np.clip(day_index, 0, active.shape[0] - 1), slot] = True
    profile = active.mean(axis=0)
    smooth = np.convolve(np.tile(profile, 3), np.ones(5) / 5, mode="same")[SLOTS : 2 * SLOTS]
    night = np.arange(SLOTS) < policy.night_end_h * 2  # the anchor is sought after midnight
    anchor = int(np.argmin(np.where(night, smooth, np.inf)))
    wake = _wake(et, tz, anchor, lo, sil, policy)
    return Baseline(
        learned_at=at,
        history_days=history,
        grace=False,
        sensors=ev.sensors,
        hold_s=tuple(float(x) for x in hold),
        automatic=tuple(bool(x) for x in auto),
        watch_h=tuple(float(x) for x in watch),
        step_h=tuple(float(x) for x in step),
        usual_h=tuple(float(x) for x in usual),
        bathroom_h=(
            float(bath.max()) * factor + policy.extreme_margin_h,
            float(np.median(bath)),
        )
        if bath.size >= policy.min_samples and bath.max() <= policy.bathroom_max_h
        else (float("nan"), float("nan")),
        out_h=(float(outs.max()), float(np.median(outs)))
        if outs.size
        else (float("nan"), float("nan")),
        anchor_slot=anchor,
        wake_h=wake,
        slot_activity=tuple(float(x) for x in profile),
        sees=coverage(past, auto, recent_events),
    )


def coverage(ev: Evidence, auto: npt.NDArray[np.bool_], recent: npt.NDArray[np.bool_]) -> str:
    """What the sensors that saw the resident lately (`recent` events, plugs that switch by
    themselves left out) cannot see, as a code the finding's reason explains
    (detectors.routine.coverage_note): "plugs" (only plugs), "no_motion" (doors, cupboards,
    appliances, no motion sensor), "one_room:<room>" (motion in one room, at most a door
    besides); "" when they see more than that, or nothing yet."""
    if ev.event_sensor.size == 0:
        return ""
    seen = np.unique(ev.event_sensor[recent & ~auto[ev.event_sensor]])
    if seen.size == 0:
        return ""
    kinds = {int(k) for k in ev.sensor_kind[seen]}
    motion = seen[ev.sensor_kind[seen] == KIND_CODES["motion"]]
    rooms = {int(r) for r in ev.sensor_room[motion]}
    if kinds == {POWER}:
        return "plugs"
    if not rooms:
        return "no_motion"
    if len(rooms) == 1 and kinds <= {KIND_CODES["motion"], DOOR}:
        return f"one_room:{ROOMS[rooms.pop()]}"
    return ""


def sees_leaving(ev: Evidence) -> bool:
    """The home has an entrance door that has reported a doing: it can see its resident leave."""
    return bool(np.any(ev.sensor_kind[np.unique(ev.event_sensor)] == DOOR))


def _wake(
    et: F64, tz: tzinfo, anchor: int, lo: float, sil: Silences, policy: LearningPolicy
) -> float:
    """Local hour by which the resident has always been up: first activity after the anchor.

    Nights spent out (the anchor fell in an outing) say nothing about waking up.
    """
    if et.size == 0:
        return float("nan")
    local = fixed_offset_seconds(et, tz)
    after = np.mod(local - anchor * SLOT_S, DAY)  # hours after the anchor of each event
    moment = et - after  # the anchor moment before each event
    _, first_index = np.unique(np.round(moment / 60.0), return_index=True)
    anchors = moment[first_index]
    first = after[first_index]
    k = np.searchsorted(sil.start, anchors, side="right") - 1
    inside = (k >= 0) & (sil.end[np.maximum(k, 0)] > anchors)
    away = inside & sil.out[np.maximum(k, 0)]
    valid = first[~away & (anchors >= lo) & (first < 14 * HOUR)] / HOUR
    if valid.size < policy.min_wake_days:
        return float("nan")
    return float(anchor * SLOT_S / HOUR + np.quantile(valid, policy.wake_quantile))
