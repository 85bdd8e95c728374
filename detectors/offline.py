"""`anbu detect`: the full detector stack over a recorded events CSV, on a virtual clock.

Each home is replayed by detectors.replay: nightly learning from its own past, the learned
routine (with the fixed rule as ceiling and as the grace-period fallback), leaving home,
not up, bathroom. The clock runs to `--until` (default: the file's last row) for every home;
rows after `--until` are ignored. Strictly causal.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

from core.domain import Severity
from core.spreadsheet import neutralise
from detectors.evidence import Row, build_evidence
from detectors.inactivity import InactivityPolicy
from detectors.learning import LearningPolicy
from detectors.replay import replay_home
from detectors.routine import RoutinePolicy

COLUMNS = ("home", "kind", "severity", "raised_at", "reason")


@dataclass(slots=True)
class HomeEvents:
    """One home's rows: (epoch seconds, sensor, kind, room, value), and its offset."""

    tz: tzinfo
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OfflineFinding:
    """One row of the alerts CSV."""

    home: str
    kind: str
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
    """The events CSV grouped by home (rows in any order; the evidence sorts them)."""
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
            room = row.get("room") or "other"
            home.rows.append((parsed[0], row["sensor"], row["kind"], room, float(row["value"])))
    return homes


def detect(
    homes: dict[str, HomeEvents],
    until: datetime | None,
    policy: RoutinePolicy,
    learning: LearningPolicy | None = None,
    every_level: bool = False,
) -> list[OfflineFinding]:
    """Findings of all homes, ordered by time then home.

    By default one finding per stretch without a person's doing (the alert it would open);
    `every_level` also writes each later rise in severity.
    """
    if not homes:
        return []
    learning = learning or LearningPolicy()
    end = (
        until.timestamp()
        if until is not None
        else max(r[0] for h in homes.values() for r in h.rows)
    )
    found: list[OfflineFinding] = []
    for name, h in homes.items():
        ev = build_evidence(r for r in h.rows if r[0] <= end)
        for f in replay_home(ev, end, h.tz, learning, policy, every_level):
            reason = f"{f.reason_ko} / {f.reason_en}"
            at = datetime.fromtimestamp(f.at, h.tz)
            found.append(OfflineFinding(name, f.kind, f.severity.label, at, reason))
    found.sort(key=lambda f: (f.raised_at, f.home, f.kind))
    return found


def write_findings(out: Path, findings: list[OfflineFinding]) -> None:
    """The alerts CSV: home,kind,severity,raised_at,reason."""
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for x in findings:
            w.writerow(
                [neutralise(c) for c in (x.home, x.kind, x.severity_label,
                                         x.raised_at.isoformat(), x.reason)]
            )  # fmt: skip


def run_detect(
    events: Path,
    out: Path,
    until: str | None,
    policy: InactivityPolicy | RoutinePolicy | None = None,
    min_severity: Severity = Severity.WATCH,
    every_level: bool = False,
) -> None:
    """The `anbu detect` command: read events, replay every home, write the alerts CSV.

    One row per stretch without a person's doing (the alert it would open), or with
    `every_level` (implied by a `min_severity` above watch) a row for each rise in severity;
    `min_severity` leaves lower findings out of the CSV.
    """
    if policy is None:
        from core.config import Settings  # read when the command runs, never at import

        policy = InactivityPolicy.from_settings(Settings())
    if isinstance(policy, InactivityPolicy):
        policy = RoutinePolicy(fixed=policy)
    limit = parse_ts(until) if until else None
    every_level = every_level or min_severity > Severity.WATCH
    found = detect(load_events(events), limit, policy, every_level=every_level)
    write_findings(out, [f for f in found if Severity.parse(f.severity_label) >= min_severity])
