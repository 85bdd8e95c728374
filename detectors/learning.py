"""Learn one home's routine from its own past: the `learn` verb (scoring is detectors.routine).

From the readings before `at` only (never the future), within a rolling window:
- how long each binary sensor usually stays on (its hold: a mat, a door left open);
- which plugs switch by themselves (a fridge cycles day and night alike; a kettle does not);
- per 30-minute slot of the day, the longest silence at home that began near it (how long
  the home usually stays quiet when a silence starts then: sleep is not silence);
- after a silence in the bathroom, the same; outings (how long the resident is usually out);
- the stillest hour of the night and how late the resident is usually up after it.
A home with fewer than `grace_days` of history gets a baseline that says so (`grace`), and
the scorer falls back to the fixed rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.evidence import BATHROOM, POWER, Evidence, before
from detectors.silences import find_silences

HOUR = 3600.0
DAY = 86400.0
SLOTS = 48  # 30-minute slots of a local day
SLOT_S = DAY / SLOTS
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LearningPolicy:
    """How much history is enough and how the routine is summarised; data, not code."""

    grace_days: float = 7.0
    window_days: float = 28.0
    min_hold_s: float = 600.0
    max_hold_s: float = 12 * HOUR
    default_hold_s: float = 3600.0
    hold_quantile: float = 0.95
    hold_factor: float = 1.5
    slot_window: int = 2  # slots each side pooled for a slot's silences (±1 h)
    min_samples: int = 8  # widen the pool until it holds this many silences
    watch_per_month: float = 0.2  # how often a healthy home may reach watch, per month
    level_ratio: float = 10.0  # each higher level is this many times rarer
    tail_share: float = 0.1  # the top share of silences the tail is fitted to
    automatic_night_share: float = 0.5  # of the share a uniform switcher would have at night
    automatic_per_day: float = 4.0


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

    def hold_array(self, ev: Evidence) -> F64:
        """Hold per sensor of `ev` (sensors unseen at learning get the default)."""
        known = dict(zip(self.sensors, self.hold_s, strict=True))
        return np.array([known.get(s, 3600.0) for s in ev.sensors], dtype=np.float64)

    def automatic_array(self, ev: Evidence) -> npt.NDArray[np.bool_]:
        known = dict(zip(self.sensors, self.automatic, strict=True))
        return np.array([known.get(s, False) for s in ev.sensors], dtype=np.bool_)

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and np.isnan(v) else v)
                for k, v in asdict(self).items()}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        fields = {k: (float("nan") if v is None else v) for k, v in data.items()}
        for k in ("sensors", "hold_s", "automatic", "watch_h", "step_h", "usual_h"):
            fields[k] = tuple(fields.get(k, ()))
        for k in ("bathroom_h", "out_h"):
            fields[k] = tuple(float("nan") if v is None else v for v in fields[k])
        fields["slot_activity"] = tuple(fields.get("slot_activity", ()))
        return cls(**fields)


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
            hold[s] = np.quantile(d, policy.hold_quantile) * policy.hold_factor
    return np.clip(hold, policy.min_hold_s, policy.max_hold_s)


def _automatic(ev: Evidence, days: float, tz: tzinfo, policy: LearningPolicy) -> F64:
    auto = np.zeros(len(ev.sensors), dtype=np.bool_)
    for s in np.flatnonzero(ev.sensor_kind == POWER).tolist():
        t = ev.event_t[ev.event_sensor == s]
        if t.size < policy.automatic_per_day * days:
            continue
        hour = fixed_offset_seconds(t, tz) / HOUR
        night = np.mean((hour >= 1) & (hour < 5))
        auto[s] = night >= policy.automatic_night_share * 4 / 24
    return auto


def tail_threshold(values: F64, p: float, share: float) -> tuple[float, float]:
    """(value exceeded with probability `p`, its growth per tenfold rarer) from a sample.

    The empirical quantile where the sample says enough; beyond it an exponential tail
    fitted to the top `share` (mean excess over the tail's lowest value), so that a handful of
    weeks of history can still speak of once-a-month events without quoting the sample's max.
    """
    n = values.size
    if n == 0:
        return float("nan"), float("nan")
    v = np.sort(values)[::-1]
    k = max(3, int(n * share))
    if k >= n:
        k = n - 1
    if k <= 0:
        return float(v[0]), float(v[0])
    u = float(v[k])
    beta = max(float(np.mean(v[:k] - u)), 1e-3)
    step = beta * float(np.log(10.0))
    if p >= k / n:
        return float(np.quantile(values, 1 - p)), step
    return u + beta * float(np.log(k / (n * p))), step


def _pool(
    starts: F64, values: F64, p: float, policy: LearningPolicy
) -> tuple[F64, F64, F64]:
    """Per slot: watch threshold, level step and 90th percentile of silences starting near it."""
    slot = (starts // SLOT_S).astype(np.int64) % SLOTS
    watch = np.full(SLOTS, np.nan)
    step = np.full(SLOTS, np.nan)
    p90 = np.full(SLOTS, np.nan)
    if values.size == 0:
        return watch, step, p90
    for s in range(SLOTS):
        dist = np.abs((slot - s + SLOTS // 2) % SLOTS - SLOTS // 2)
        for w in (policy.slot_window, 2 * policy.slot_window, 4 * policy.slot_window, SLOTS):
            v = values[dist <= w]
            if v.size >= policy.min_samples or w == SLOTS:
                break
        if v.size:
            watch[s], step[s] = tail_threshold(v, p, policy.tail_share)
            p90[s] = np.quantile(v, 0.9)
    return watch, step, p90


def learn(ev: Evidence, at: float, tz: tzinfo, policy: LearningPolicy) -> Baseline:
    """The home's baseline from its evidence strictly before `at`."""
    history = 0.0 if np.isnan(ev.first_t) else max(0.0, (at - ev.first_t) / DAY)
    if history < policy.grace_days:
        return Baseline(learned_at=at, history_days=history, grace=True)
    past = before(ev, at)
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
    home = ~sil.out[done]
    per_month = 30.0 / max(days, 1.0)
    p_home = policy.watch_per_month / max(1.0, home.sum() * per_month)
    watch, step, usual = _pool(start_local[home], dur_h[home], p_home, policy)
    room = np.where(sil.last_sensor[done] >= 0, past.sensor_room[sil.last_sensor[done]], -1)
    bath = dur_h[home & (room == BATHROOM)]
    outs = dur_h[~home]
    p_out = policy.watch_per_month / max(1.0, outs.size * per_month)
    # activity profile: share of days with a person's event in each slot
    person = ~auto[past.event_sensor] & recent_events if past.event_t.size else recent_events
    et = past.event_t[person]
    day_index = np.floor((et - lo) / DAY).astype(np.int64)
    slot = (fixed_offset_seconds(et, tz) // SLOT_S).astype(np.int64)
    active = np.zeros((int(np.ceil(days)) + 1, SLOTS), dtype=np.bool_)
    active[np.clip(day_index, 0, active.shape[0] - 1), slot] = True
    profile = active.mean(axis=0)
    smooth = np.convolve(np.tile(profile, 3), np.ones(5) / 5, mode="same")[SLOTS : 2 * SLOTS]
    anchor = int(np.argmin(smooth))
    wake = _wake(et, tz, anchor, lo)
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
        bathroom_h=tail_threshold(bath, p_home, policy.tail_share)
        if bath.size >= policy.min_samples
        else (float("nan"), float("nan")),
        out_h=tail_threshold(outs, p_out, policy.tail_share)
        if outs.size >= 3
        else (float("nan"), float("nan")),
        anchor_slot=anchor,
        wake_h=wake,
        slot_activity=tuple(float(x) for x in profile),
    )


def _wake(et: F64, tz: tzinfo, anchor: int, lo: float) -> float:
    """Latest first activity after the anchor, over nights spent at home (local hours)."""
    if et.size == 0:
        return float("nan")
    local = fixed_offset_seconds(et, tz)
    # hours after the anchor of each event; the first event per anchor-day is the wake
    after = np.mod(local - anchor * SLOT_S, DAY)
    day = np.floor((et - after - lo) / DAY).astype(np.int64)
    _, first_index = np.unique(day, return_index=True)  # events are in time order
    first = after[first_index]
    # nights spent out (a silence that began with the door and covers the anchor) say nothing
    valid = first[np.isfinite(first) & (first < 14 * HOUR)]
    if valid.size < 5:
        return float("nan")
    return float((anchor * SLOT_S + valid.max()) / HOUR)
