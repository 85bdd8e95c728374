"""The device-health sweep against the database: site incidents first, then each home's devices.

Reads `anbu.gateway`, `anbu.sensor_state` and `anbu.sensor_cadence` (never raw readings), only
for homes with something to look at (a gateway down, a sensor offline, quiet past the shortest
threshold or low on battery). Many gateways down at once become one row of `anbu.incidents`
and their homes' own `gateway_offline` / `unknown_status` findings are held back (the incident
records which). A finding is new when no finding of the same resident and kind already names
the same subject (sensor, gateway, home) since its outage began, as the inactivity sweep does
for silences. `learn_cadences` (nightly) learns every sensor's longest usual gap, once its
readings in the window span `min_cadence_days` (as `detectors.health.learn_cadence`). Whether a
silence is the device's fault is judged by `assess_home` from the home's other sensors, all
loaded with the home. `anbu.home_unobserved` keeps, a row a home, the homes whose resident
cannot be observed now (as `unknown_status` judges it, or every gateway down in a site
incident; not an away or hospital stay), and loses a home once it is observed again: the care
queue shows these homes, while device findings are the technician's.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import psycopg

from core.domain import Finding
from detectors.health import (
    UNKNOWN_STATUS,
    GatewayHealth,
    HealthIssue,
    HealthPolicy,
    Held,
    HomeHealth,
    SensorHealth,
    assess_home,
    gateway_down_since,
    merge,
)
from detectors.site import KIND as SITE_OUTAGE
from detectors.site import OfflineEvent, SiteIncident, detect_site_outage
from detectors.sweep import NewFinding

log = logging.getLogger(__name__)

HEALTH_LOCK = 7_470_303  # advisory lock key: one health sweep at a time

_DOWN_GATEWAYS = """
SELECT g.id, r.dong_code, g.online, g.status_changed_at, g.last_seen_at
  FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
 WHERE r.status <> 'ended' AND g.removed_at IS NULL
   AND (g.online = false OR g.last_seen_at < %(stale)s)
"""
_DONG_TOTALS = """
SELECT r.dong_code, count(*) FROM anbu.gateway g JOIN anbu.resident r ON r.id = g.resident_id
 WHERE r.status <> 'ended' AND g.removed_at IS NULL GROUP BY r.dong_code
"""
_CANDIDATES = """
SELECT g.resident_id FROM anbu.gateway g
 WHERE g.removed_at IS NULL AND (g.online = false OR g.last_seen_at < %(stale)s)
UNION
SELECT st.resident_id FROM anbu.sensor_state st
 WHERE st.online = false OR st.battery < %(battery)s OR st.last_reading_at < %(quiet)s
UNION
SELECT g.resident_id FROM anbu.gateway g JOIN anbu.gateway_clock c ON c.gateway_id = g.id
 WHERE g.removed_at IS NULL AND c.off_since IS NOT NULL AND c.learned_at >= %(clock)s
"""
_HOMES = """
SELECT r.id, r.home, r.status, r.status_until FROM anbu.resident r
 WHERE r.id = ANY(%(ids)s) AND r.status <> 'ended'
"""
_GATEWAYS = """
SELECT g.resident_id, g.id, g.online, g.status_changed_at, g.last_seen_at, c.lag_s,
       c.off_since, coalesce(c.refused, false)
  FROM anbu.gateway g
  LEFT JOIN anbu.gateway_clock c ON c.gateway_id = g.id AND g.removed_at IS NULL
                                AND c.learned_at >= coalesce(%(clock)s::timestamptz, '-infinity')
 WHERE g.resident_id = ANY(%(ids)s) ORDER BY g.id
"""
_SENSORS = """
SELECT g.resident_id, s.id, s.gateway_id, s.vendor_id, s.kind, s.room, st.last_reading_at,
       st.battery, st.online, c.max_gap_s, coalesce(c.readings, 0)
  FROM anbu.sensor s JOIN anbu.gateway g ON g.id = s.gateway_id
  LEFT JOIN anbu.sensor_state st ON st.sensor_id = s.id
  LEFT JOIN anbu.sensor_cadence c ON c.sensor_id = s.id
 WHERE g.resident_id = ANY(%(ids)s) ORDER BY s.id
"""
_COVERED = """
SELECT n.i FROM unnest(%(ids)s::bigint[], %(kinds)s::text[], %(subjects)s::text[],
                       %(since)s::timestamptz[]) WITH ORDINALITY AS n(rid, kind, subject, since, i)
 WHERE EXISTS (SELECT 1 FROM anbu.findings f
                WHERE f.resident_id = n.rid AND f.kind = n.kind AND f.raised_at >= n.since
                  AND f.details->'subjects' ? n.subject)
"""
_INSERT = """
INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko, reason_en, details)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (resident_id, kind, severity, raised_at) DO NOTHING
RETURNING id
"""
_CADENCE = """
INSERT INTO anbu.sensor_cadence (sensor_id, learned_at, readings, max_gap_s)
SELECT sensor_id, %(now)s, count(*), CASE WHEN min(ts) <= %(spans)s THEN max(gap) END
  FROM (SELECT sensor_id, ts,
               extract(epoch FROM ts - lag(ts) OVER (PARTITION BY sensor_id ORDER BY ts)) AS gap
          FROM anbu.readings WHERE ts >= %(lo)s AND ts < %(now)s) AS gaps
 GROUP BY sensor_id
ON CONFLICT (sensor_id) DO UPDATE SET learned_at = excluded.learned_at,
       readings = excluded.readings, max_gap_s = excluded.max_gap_s
"""


def learn_cadences(conn: psycopg.Connection[Any], now: datetime, policy: HealthPolicy) -> int:
    """Learn each sensor's longest gap between readings over the window before `now`.

    A sensor whose readings span less than `min_cadence_days` keeps no gap (NULL): the default
    of its kind applies until its history has seen nights, a weekend and outings.
    """
    lo = now - timedelta(days=policy.cadence_window_days)
    spans = now - timedelta(days=policy.min_cadence_days)
    return max(conn.execute(_CADENCE, {"now": now, "lo": lo, "spans": spans}).rowcount, 0)


# Each gateway's clock from a day of its readings: per hour of arrival, the smallest delay from
# a reading's time to its arrival (the hour's freshest reading), then the 10th percentile over
# the day's hours (the freshest hours: a backlog delivered late, or the quiet night hours of a
# gateway that uploads in batches, leave it alone). Readings taken up to a day before the day.
_CLOCKS = """
WITH h AS (
    SELECT s.gateway_id, date_bin('1 hour', r.received_at, %(now)s) AS hour,
           min(extract(epoch FROM r.received_at - r.ts)) AS lag
      FROM anbu.readings r JOIN anbu.sensor s ON s.id = r.sensor_id
     WHERE r.received_at >= %(lo)s AND r.received_at < %(now)s AND r.ts >= %(oldest)s
     GROUP BY 1, 2
)
SELECT gateway_id, percentile_cont(0.1) WITHIN GROUP (ORDER BY lag)
  FROM h GROUP BY gateway_id HAVING count(*) >= %(hours)s
"""
# Gateways whose readings were refused as from the future in several hours of the day (each
# hour's last refusal says why: ingest.dead_letter_limits)
_REFUSED = """
SELECT b.gateway_id FROM anbu.dead_letter_budget b JOIN anbu.gateway g ON g.id = b.gateway_id
 WHERE b.hour >= %(lo)s AND b.hour < %(now)s AND b.last_reason LIKE '%%is in the future%%'
 GROUP BY b.gateway_id HAVING count(*) >= %(refused)s
"""
_KEPT_CLOCKS = """
SELECT gateway_id, nights_off, off_since FROM anbu.gateway_clock
 WHERE gateway_id = ANY(%s::text[])
"""
_WRITE_CLOCK = """
INSERT INTO anbu.gateway_clock AS c (gateway_id, lag_s, refused, learned_at, nights_off,
                                     off_since)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (gateway_id) DO UPDATE SET lag_s = excluded.lag_s, refused = excluded.refused,
       learned_at = excluded.learned_at, nights_off = excluded.nights_off,
       off_since = excluded.off_since
"""


def learn_clocks(conn: psycopg.Connection[Any], now: datetime, policy: HealthPolicy) -> int:
    """Learn every gateway's clock from the day before `now` (migration 0084); returns how many
    are off. Off: `clock_behind_s` behind or `clock_ahead_s` ahead, or its readings refused as
    from the future, two nights in a row (`clock_nights`); no longer off once within
    `clock_clear_s` either way (a clock near a threshold does not flap). A gateway with fewer
    than `clock_min_hours` hours of readings that day keeps what it had. If most gateways seem
    off the same way, the database's clock (what arrival is timed by) is the one off: an error
    in the log, and no gateway's state changes."""
    params = {
        "now": now,
        "lo": now - timedelta(days=1),
        "oldest": now - timedelta(days=2),
        "hours": policy.clock_min_hours,
        "refused": policy.clock_refused_hours,
    }
    lags = {str(gw): float(lag) for gw, lag in conn.execute(_CLOCKS, params)}
    refused = {str(gw) for (gw,) in conn.execute(_REFUSED, params)}
    if len(lags) >= policy.clock_system_gateways:
        middle = statistics.median(lags.values())
        if middle >= policy.clock_behind_s or middle <= -policy.clock_ahead_s:
            log.error("most gateway clocks seem off: check the database's", extra={"lag_s": middle})
            return 0
    ids = sorted(lags.keys() | refused)
    kept = {str(g): (int(n), since) for g, n, since in conn.execute(_KEPT_CLOCKS, (ids,))}
    rows = []
    for gw in ids:
        lag = lags.get(gw, 0.0)
        nights, since = kept.get(gw, (0, None))
        if gw in refused or lag >= policy.clock_behind_s or lag <= -policy.clock_ahead_s:
            nights += 1
            if nights >= policy.clock_nights and since is None:
                since = now
        elif abs(lag) < policy.clock_clear_s:
            nights, since = 0, None
        rows.append((gw, lag, gw in refused, now, nights, since))
    with conn.cursor() as cur:
        cur.executemany(_WRITE_CLOCK, rows)
    return sum(1 for r in rows if r[5] is not None)


def health_sweep(
    conn: psycopg.Connection[Any], now: datetime, policy: HealthPolicy
) -> list[NewFinding]:
    """Judge device health at `now`; store and return only the findings new to their outage.

    Runs inside the caller's transaction; opens, updates or ends the site incident too.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (HEALTH_LOCK,))
    stale = now - timedelta(hours=policy.gateway_stale_h)
    incident = _site_incident(conn, now, stale, policy)
    held_gateways = frozenset(incident.gateways) if incident else frozenset()
    quiet = now - timedelta(
        hours=min(
            policy.min_silent_h, policy.safety_silent_h, *(h for _, h in policy.default_silent_h)
        )
    )
    clock = now - timedelta(days=2)  # a clock learned longer ago is stale (no readings since)
    params = {"stale": stale, "battery": policy.battery_low_pct, "quiet": quiet, "clock": clock}
    ids = sorted({int(r[0]) for r in conn.execute(_CANDIDATES, params)})
    issues: dict[tuple[int, str], list[HealthIssue]] = defaultdict(list)
    homes: dict[int, str] = {}
    held: list[tuple[int, Held]] = []
    unobserved: dict[int, tuple[HealthIssue, str]] = {}
    for home in _load_homes(conn, ids, clock):
        found, kept = assess_home(home, now, policy, held_gateways)
        homes[home.resident_id] = home.home
        held.extend((home.resident_id, h) for h in kept)
        for issue in found:
            issues[(home.resident_id, issue.kind)].append(issue)
            if issue.kind == UNKNOWN_STATUS:
                unobserved[home.resident_id] = (issue, str(issue.details["why"]))
        for h in kept:  # a site outage leaves the home unobserved; an away stay does not
            if h.issue.kind == UNKNOWN_STATUS and h.why == SITE_OUTAGE:
                unobserved[home.resident_id] = (h.issue, SITE_OUTAGE)
    if incident is not None:
        _record_held(conn, now, held)
    _keep_unobserved(conn, now, unobserved)
    return _store(conn, now, homes, issues)


def _keep_unobserved(
    conn: psycopg.Connection[Any], now: datetime, found: dict[int, tuple[HealthIssue, str]]
) -> None:
    """anbu.home_unobserved as this sweep found it: a row a home whose resident cannot be
    observed now (kept from when it was first noted), none for any other home."""
    ids = sorted(found)
    conn.execute("DELETE FROM anbu.home_unobserved WHERE resident_id <> ALL(%s::bigint[])", (ids,))
    if not ids:
        return
    rows = [
        (rid, issue.since, why, list(issue.details.get("gateways", [])),
         json.dumps(issue.details.get("sensors", [])), now, now)
        for rid, (issue, why) in sorted(found.items())
    ]  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO anbu.home_unobserved AS u (resident_id, since, why, gateways, sensors,
                                                      noted_at, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (resident_id) DO UPDATE
                  SET since = excluded.since, why = excluded.why, gateways = excluded.gateways,
                      sensors = excluded.sensors, updated_at = excluded.updated_at
                WHERE (u.since, u.why, u.gateways, u.sensors)
                      IS DISTINCT FROM (excluded.since, excluded.why, excluded.gateways,
                                        excluded.sensors)""",
            rows,
        )


def _site_incident(
    conn: psycopg.Connection[Any], now: datetime, stale: datetime, policy: HealthPolicy
) -> SiteIncident | None:
    """Detect the site outage now and open, update or end its row in anbu.incidents."""
    events = []
    for gw_id, dong, online, changed, seen in conn.execute(_DOWN_GATEWAYS, {"stale": stale}):
        since = gateway_down_since(
            GatewayHealth(gw_id, online, changed, seen), now, policy, grace=False
        )
        if since is not None:
            events.append(OfflineEvent(str(gw_id), str(dong), since))
    totals = {str(d): int(n) for d, n in conn.execute(_DONG_TOTALS)}
    incident = detect_site_outage(events, now, policy.site, totals)
    row = conn.execute(
        "SELECT id, details FROM anbu.incidents WHERE kind = %s AND ended_at IS NULL FOR UPDATE",
        (SITE_OUTAGE,),
    ).fetchone()
    if incident is None:
        if row is not None:
            conn.execute(
                "UPDATE anbu.incidents SET ended_at = %s, updated_at = %s WHERE id = %s",
                (now, now, row[0]),
            )
        return None
    details = dict(row[1]) if row is not None else {}
    details["gateway_ids"] = sorted(set(details.get("gateway_ids", [])) | set(incident.gateways))
    values = (len(incident.gateways), list(incident.dong_codes), incident.reason_ko,
              incident.reason_en, json.dumps(details), now)  # fmt: skip
    if row is None:
        conn.execute(
            """INSERT INTO anbu.incidents (gateways, dong_codes, reason_ko, reason_en, details,
                                           updated_at, kind, started_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (*values, SITE_OUTAGE, incident.started_at),
        )
    else:
        conn.execute(
            """UPDATE anbu.incidents SET gateways = %s, dong_codes = %s, reason_ko = %s,
                      reason_en = %s, details = %s, updated_at = %s WHERE id = %s""",
            (*values, row[0]),
        )
    return incident


def _record_held(
    conn: psycopg.Connection[Any], now: datetime, held: list[tuple[int, Held]]
) -> None:
    """The open incident keeps which findings it held back, per gateway or home, and why."""
    entries = {
        f"{rid}:{h.issue.kind}:{h.issue.subject}": {
            "resident_id": rid,
            "kind": h.issue.kind,
            "subject": h.issue.subject,
            "since": h.issue.since.isoformat(),
            "why": h.why,
        }
        for rid, h in held
        if h.why == SITE_OUTAGE
    }
    if not entries:
        return
    conn.execute(
        """UPDATE anbu.incidents
              SET details = jsonb_set(details, '{suppressed}',
                                      coalesce(details->'suppressed', '{}'::jsonb) || %s::jsonb)
            WHERE kind = %s AND ended_at IS NULL""",
        (json.dumps(entries), SITE_OUTAGE),
    )


def home_health(conn: psycopg.Connection[Any], resident_id: int) -> HomeHealth | None:
    """One home's gateways and sensors as the health sweep reads them (a resident's card)."""
    found = _load_homes(conn, [resident_id])
    return found[0] if found else None


def _load_homes(
    conn: psycopg.Connection[Any], ids: list[int], clock: datetime | None = None
) -> list[HomeHealth]:
    """The homes' gateways and sensors; a gateway's clock only if learned after `clock`."""
    if not ids:
        return []
    p = {"ids": ids, "clock": clock}
    gateways: dict[int, list[GatewayHealth]] = defaultdict(list)
    for rid, gw_id, online, changed, seen, lag, off, refused in conn.execute(_GATEWAYS, p):
        gateways[int(rid)].append(
            GatewayHealth(str(gw_id), online, changed, seen, lag, off, refused)
        )
    sensors: dict[int, list[SensorHealth]] = defaultdict(list)
    for rid, *s in conn.execute(_SENSORS, p):
        sensors[int(rid)].append(
            SensorHealth(
                int(s[0]),
                str(s[1]),
                str(s[2]),
                str(s[3]),
                str(s[4]),
                s[5],
                None if s[6] is None else float(s[6]),
                s[7],
                None if s[8] is None else float(s[8]),
                int(s[9]),
            )
        )
    return [
        HomeHealth(
            int(rid),
            str(home),
            str(status),
            until,
            tuple(gateways[int(rid)]),
            tuple(sensors[int(rid)]),
        )
        for rid, home, status, until in conn.execute(_HOMES, p)
    ]


def _store(
    conn: psycopg.Connection[Any],
    now: datetime,
    homes: dict[int, str],
    issues: dict[tuple[int, str], list[HealthIssue]],
) -> list[NewFinding]:
    """Insert, per home and kind, one finding naming the subjects not yet reported."""
    flat = [(rid, issue) for (rid, _), found in sorted(issues.items()) for issue in found]
    if not flat:
        return []
    covered = {
        int(r[0]) - 1
        for r in conn.execute(
            _COVERED,
            {
                "ids": [rid for rid, _ in flat],
                "kinds": [i.kind for _, i in flat],
                "subjects": [i.subject for _, i in flat],
                "since": [i.since for _, i in flat],
            },
        )
    }
    fresh: dict[tuple[int, str], list[HealthIssue]] = defaultdict(list)
    for n, (rid, issue) in enumerate(flat):
        if n not in covered:
            fresh[(rid, issue.kind)].append(issue)
    new: list[NewFinding] = []
    for (rid, kind), found in fresh.items():
        issue = merge(found)
        details = {**issue.details, "subjects": sorted({i.subject for i in found}),
                   "subject": issue.subject, "since": issue.since.isoformat()}  # fmt: skip
        row = conn.execute(
            _INSERT,
            (
                rid,
                kind,
                issue.severity.label,
                now,
                issue.reason_ko,
                issue.reason_en,
                json.dumps(details),
            ),
        ).fetchone()
        if row is not None:
            finding = Finding(homes[rid], kind, issue.severity, now, issue.reason_ko,
                              issue.reason_en, details)  # fmt: skip
            new.append(NewFinding(int(row[0]), rid, finding))
    new.sort(key=lambda n: n.finding_id)
    return new
