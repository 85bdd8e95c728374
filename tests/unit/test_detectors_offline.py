"""`anbu detect` over small synthetic events CSVs: the detector contract checks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.domain import Severity
from detectors.evidence import build_evidence
from detectors.inactivity import InactivityPolicy
from detectors.offline import run_detect

KST = timezone(timedelta(hours=9))
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=KST)
POLICY = InactivityPolicy(open_hold_hours=12)
HEADER = "ts,home,sensor,kind,room,value\n"

Row = tuple[float, str, str, str, float | str]  # hours after T0, home, sensor, kind, value


def write_events(path: Path, rows: Sequence[Row]) -> Path:
    lines = [HEADER]
    for hours, home, sensor, kind, value in sorted(rows, key=lambda r: r[0]):
        ts = (T0 + timedelta(hours=hours)).replace(microsecond=0).isoformat()
        lines.append(f"{ts},{home},{sensor},{kind},other,{value}\n")
    path.write_text("".join(lines))
    return path


def detect(
    tmp_path: Path, rows: Sequence[Row], until_h: float | None = None, every_level: bool = True
) -> list[dict[str, str]]:
    events = write_events(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    until = None if until_h is None else (T0 + timedelta(hours=until_h)).isoformat()
    run_detect(events, out, until, POLICY, every_level=every_level)
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def when(row: dict[str, str]) -> float:
    """Hours after T0 at which a finding was raised."""
    return (datetime.fromisoformat(row["raised_at"]) - T0).total_seconds() / 3600


def motion(hours: float, home: str = "h1") -> list[Row]:
    """A PIR firing: 1, then 0 a minute later."""
    return [(hours, home, "pir", "motion", 1), (hours + 1 / 60, home, "pir", "motion", 0)]


def test_by_default_one_row_per_silence(tmp_path: Path) -> None:
    """The alert a silence would open, once; a new silence (after activity) opens another."""
    rows = motion(0) + motion(30) + motion(60)
    found = detect(tmp_path, rows, until_h=70, every_level=False)
    assert [(r["severity"], round(when(r), 2)) for r in found] == [
        ("watch", 6.02),
        ("watch", 36.02),
        ("watch", 66.02),
    ]
    assert len(detect(tmp_path, rows, until_h=70)) > len(found)


def test_each_rise_in_severity_is_one_row_at_its_threshold(tmp_path: Path) -> None:
    rows = motion(0) + motion(30)
    found = detect(tmp_path, rows)
    last = 1 / 60
    assert [(r["severity"], round(when(r) - last, 4)) for r in found] == [
        ("watch", 6),
        ("warning", 12),
        ("critical", 24),
    ]
    assert {r["kind"] for r in found} == {"inactivity"}
    assert all(r["raised_at"].endswith("+09:00") for r in found)
    assert found[0]["reason"].startswith("6시간째 움직임이 없습니다")
    assert "No activity for 6 h" in found[0]["reason"]


def test_activity_before_a_threshold_resets_the_silence(tmp_path: Path) -> None:
    rows = motion(0) + motion(7) + motion(15)
    found = detect(tmp_path, rows, until_h=15 + 13)
    assert [(r["severity"], round(when(r), 2)) for r in found] == [
        ("watch", 6.02),
        ("watch", 13.02),
        ("watch", 21.02),
        ("warning", 27.02),
    ]


def test_activity_exactly_at_the_threshold_raises_nothing(tmp_path: Path) -> None:
    rows = [(0, "h1", "door", "door", 1), (6, "h1", "door", "door", 0)]
    found = detect(tmp_path, rows, until_h=6)
    assert found == []


def test_the_clock_runs_to_until(tmp_path: Path) -> None:
    assert detect(tmp_path, motion(0), until_h=5) == []
    assert [r["severity"] for r in detect(tmp_path, motion(0), until_h=12)] == ["watch"]
    # until exactly at a threshold (+ the minute the PIR took to clear) raises it
    assert [r["severity"] for r in detect(tmp_path, motion(0), until_h=12 + 1 / 60)] == [
        "watch",
        "warning",
    ]


def test_open_interval_holds_activity_until_its_hold_ends(tmp_path: Path) -> None:
    bed = [(0, "h1", "bed", "contact", 1), (9, "h1", "bed", "contact", 0)]
    assert [round(when(r), 2) for r in detect(tmp_path, bed, until_h=20)] == [15.0]
    stuck = [(0, "h1", "bed", "contact", 1)]  # pressed for ever: the hold ends after 12 h
    found = detect(tmp_path, stuck, until_h=40)
    assert [(r["severity"], round(when(r), 2)) for r in found] == [
        ("watch", 18.0),
        ("warning", 24.0),
        ("critical", 36.0),
    ]


def test_what_counts_as_activity() -> None:
    rows = [
        (0.0, "p", "power", "kitchen", 50.0),  # a plug's first reading: nothing to compare
        (10.0, "p", "power", "kitchen", 55.0),  # 5 W: the house, not a person
        (20.0, "p", "power", "kitchen", 70.0),  # 15 W: a person
        (30.0, "a", "appliance", "kitchen", 0.0),  # first state seen counts
        (40.0, "a", "appliance", "kitchen", 0.0),  # no change
        (50.0, "d", "door", "entrance", 0.0),  # first state seen counts
        (55.0, "d", "door", "entrance", 0.0),  # no change
        (60.0, "m", "motion", "living", 0.0),  # a motion 0 is no one's doing
        (80.0, "c", "contact", "bedroom", 1.0),  # contact made, an interval opens
        (90.0, "c", "contact", "bedroom", 1.0),  # made again while open: activity
        (100.0, "c", "contact", "bedroom", 0.0),  # released: a change
        (200.0, "m", "motion", "living", 1.0),  # opens and never closes
        (200.0, "m", "motion", "living", 1.0),  # the same reading twice: once
    ]
    ev = build_evidence(reversed(rows))  # order does not matter
    assert ev.event_t.tolist() == [20.0, 30.0, 50.0, 80.0, 90.0, 100.0, 200.0]
    assert list(zip(ev.interval_start.tolist(), ev.interval_end.tolist(), strict=True)) == [
        (80.0, 100.0),
        (200.0, float("inf")),
    ]


def test_an_on_repeated_is_nobody_new() -> None:
    """A sensor that has reported its "off" re-sending "on" is no one; an events-only one (no
    "off" ever) is someone at each "on", unless three equal gaps of 4 minutes or more show a
    timer (a PIR's 60 s re-triggers while someone moves are not one)."""
    stuck = [(0.0, "m", "motion", "living", 1.0), (60.0, "m", "motion", "living", 0.0)]
    stuck += [(600.0 * k, "m", "motion", "living", 1.0) for k in range(1, 8)]
    assert build_evidence(stuck).event_t.tolist() == [0.0, 600.0]
    assert build_evidence(stuck).interval_start.tolist() == [0.0, 600.0]  # held from its "on"

    timer = [(600.0 * k, "e", "motion", "living", 1.0) for k in range(6)]
    assert build_evidence(timer).event_t.tolist() == [0.0, 600.0, 1200.0]
    moving = [(t, "e", "motion", "living", 1.0) for t in (0.0, 60.0, 120.0, 180.0, 240.0)]
    assert build_evidence(moving).event_t.tolist() == [0.0, 60.0, 120.0, 180.0, 240.0]
    irregular = [(t, "e", "motion", "living", 1.0) for t in (0.0, 600.0, 1200.0, 1750.0, 2500.0)]
    assert build_evidence(irregular).event_t.size == 5
    back = [*timer, (3300.0, "e", "motion", "living", 1.0)]  # off the timer again: someone
    assert build_evidence(back).event_t.tolist() == [0.0, 600.0, 1200.0, 3300.0]
    twice = [(t + d, "e", "motion", "living", 1.0) for t, *_ in timer for d in (0.0, 1.0)]
    assert build_evidence(twice).event_t.tolist() == [0.0, 600.0, 1200.0]  # copies hide no timer
    # a PIR that reports its "off" re-triggering while someone moves (its "off" after a
    # timeout): each "on" within 4 minutes of the one before is someone; past that, a re-report
    moves = [(0.0, "m", "motion", "living", 1.0), (60.0, "m", "motion", "living", 0.0)]
    moves += [(t, "m", "motion", "living", 1.0) for t in (600.0, 660.0, 800.0, 1100.0, 1150.0)]
    assert build_evidence(moves).event_t.tolist() == [0.0, 600.0, 660.0, 800.0, 1150.0]
    # a day after its last "off" a sensor is judged as one that sends events: by its timer
    later = stuck + [(90_000.0 + 600.0 * k, "m", "motion", "living", 1.0) for k in range(5)]
    assert build_evidence(later).event_t.tolist() == [0.0, 600.0, 90_000.0, 90_600.0, 91_200.0]


def test_a_fall_under_a_pir_that_repeats_itself_is_found(tmp_path: Path) -> None:
    """The resident's last doing at 10 h; the PIR then stuck on, re-sending 1 every 10 minutes
    for two days: the silence runs from its "on" (held 12 h, the grace period's open hold)."""
    rows = motion(0) + motion(5) + [(10.0, "h1", "pir", "motion", 1)]
    rows += [(10 + k / 6, "h1", "pir", "motion", 1) for k in range(1, 12 * 24)]
    found = detect(tmp_path, rows, until_h=60)
    assert [(r["severity"], round(when(r), 2)) for r in found] == [
        ("watch", 28.0),
        ("warning", 34.0),
        ("critical", 46.0),
    ]


def test_causal_cut_keeps_findings_up_to_the_cut(tmp_path: Path) -> None:
    rows: list[Row] = []
    for day in range(6):
        for h in (0, 3, 5, 16, 17.5):
            rows += motion(day * 24 + h)
        rows.append((day * 24 + 5.5, "h1", "bed", "contact", 1))
        if day != 2:
            rows.append((day * 24 + 14, "h1", "bed", "contact", 0))
        rows += [
            (day * 24 + 1, "h2", "plug", "power", 5),
            (day * 24 + 2, "h2", "plug", "power", 90),
        ]
    full = detect(tmp_path, rows, until_h=6 * 24)
    assert full  # the stream holds silences long enough to raise something
    for cut in (30.0, 53.5, 62.0, 100.0):
        part = detect(tmp_path, [r for r in rows if r[0] <= cut], until_h=cut)
        assert part == [r for r in full if when(r) <= cut + 1e-9], cut


def test_same_input_twice_same_output_and_duplicates_are_harmless(tmp_path: Path) -> None:
    rows = motion(0) + motion(8) + [(9, "h1", "plug", "power", 3), (9.5, "h1", "plug", "power", 30)]
    first = detect(tmp_path, rows, until_h=40)
    assert first == detect(tmp_path, rows, until_h=40)
    assert first == detect(tmp_path, rows + rows, until_h=40)


def test_empty_input_writes_only_the_header(tmp_path: Path) -> None:
    events = tmp_path / "empty.csv"
    events.write_text(HEADER)
    out = tmp_path / "out.csv"
    run_detect(events, out, None, POLICY)
    assert out.read_text().splitlines() == ["home,kind,severity,raised_at,reason"]
    run_detect(events, out, T0.isoformat(), POLICY)
    assert out.read_text().splitlines() == ["home,kind,severity,raised_at,reason"]


def test_homes_are_independent(tmp_path: Path) -> None:
    a = motion(0, "a") + motion(20, "a")
    b = motion(3, "b") + motion(5, "b")
    both = detect(tmp_path, a + b, until_h=22)
    only_a = detect(tmp_path, a, until_h=22)
    only_b = detect(tmp_path, b, until_h=22)
    assert [r for r in both if r["home"] == "a"] == only_a
    assert [r for r in both if r["home"] == "b"] == only_b
    assert [(r["home"], r["severity"], round(when(r), 2)) for r in both] == [
        ("a", "watch", 6.02),
        ("b", "watch", 11.02),
        ("a", "warning", 12.02),
        ("b", "warning", 17.02),
    ]


def test_timestamps_must_carry_an_offset(tmp_path: Path) -> None:
    events = tmp_path / "bad.csv"
    events.write_text(HEADER + "2026-11-02T08:00:00,h1,pir,motion,other,1\n")
    with pytest.raises(ValueError, match="offset"):
        run_detect(events, tmp_path / "out.csv", None, POLICY)


def test_min_severity_leaves_lower_findings_out(tmp_path: Path) -> None:
    events = write_events(tmp_path / "in.csv", motion(0))
    out = tmp_path / "out.csv"
    until = (T0 + timedelta(hours=30)).isoformat()
    run_detect(events, out, until, POLICY, min_severity=Severity.WARNING)
    with out.open(newline="") as f:
        assert [r["severity"] for r in csv.DictReader(f)] == ["warning", "critical"]
