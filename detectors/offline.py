"""`anbu detect`: the inactivity scorer over a recorded events CSV, on a virtual clock.

Findings are computed analytically, not by ticking: a silence that starts at `l` reaches a
threshold `h` at `l + h` if no activity came before then (and before `--until`). Every
candidate moment is then scored by the same vectorised scorer the live sweep uses.

What counts as activity is ingest's rule (ingest/store.py, restated here because detectors may
not import ingest): motion or contact `1`; a door or appliance value that differs from the
sensor's previous one; a plug reading 10 W or more away from the sensor's previous reading. A
sensor's first reading counts (a change from unknown).

Open intervals: a `1` without its `0` yet (motion still seen, a bed mat pressed, a door left
open, an appliance on) keeps the home active, as the data README asks ("silence is time with no
open interval"), but only for `InactivityPolicy.open_hold_hours` after it opened. A sensor stuck
on for days (a door left open, a mat under a fallen resident, a PIR that never clears) therefore
cannot hide a silence longer than that hold; the silence clock starts when the hold ends. The
`0` closing an interval within the hold is the last moment the home was active.

Strictly causal: a finding at `t` depends only on rows with `ts <= t`; rows after `--until`
are ignored. The clock runs to `--until` (default: the file's last row) for every home.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np

from anbu.domain import Severity
from detectors.inactivity import (
    KIND,
    NO_SEVERITY,
    InactivityPolicy,
    score_inactivity,
    severity_levels,
)

POWER_STEP_W = 10.0  # a plug reading that moves this much is a person's doing
INTERVAL_KINDS = frozenset({"door", "motion", "contact", "appliance"})
COLUMNS = ("home", "kind", "severity", "raised_at", "reason")


@dataclass(slots=True)
class HomeEvents:
    """One home's rows in file order: (epoch seconds, sensor, kind, value)."""

    tz: tzinfo
    rows: list[tuple[float, str, str, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OfflineFinding:
    """One row of the alerts CSV."""

    home: str
    severity_label: str
    raised_at: datetime
    reason: str


def parse_ts(text: str) -> datetime:
    """An ISO 8601 time that must carry its offset."""
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return ts


def load_events(path: Path) -> dict[str, HomeEvents]:
    """The events CSV grouped by home, each home's rows stably sorted by time."""
    homes: dict[str, HomeEvents] = {}
    seen_ts: dict[str, tuple[float, tzinfo]] = {}  # virtual homes repeat the same timestamps
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text = row["ts"]
            parsed = seen_ts.get(text)
            if parsed is None:
                ts = parse_ts(text)
                tz = ts.tzinfo
                assert tz is not None
                parsed = seen_ts[text] = (ts.timestamp(), tz)
            home = homes.get(row["home"])
            if home is None:
                home = homes[row["home"]] = HomeEvents(parsed[1])
            home.rows.append((parsed[0], row["sensor"], row["kind"], float(row["value"])))
    for home in homes.values():
        home.rows.sort(key=lambda r: r[0])
    return homes


def activity_spans(
    rows: Iterable[tuple[float, str, str, float]], hold_s: float
) -> list[tuple[float, float]]:
    """Spans (start, end) during which the home was active; a point activity has start == end."""
    spans: list[tuple[float, float]] = []
    opened: dict[str, float] = {}  # sensor -> when its interval opened
    previous: dict[str, float] = {}  # sensor -> its last value
    for t, sensor, kind, value in rows:
        prev = previous.get(sensor)
        previous[sensor] = value
        if kind == "power":
            if prev is None or abs(value - prev) >= POWER_STEP_W:
                spans.append((t, t))
            continue
        if kind not in INTERVAL_KINDS:
            continue
        on = value >= 1
        if on if kind in ("motion", "contact") else (prev is None or value != prev):
            spans.append((t, t))
        if on:
            opened.setdefault(sensor, t)
        elif sensor in opened:
            start = opened.pop(sensor)
            spans.append((start, min(t, start + hold_s)))
    spans.extend((start, start + hold_s) for start in opened.values())
    return spans


def silences(spans: list[tuple[float, float]], until: float) -> list[tuple[float, float, bool]]:
    """(start, end, is_last) of each gap between activity; the last one runs to `until`."""
    out: list[tuple[float, float, bool]] = []
    current: float | None = None
    for start, end in sorted(spans):
        if start > until:
            break
        if current is not None and start > current:
            out.append((current, start, False))
        current = end if current is None else max(current, end)
    if current is not None and current < until:
        out.append((current, until, True))
    return out


def detect_home(
    home: str, events: HomeEvents, until: float, policy: InactivityPolicy
) -> list[OfflineFinding]:
    """Every rise in severity within each silence of one home, up to `until`."""
    rows = [r for r in events.rows if r[0] <= until]
    gaps = silences(activity_spans(rows, policy.open_hold_hours * 3600.0), until)
    if not gaps:
        return []
    starts: list[float] = []
    moments: list[float] = []
    for start, end, is_last in gaps:
        for _, seconds in policy.thresholds:
            t = float(math.ceil(start + seconds))  # whole seconds, never before the crossing
            if t < end or (is_last and t <= end):
                starts.append(start)
                moments.append(t)
    if not moments:
        return []
    levels = severity_levels(np.array(starts), np.array(moments), policy)
    found: list[OfflineFinding] = []
    reached: dict[float, int] = {}
    for start, t, level in zip(starts, moments, levels.tolist(), strict=True):
        if level == NO_SEVERITY or level <= reached.get(start, NO_SEVERITY):
            continue
        reached[start] = level
        last = datetime.fromtimestamp(start, events.tz)
        now = datetime.fromtimestamp(t, events.tz)
        score = score_inactivity(last, now, policy)
        assert score is not None and score.severity is not None
        reason = f"{score.reason_ko} / {score.reason_en}"
        found.append(OfflineFinding(home, score.severity.label, now, reason))
    return found


def detect(
    homes: dict[str, HomeEvents], until: datetime | None, policy: InactivityPolicy
) -> list[OfflineFinding]:
    """Findings of all homes, ordered by time then home."""
    if not homes:
        return []
    end = (
        until.timestamp()
        if until is not None
        else max(r[0] for h in homes.values() for r in h.rows)
    )
    found = [f for name, h in homes.items() for f in detect_home(name, h, end, policy)]
    found.sort(key=lambda f: (f.raised_at, f.home))
    return found


def write_findings(out: Path, findings: list[OfflineFinding]) -> None:
    """The alerts CSV: home,kind,severity,raised_at,reason."""
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for x in findings:
            w.writerow((x.home, KIND, x.severity_label, x.raised_at.isoformat(), x.reason))


def run_detect(
    events: Path,
    out: Path,
    until: str | None,
    policy: InactivityPolicy | None = None,
    min_severity: Severity = Severity.WATCH,
) -> None:
    """The `anbu detect` command: read events, score on a virtual clock, write alerts.

    `min_severity` leaves lower findings out of the CSV (e.g. WARNING when a watch is shown on
    the dashboard only and opens no care alert); the default writes every finding.
    """
    if policy is None:
        from anbu.config import Settings  # read when the command runs, never at import

        policy = InactivityPolicy.from_settings(Settings())
    limit = parse_ts(until) if until else None
    found = detect(load_events(events), limit, policy)
    write_findings(out, [f for f in found if Severity.parse(f.severity_label) >= min_severity])
