"""The minute sweep: score every home's silence at once and record the findings that are new.

Reads `anbu.home_activity` (never raw readings) joined with `anbu.resident`. A finding is new
when no finding of the same resident, kind and severity was raised at or after the home's last
activity, i.e. within the current silence. Sweeps are serialised by a transaction-level
advisory lock, and the insert re-checks inside the statement, so two sweeps running at once
never raise the same finding twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from anbu.domain import Finding, Severity
from detectors.inactivity import (
    KIND,
    NO_SEVERITY,
    InactivityPolicy,
    score_inactivity,
    severity_levels,
    to_finding,
)

SWEEP_LOCK = 7_470_302  # advisory lock key: one inactivity sweep at a time
SUPPRESSING_STATUSES = ("away", "hospital")


@dataclass(frozen=True, slots=True)
class NewFinding:
    """A finding the sweep has just stored, with its row id."""

    finding_id: int
    resident_id: int
    finding: Finding


_HOMES = """
SELECT r.id, r.home, r.status, r.status_until, a.last_activity_at
  FROM anbu.home_activity a
  JOIN anbu.resident r ON r.id = a.resident_id
 WHERE r.status <> 'ended'
"""

_INSERT = """
INSERT INTO anbu.findings
       (resident_id, kind, severity, raised_at, reason_ko, reason_en, details)
SELECT n.resident_id, %(kind)s, n.severity, %(now)s, n.reason_ko, n.reason_en, n.details
  FROM unnest(%(resident_ids)s::bigint[], %(severities)s::text[], %(since)s::timestamptz[],
              %(reasons_ko)s::text[], %(reasons_en)s::text[], %(details)s::jsonb[])
       AS n(resident_id, severity, since, reason_ko, reason_en, details)
 WHERE NOT EXISTS (
       SELECT 1 FROM anbu.findings f
        WHERE f.resident_id = n.resident_id AND f.kind = %(kind)s
          AND f.severity = n.severity AND f.raised_at >= n.since)
ON CONFLICT (resident_id, kind, severity, raised_at) DO NOTHING
RETURNING id, resident_id, severity
"""


def silence_start(
    last_activity: datetime, status: str, status_until: datetime | None, now: datetime
) -> datetime | None:
    """When the silence that counts began; None while away/hospital suppresses inactivity.

    A status without an end date does not suppress (nothing may silence the sweep forever).
    Once an away or hospital stay has ended, the silence is counted from its end, not from the
    last activity before the resident left.
    """
    if status in SUPPRESSING_STATUSES and status_until is not None:
        if status_until > now:
            return None
        return max(last_activity, status_until)
    return last_activity


def sweep(
    conn: psycopg.Connection[Any], now: datetime, policy: InactivityPolicy
) -> list[NewFinding]:
    """Score all homes at `now`; store and return only the findings new to their silence.

    Runs inside the caller's transaction (commit is the caller's, e.g. `db.connection()`).
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
    ids: list[int] = []
    homes: list[str] = []
    since: list[datetime] = []
    for resident_id, home, status, status_until, last_activity in conn.execute(_HOMES):
        start = silence_start(last_activity, status, status_until, now)
        if start is not None:
            ids.append(int(resident_id))
            homes.append(str(home))
            since.append(start)
    if not ids:
        return []
    levels = severity_levels(np.array([s.timestamp() for s in since]), now.timestamp(), policy)
    raised = np.flatnonzero(levels != NO_SEVERITY).tolist()
    if not raised:
        return []
    findings: dict[int, Finding] = {}
    for i in raised:
        score = score_inactivity(since[i], now, policy)
        assert score is not None and score.severity == Severity(int(levels[i]))
        findings[ids[i]] = to_finding(homes[i], score)
    params = {
        "kind": KIND,
        "now": now,
        "resident_ids": [ids[i] for i in raised],
        "severities": [findings[ids[i]].severity.label for i in raised],
        "since": [since[i] for i in raised],
        "reasons_ko": [findings[ids[i]].reason_ko for i in raised],
        "reasons_en": [findings[ids[i]].reason_en for i in raised],
        "details": [json.dumps(findings[ids[i]].details) for i in raised],
    }
    new = [
        NewFinding(int(finding_id), int(resident_id), findings[int(resident_id)])
        for finding_id, resident_id, _ in conn.execute(_INSERT, params)
    ]
    new.sort(key=lambda n: n.finding_id)
    return new
