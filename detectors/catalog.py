"""Every detector behind one signature, run the way the live worker runs it, for the contract.

A `Detector` takes one feed's rows (`detectors.evidence.Row`, in any order, duplicates
allowed), a moment `until` (epoch s; later rows are ignored) and the home's time zone, and
returns what it would have raised by then: `(epoch s raised, kind, severity label)`, by time.
Each adapter replays the real detector code on a virtual clock, as its job calls it live
(nightly learning at 03:00 local, the reviews at their hour, the health sweep every minute),
learning only from the past; none touches the database. What rows cannot say (a gateway's
status topic and will, batteries, a sensor's own online flag, a resident's status, when a
reading arrived: the gateway clock check) is left out, and each adapter's docstring says what it covers. `SITE_WIDE` detectors take the rows
of many gateways (sensor ids `<gateway>/<sensor>`, as the database names them); the others
take one home's rows.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import numpy as np

from core.domain import Severity
from detectors import night as nightmod
from detectors import routine_change as rc
from detectors.evidence import F64, Row, build_evidence
from detectors.health import (
    BATTERY_LOW,
    DEVICE_OFFLINE,
    DEVICE_SILENT,
    GATEWAY_OFFLINE,
    UNKNOWN_STATUS,
    GatewayHealth,
    HealthIssue,
    HealthPolicy,
    HomeHealth,
    SensorHealth,
    assess_home,
    device_silent_after_s,
    gateway_down_since,
    is_heartbeat,
    learn_cadence,
    merge,
    silent_after_s,
)
from detectors.learning import LearningPolicy
from detectors.replay import learning_moments, replay_home
from detectors.routine import BATHROOM, INACTIVITY, NOT_BACK, NOT_UP, RoutinePolicy
from detectors.site import KIND as SITE_OUTAGE
from detectors.site import OfflineEvent, detect_site_outage

Found = tuple[float, str, str]  # (epoch s raised, kind, severity label)
Detector = Callable[[Sequence[Row], float, tzinfo], list[Found]]

# when the worker runs the reviews (anbu.service's schedule; detectors may not import it)
ROUTINE_REVIEW_AT = time(3, 30)
NIGHT_REVIEW_AT = time(7, 0)
SWEEP_S = 60.0  # the health sweep's interval; its ticks fall on whole minutes here
HOME_GATEWAY = "gateway"  # the gateway of a sensor id without `<gateway>/`
SITE_DONG = "site"  # a site feed is taken as one dong


def inactivity(rows: Sequence[Row], until: float, tz: tzinfo) -> list[Found]:
    """The replay stack `anbu detect` runs (detectors.replay): inactivity against the routine
    learned every night at 03:00 from the home's own past (the fixed rule in grace), not up,
    not back, a long bathroom stay; each level a finding of its own, as the live sweep records.
    """
    ev = build_evidence(r for r in rows if r[0] <= until)
    found = replay_home(ev, until, tz, LearningPolicy(), RoutinePolicy())
    return [(f.at, f.kind, f.severity.label) for f in found]


def night_activity(rows: Sequence[Row], until: float, tz: tzinfo) -> list[Found]:
    """Night wandering as `night_review` judges it every morning at 07:00: the night that ended
    is scored against the stillness learned from the days before its evening; one watch
    finding per night, raised at the review (not when the wandering happened).
    """
    policy = nightmod.NightPolicy()
    times, ordered = _by_time(rows, until)
    found: list[Found] = []
    for now in _daily(times, until, NIGHT_REVIEW_AT, tz):
        evening, lo = policy.night_to_judge(now, tz)
        events = _between(times, ordered, lo.timestamp(), now.timestamp())
        profile = nightmod.learn_stillness(events, tz, evening, policy)
        episodes = nightmod.night_activity(events, profile, tz, policy)
        if any(ep.night == evening.date() for ep in episodes):
            found.append((now.timestamp(), nightmod.KIND, Severity.WATCH.label))
    return found


def routine_change(rows: Sequence[Row], until: float, tz: tzinfo) -> list[Found]:
    """Routine change as `routine_change_review` judges it every day at 03:30: yesterday (else
    the last 7 days) against the days before, with the review's own judgement
    (IsolationForest, fixed seed); one watch finding per day or week key.
    """
    policy = rc.RoutinePolicy()
    times, ordered = _by_time(rows, until)
    seen: set[str] = set()
    found: list[Found] = []
    for now in _daily(times, until, ROUTINE_REVIEW_AT, tz):
        today = now.astimezone(tz).date()
        midnight = datetime.combine(today, time(), tz)
        hi = min(midnight, now)
        lo = midnight - timedelta(days=policy.window_days + 2)
        events = _between(times, ordered, lo.timestamp(), hi.timestamp())
        if not events:
            continue
        first_day = datetime.fromtimestamp(events[0][0], tz).date() + timedelta(days=1)
        start = max(first_day, today - timedelta(days=policy.window_days + 1))
        judged = rc.judge(rc.daily_summaries(events, tz, start, today - timedelta(days=1)), policy)
        if judged is not None and judged[2]["key"] not in seen:
            seen.add(judged[2]["key"])
            found.append((now.timestamp(), rc.KIND, Severity.WATCH.label))
    return found


def device_health(rows: Sequence[Row], until: float, tz: tzinfo) -> list[Found]:
    """The health sweep (`assess_home`, every minute) over what rows say about the devices.

    Each sensor's cadence is learned every night at 03:00 from its readings of the 14 days
    before, once they span 7 days (as `learn_cadences`); a gateway (`<gateway>/` of the sensor
    id, else one per home) was last seen at its sensors' latest reading, as ingest marks it, and
    is down after 24 h without one. Covers `device_silent`, `gateway_offline` and
    `unknown_status`; never `battery_low` or `device_offline` (no battery or online flag in
    rows), no gateway will (status topic), no site incident holding findings back, the resident
    always active. A finding is raised once per subject and outage, one per kind and sweep
    (merged), as the sweep stores them. Only the sweeps at which an issue can begin are run (a
    sensor or gateway passing a threshold, a new cadence at 03:00, and while an event-driven
    sensor is overdue, each reading that shows someone at home and each entrance-door reading's
    end of settling): the findings of a sweep every minute.
    """
    policy = HealthPolicy()
    sensors = _sensor_times(rows, until)
    if not sensors:
        return []
    names = sorted(sensors)
    gateways = _gateway_times(sensors)
    first = min(float(t[0]) for _, _, t in sensors.values())
    bounds = [first, *learning_moments(first, until, tz)]
    unlearned: dict[str, tuple[float | None, int]] = {n: (None, 0) for n in names}
    cadences = [unlearned, *(_cadences(sensors, m, policy) for m in bounds[1:])]
    ticks: set[float] = set()
    overdue: list[tuple[F64, F64]] = []  # event-driven sensors past their device threshold
    for k, lo in enumerate(bounds):  # a sensor falls silent: at a sweep, under this cadence
        hi = bounds[k + 1] if k + 1 < len(bounds) else math.inf
        for i, name in enumerate(names):
            t = sensors[name][2]
            probe = _sensor(i, name, sensors[name], None, cadences[k])
            device_wait = device_silent_after_s(probe, policy)
            for wait in {silent_after_s(probe, policy), device_wait}:
                ticks.update(_onsets(t, np.maximum(_after(t + wait), _tick(lo)), hi, until))
            if not is_heartbeat(probe.kind, policy):
                start = np.maximum(_after(t + device_wait), _tick(lo))
                end = np.minimum(np.append(t[1:], math.inf), hi)
                overdue.append((start[start < end], end[start < end]))
    ticks.update(_within(_home_moments(sensors, policy), overdue, until))
    for t in gateways.values():
        ticks.update(_onsets(t, _tick(t + policy.gateway_stale_h * 3600), math.inf, until))
    covered: dict[tuple[str, str], datetime] = {}
    found: list[Found] = []
    for tick in sorted(ticks):
        k = bisect.bisect_right(bounds, tick) - 1
        now = _utc(tick)
        home = HomeHealth(
            0,
            "home",
            "active",
            None,
            tuple(
                GatewayHealth(g, None, None, _utc(last))
                for g in sorted(gateways)
                if (last := _last(gateways[g], tick)) is not None
            ),
            tuple(
                _sensor(i, n, sensors[n], last, cadences[k])
                for i, n in enumerate(names)
                if (last := _last(sensors[n][2], tick)) is not None
            ),
        )
        issues, _ = assess_home(home, now, policy)
        fresh: dict[str, list[HealthIssue]] = defaultdict(list)
        for issue in issues:
            seen = covered.get((issue.kind, issue.subject))
            if seen is None or seen < issue.since:  # the health sweep's "covered" rule
                fresh[issue.kind].append(issue)
        for kind in sorted(fresh):
            for issue in fresh[kind]:
                covered[(kind, issue.subject)] = now
            found.append((tick, kind, merge(fresh[kind]).severity.label))
    return found


def site_outage(rows: Sequence[Row], until: float, tz: tzinfo) -> list[Found]:
    """Site incidents as the health sweep opens them (`detect_site_outage`, every minute) over
    the rows of many gateways (sensor ids `<gateway>/<sensor>`), all taken as one dong.

    A gateway went down at its last reading once 24 h have passed without one (the stale rule;
    no status topic or will in rows, so never within minutes); an incident is raised when it
    opens, ends when it no longer holds. An incident has no severity: labelled `warning`, the
    severity of the per-home findings it holds back. One home's rows are one gateway: never.
    """
    policy = HealthPolicy()
    gateways = _gateway_times(_sensor_times(rows, until))
    stale = policy.gateway_stale_h * 3600
    ticks: set[float] = set()
    for t in gateways.values():
        if (appears := float(_tick(float(t[0])))) <= until:  # the dong grows
            ticks.add(appears)
        down = _tick(t + stale)
        nxt = np.append(t[1:], math.inf)
        ticks.update(_onsets(t, down, math.inf, until))
        back = _tick(nxt[(down < nxt) & np.isfinite(nxt)])
        ticks.update(back[back <= until].tolist())
    found: list[Found] = []
    opened = False
    for tick in sorted(ticks):
        now = _utc(tick)
        events, known = [], 0
        for g in sorted(gateways):
            last = _last(gateways[g], tick)
            if last is None:
                continue
            known += 1
            since = gateway_down_since(GatewayHealth(g, None, None, _utc(last)), now, policy, False)
            if since is not None:
                events.append(OfflineEvent(g, SITE_DONG, since))
        incident = detect_site_outage(events, now, policy.site, {SITE_DONG: known})
        if incident is not None and not opened:
            found.append((tick, SITE_OUTAGE, Severity.WARNING.label))
        opened = incident is not None
    return found


DETECTORS: dict[str, Detector] = {
    "inactivity": inactivity,
    "night_activity": night_activity,
    "routine_change": routine_change,
    "device_health": device_health,
    "site_outage": site_outage,
}
KINDS: dict[str, frozenset[str]] = {
    "inactivity": frozenset({INACTIVITY, NOT_UP, NOT_BACK, BATHROOM}),
    "night_activity": frozenset({nightmod.KIND}),
    "routine_change": frozenset({rc.KIND}),
    "device_health": frozenset(
        {DEVICE_SILENT, DEVICE_OFFLINE, BATTERY_LOW, GATEWAY_OFFLINE, UNKNOWN_STATUS}
    ),
    "site_outage": frozenset({SITE_OUTAGE}),
}
SITE_WIDE = frozenset({"site_outage"})


# -- helpers ---------------------------------------------------------------------------------


def _by_time(rows: Sequence[Row], until: float) -> tuple[list[float], list[Row]]:
    """Rows up to `until` by time, as the reviews read them (`ORDER BY ts`)."""
    ordered = sorted((r for r in rows if r[0] <= until), key=lambda r: r[0])
    return [r[0] for r in ordered], ordered


def _between(times: list[float], ordered: list[Row], lo: float, hi: float) -> list[Row]:
    return ordered[bisect.bisect_left(times, lo) : bisect.bisect_left(times, hi)]


def _daily(times: list[float], until: float, at: time, tz: tzinfo) -> Iterator[datetime]:
    """Each day's review moment from the first row's day up to `until`."""
    if not times:
        return
    day: date = datetime.fromtimestamp(times[0], tz).date()
    while (now := datetime.combine(day, at, tz)).timestamp() <= until:
        yield now
        day += timedelta(days=1)


def _sensor_times(rows: Sequence[Row], until: float) -> dict[str, tuple[str, str, F64]]:
    """Per sensor: kind, room and its reading times (a reading delivered twice counts once)."""
    times: dict[str, list[float]] = defaultdict(list)
    where: dict[str, tuple[float, str, str]] = {}
    for t, sensor, kind, room, _ in rows:
        if t > until:
            continue
        times[sensor].append(t)
        if sensor not in where or (t, kind, room) < where[sensor]:
            where[sensor] = (t, kind, room)
    return {s: (where[s][1], where[s][2], np.unique(np.array(ts))) for s, ts in times.items()}


def _gateway(sensor: str) -> str:
    return sensor.split("/", 1)[0] if "/" in sensor else HOME_GATEWAY


def _gateway_times(sensors: dict[str, tuple[str, str, F64]]) -> dict[str, F64]:
    parts: dict[str, list[F64]] = defaultdict(list)
    for name, (_, _, t) in sensors.items():
        parts[_gateway(name)].append(t)
    return {g: np.unique(np.concatenate(ts)) for g, ts in parts.items()}


def _cadences(
    sensors: dict[str, tuple[str, str, F64]], at: float, policy: HealthPolicy
) -> dict[str, tuple[float | None, int]]:
    """Each sensor's (longest gap, readings) over the window before `at` (`learn_cadences`)."""
    out: dict[str, tuple[float | None, int]] = {}
    for name, (_, _, t) in sensors.items():
        w = t[(t >= at - policy.cadence_window_days * 86400.0) & (t < at)]
        out[name] = learn_cadence(w.tolist(), at, policy)
    return out


def _home_moments(sensors: dict[str, tuple[str, str, F64]], policy: HealthPolicy) -> F64:
    """The sweeps at which the home can become active without a sensor: a presence reading, or
    the end of settling after an entrance-door reading."""
    parts = [np.empty(0)]
    for kind, _, t in sensors.values():
        if kind in policy.presence_kinds:
            parts.append(_tick(t))
        if kind in policy.entrance_kinds:
            parts.append(_tick(t + policy.settle_h * 3600))
    return np.unique(np.concatenate(parts))


def _within(moments: F64, spans: list[tuple[F64, F64]], until: float) -> list[float]:
    """The moments by `until` inside any of the intervals [start, end)."""
    lo = np.concatenate([np.empty(0), *(a for a, _ in spans)])
    hi = np.concatenate([np.empty(0), *(b for _, b in spans)])
    if lo.size == 0:
        return []
    order = np.argsort(lo, kind="stable")
    lo, reach = lo[order], np.maximum.accumulate(hi[order])
    i = np.searchsorted(lo, moments, side="right") - 1
    inside = (i >= 0) & (reach[np.maximum(i, 0)] > moments) & (moments <= until)
    return [float(x) for x in moments[inside]]


def _sensor(
    i: int,
    name: str,
    sensor: tuple[str, str, F64],
    last: float | None,
    cadences: dict[str, tuple[float | None, int]],
) -> SensorHealth:
    """The sensor as the sweep reads it: last reading (sensor_state), cadence (sensor_cadence)."""
    gap, readings = cadences[name]
    at = None if last is None else _utc(last)
    return SensorHealth(
        i, _gateway(name), name, sensor[0], sensor[1], at, None, None, gap, readings
    )


def _tick(t: F64 | float) -> F64:
    """The first sweep at or after `t`."""
    return np.ceil(np.asarray(t, dtype=np.float64) / SWEEP_S) * SWEEP_S


def _after(t: F64) -> F64:
    """The first sweep strictly after `t`."""
    return np.floor(t / SWEEP_S) * SWEEP_S + SWEEP_S


def _onsets(t: F64, onset: F64, hi: float, until: float) -> list[float]:
    """The onsets (one per reading, for the gap after it) that come before the next reading,
    before `hi` and by `until`."""
    nxt = np.append(t[1:], math.inf)
    onset = np.broadcast_to(onset, t.shape)
    keep = (onset < np.minimum(nxt, hi)) & (onset <= until)
    return [float(x) for x in onset[keep]]


def _last(t: F64, at: float) -> float | None:
    i = int(np.searchsorted(t, at, side="right"))
    return float(t[i - 1]) if i else None


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
