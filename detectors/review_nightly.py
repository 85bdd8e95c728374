"""The daily care-review jobs against the database: routine change and night wandering.

Both read each active home's readings from `anbu.readings` strictly before the moment they
judge, learn from the home's own past (detectors.routine_change, detectors.night) and store
one watch finding per day, week or night at most (re-running the job raises nothing twice).
Run `routine_change_review` once a day after midnight and `night_review` once a morning after
the night's end (both take `now`; they never read the clock).
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

import psycopg

from core.domain import Finding, Severity
from detectors import night as nightmod
from detectors import routine_change as rc
from detectors.nightly import home_rows
from detectors.sweep import NewFinding

_HOMES = "SELECT id, home FROM anbu.resident WHERE status <> 'ended' ORDER BY id"
_SEEN = """
SELECT 1 FROM anbu.findings
 WHERE resident_id = %s AND kind = %s AND details->>'key' = %s LIMIT 1
"""
_INSERT = """
INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko, reason_en, details)
VALUES (%s, %s, 'watch', %s, %s, %s, %s)
ON CONFLICT (resident_id, kind, severity, raised_at) DO NOTHING
RETURNING id
"""


def _events(
    conn: psycopg.Connection[Any], resident_id: int, lo: datetime, hi: datetime
) -> list[rc.Event]:
    return home_rows(conn, resident_id, lo, hi)


def _store(
    conn: psycopg.Connection[Any], rid: int, home: str, kind: str, now: datetime,
    ko: str, en: str, details: dict[str, Any],
) -> NewFinding | None:  # fmt: skip
    if conn.execute(_SEEN, (rid, kind, details["key"])).fetchone() is not None:
        return None
    row = conn.execute(_INSERT, (rid, kind, now, ko, en, json.dumps(details))).fetchone()
    if row is None:
        return None
    return NewFinding(int(row[0]), rid, Finding(home, kind, Severity.WATCH, now, ko, en, details))


def routine_change_review(
    conn: psycopg.Connection[Any], now: datetime, policy: rc.RoutinePolicy, tz: tzinfo
) -> list[NewFinding]:
    """Judge each home's yesterday (and last 7 days) against the days before them."""
    today = now.astimezone(tz).date()
    midnight = datetime.combine(today, time(), tz)
    hi = min(midnight, now)
    lo = midnight - timedelta(days=policy.window_days + 2)
    new: list[NewFinding] = []
    for rid, home in conn.execute(_HOMES).fetchall():
        events = _events(conn, int(rid), lo, hi)
        if not events:
            continue
        first_day = datetime.fromtimestamp(events[0][0], tz).date() + timedelta(days=1)
        start = max(first_day, today - timedelta(days=policy.window_days + 1))
        days = rc.daily_summaries(events, tz, start, today - timedelta(days=1))
        found = rc.judge(days, policy)
        if found is not None:
            ko, en, details = found
            stored = _store(conn, int(rid), str(home), rc.KIND, now, ko, en, details)
            if stored is not None:
                new.append(stored)
    return new


def night_review(
    conn: psycopg.Connection[Any], now: datetime, policy: nightmod.NightPolicy, tz: tzinfo
) -> list[NewFinding]:
    """Judge last night (ending at or before `now`) against each home's learned stillness."""
    evening, lo = policy.night_to_judge(now, tz)
    new: list[NewFinding] = []
    for rid, home in conn.execute(_HOMES).fetchall():
        events = _events(conn, int(rid), lo, now)
        profile = nightmod.learn_stillness(events, tz, evening, policy)
        for ep in nightmod.night_activity(events, profile, tz, policy):
            if ep.night != evening.date():
                continue
            details = {"key": f"night:{ep.night.isoformat()}", "night": ep.night.isoformat(),
                       "minutes": ep.minutes, "hours": list(ep.hours),
                       "at": datetime.fromtimestamp(ep.at, tz).isoformat(),
                       "history_days": profile.days}  # fmt: skip
            stored = _store(
                conn, int(rid), str(home), nightmod.KIND, now, ep.reason_ko, ep.reason_en, details
            )
            if stored is not None:
                new.append(stored)
    return new
