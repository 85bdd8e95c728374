"""Safety devices' findings, raised in the very transaction that stores their readings.

A press of an emergency button (응급호출기) or a smoke, gas or carbon monoxide alarm must reach
the dong care manager in seconds, not at the detectors' next sweep. So the ingest batch that
stores such a reading also stores its finding (`anbu.findings`, waiting for its alert) and, in
the same transaction, notifies `URGENT_CHANNEL`: the worker listening there hands the finding
to alerts as soon as the batch commits (anbu.service).

What raises what is one table (`RULES`, keyed by kind and value). A button's reading is an
event: every press raises. A detector's value is a state: it raises on the change to ALARM or
TEST (the previous value something else, or the sensor's first reading), never on each repeat
of an ongoing alarm. A finding is dated by its reading (`raised_at` = the reading's ts), and
findings are unique per resident, kind, severity and time: a redelivered message raises once.
A batch with no safety reading costs one pass over its readings' kinds.

Collapsing (a flood, a redelivery): a sensor raises a finding kind at most once per
`COLLAPSE` (30 s) of reading time, judged against the batch's findings and the ones stored for
that sensor (`details.sensor_id`) on either side of the reading. So a pendant mashed ten times,
an alarm flapping clear/alarm, or a Zigbee2MQTT press (no device time: stamped on receipt)
redelivered after its commit but before the broker's ack, a receipt time later, is one finding;
the readings are all kept. A reading older than `LATE` (10 minutes) at receipt is still raised:
a gateway that buffered through a network outage delivers real presses late, and a person may
still be waiting. Its reason says when it happened and how late it came, and `details.late_s`
has the delay. Late readings are also collapsed by receipt: a sensor raises at most one late
finding per `COLLAPSE` of receipt time, so one gateway's credentials replaying thousands of
past presses at distinct times costs one finding per half minute, not one each. 10 minutes is
far past any normal path (MQTT QoS 1 and an ingest batch take seconds; a receipt-stamped value
is never late) yet short enough that a care manager reading an older press is told it is old.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from core.domain import (
    ALARM_KINDS,
    SAFETY_KINDS,
    AlarmValue,
    ButtonValue,
    Finding,
    SafetyFinding,
    SensorKind,
    Severity,
)
from ingest.state import Resolved

URGENT_CHANNEL = "anbu_urgent"
"""Notified (empty payload) in the transaction that stored a safety finding."""

COLLAPSE = timedelta(seconds=30)
"""A sensor raises one finding of a kind per this much reading time (and, late, receipt time)."""
LATE = timedelta(minutes=10)
"""A reading older than this at receipt is raised marked late (see the module's docstring)."""
SEOUL = ZoneInfo("Asia/Seoul")

# What a person calls the place and the device. The same words as detectors.health's ROOM_KO
# and dashboards' ROOM_LABELS; ingest may import neither (import contracts), so kept here too.
ROOM_KO = {"entrance": "현관", "living": "거실", "kitchen": "부엌", "bedroom": "침실",
           "bathroom": "욕실", "other": "기타"}  # fmt: skip
ROOM_EN = {"entrance": "entrance", "living": "living room", "kitchen": "kitchen",
           "bedroom": "bedroom", "bathroom": "bathroom", "other": "other room"}  # fmt: skip
DEVICE_KO = {SensorKind.BUTTON: "응급호출기", SensorKind.SMOKE: "화재 감지기",
             SensorKind.GAS: "가스 감지기", SensorKind.CO: "일산화탄소 감지기",
             SensorKind.WATER_LEAK: "누수 감지기", SensorKind.TAMPER: "분리 감지 센서"}  # fmt: skip
DEVICE_EN = {SensorKind.BUTTON: "emergency button", SensorKind.SMOKE: "smoke detector",
             SensorKind.GAS: "gas detector", SensorKind.CO: "carbon monoxide detector",
             SensorKind.WATER_LEAK: "water leak detector",
             SensorKind.TAMPER: "tamper sensor"}  # fmt: skip
# what a test is not, said beside it: a smoke detector's test button is not a fire
NOT_KO = {SensorKind.SMOKE: "화재", SensorKind.GAS: "가스 누출", SensorKind.CO: "일산화탄소 누출",
          SensorKind.WATER_LEAK: "누수", SensorKind.TAMPER: "훼손"}  # fmt: skip
NOT_EN = {SensorKind.SMOKE: "a fire", SensorKind.GAS: "a gas leak", SensorKind.CO: "a CO leak",
          SensorKind.WATER_LEAK: "a leak", SensorKind.TAMPER: "tampering"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    """One (kind, value) that raises a finding, with its reasons ({room}, {device} filled in)."""

    finding: SafetyFinding
    severity: Severity
    ko: str
    en: str
    event: bool = False
    """Each reading raises (a button press), rather than only a change of value (an alarm)."""


_PLACE_KO = "대상자 댁 {room} {device}"
_PLACE_EN = "the {device} in the {room}"
_TEST_KO = _PLACE_KO + "의 시험 버튼 또는 자체 점검 신호입니다 (실제 {not_ko} 아님)"
_TEST_EN = "test button or self-test of " + _PLACE_EN + " (not {not_en})"
# said after a late reading's reason: when it happened (Seoul) and how late it came
_LATE_KO = " ({when}에 발생한 신호가 {minutes}분 늦게 도착했습니다)"
_LATE_EN = " (happened at {when} Seoul time, delivered {minutes} min late)"

RULES: dict[tuple[SensorKind, float], Rule] = {
    (SensorKind.BUTTON, ButtonValue.PRESS): Rule(
        SafetyFinding.HELP_BUTTON, Severity.CRITICAL,
        _PLACE_KO + "가 눌렸습니다", _PLACE_EN + " was pressed", event=True),
    (SensorKind.BUTTON, ButtonValue.LONG): Rule(
        SafetyFinding.HELP_BUTTON, Severity.CRITICAL,
        _PLACE_KO + "가 길게 눌렸습니다", _PLACE_EN + " was held down", event=True),
    (SensorKind.BUTTON, ButtonValue.CANCEL): Rule(
        SafetyFinding.BUTTON_CANCEL, Severity.WATCH,
        _PLACE_KO + "의 취소 버튼이 눌렸습니다", "cancel pressed on " + _PLACE_EN, event=True),
    (SensorKind.SMOKE, AlarmValue.ALARM): Rule(
        SafetyFinding.FIRE_ALARM, Severity.CRITICAL,
        _PLACE_KO + "가 연기를 감지했습니다 (화재 의심)", _PLACE_EN + " detects smoke (possible fire)"),
    (SensorKind.GAS, AlarmValue.ALARM): Rule(
        SafetyFinding.GAS_ALARM, Severity.CRITICAL,
        _PLACE_KO + "가 가스 누출을 감지했습니다", _PLACE_EN + " detects a gas leak"),
    (SensorKind.CO, AlarmValue.ALARM): Rule(
        SafetyFinding.GAS_ALARM, Severity.CRITICAL,
        _PLACE_KO + "가 일산화탄소를 감지했습니다", _PLACE_EN + " detects carbon monoxide"),
    (SensorKind.WATER_LEAK, AlarmValue.ALARM): Rule(
        SafetyFinding.WATER_LEAK, Severity.WARNING,
        _PLACE_KO + "가 누수를 감지했습니다", _PLACE_EN + " detects water"),
    (SensorKind.TAMPER, AlarmValue.ALARM): Rule(
        SafetyFinding.TAMPER, Severity.WARNING,
        _PLACE_KO + "가 벽에서 떨어졌거나 덮개가 열렸습니다 (분리 감지)",
        _PLACE_EN + " came off the wall or its cover was opened"),
    **{
        (kind, AlarmValue.TEST): Rule(SafetyFinding.ALARM_TEST, Severity.WATCH, _TEST_KO, _TEST_EN)
        for kind in ALARM_KINDS
    },
}  # fmt: skip


_FINDINGS_OF: dict[SensorKind, frozenset[str]] = {
    kind: frozenset(rule.finding.value for (k, _), rule in RULES.items() if k is kind)
    for kind in SAFETY_KINDS
}
"""The finding kinds a sensor kind can raise."""


@dataclass(frozen=True, slots=True)
class Raised:
    """A safety finding the batch is about to store."""

    resident_id: int
    rule: Rule
    ts: datetime
    sensor_id: int
    kind: SensorKind
    room: str
    value: float
    late_s: int | None = None
    """Seconds between the reading and its receipt, when older than LATE."""

    def reasons(self) -> tuple[str, str]:
        words = {
            "room": ROOM_KO.get(self.room, self.room),
            "device": DEVICE_KO[self.kind],
            "not_ko": NOT_KO.get(self.kind, "경보"),
        }
        words_en = {
            "room": ROOM_EN.get(self.room, self.room),
            "device": DEVICE_EN[self.kind],
            "not_en": NOT_EN.get(self.kind, "an alarm"),
        }
        ko, en = self.rule.ko.format(**words), self.rule.en.format(**words_en)
        if self.late_s is not None:
            at = self.ts.astimezone(SEOUL)
            minutes = self.late_s // 60
            ko += _LATE_KO.format(when=f"{at.month}월 {at.day}일 {at:%H:%M}", minutes=minutes)
            en += _LATE_EN.format(when=f"{at:%d %b %H:%M}", minutes=minutes)
        return ko, en


def safety_readings(resolved: list[Resolved]) -> list[Resolved]:
    """The batch's readings of safety devices (usually none)."""
    return [r for r in resolved if r.ref.kind in SAFETY_KINDS]


def raise_urgent(
    conn: psycopg.Connection[Any], resolved: list[Resolved], now: datetime | None = None
) -> int:
    """Store the findings of the batch's safety readings and notify URGENT_CHANNEL when any is
    new; returns how many were stored. Call it after the readings are inserted and before
    sensor_state is updated: a detector's previous value is its state before this batch.
    `now` is the batch's receipt time (late readings); without it none is late."""
    safety = safety_readings(resolved)
    if not safety:
        return 0
    raised = judge(safety, _previous(conn, safety), _anchors(conn, safety, now), now)
    if not raised:
        return 0
    stored = _insert(conn, raised, now)
    if stored:
        conn.execute("SELECT pg_notify(%s, '')", (URGENT_CHANNEL,))
    return stored


@dataclass(slots=True)
class Anchor:
    """A sensor's findings of one kind that collapse its new readings: their reading times, and
    whether one was received within COLLAPSE of this batch."""

    times: list[datetime]
    received_lately: bool = False

    def covers(self, ts: datetime, late: bool, voids: list[datetime] | None = None) -> bool:
        """Whether a reading at `ts` collapses into these findings: one within COLLAPSE of it
        with none of `voids` (a cancel of the same button) between them; late, one received
        lately."""
        if late and self.received_lately:
            return True
        return any(
            abs(t - ts) < COLLAPSE and not any(min(t, ts) < c < max(t, ts) for c in voids or ())
            for t in self.times
        )


def judge(
    safety: list[Resolved],
    previous: dict[int, float | None],
    anchors: dict[tuple[int, str], Anchor] | None = None,
    now: datetime | None = None,
) -> list[Raised]:
    """What the readings raise, given each detector's value before its first one here and the
    stored findings (`anchors`, by sensor id and finding kind) that collapse them (pure)."""
    by_sensor: dict[int, list[Resolved]] = defaultdict(list)
    for r in safety:
        by_sensor[r.ref.sensor_id].append(r)
    anchors = {} if anchors is None else {k: Anchor(list(a.times), a.received_lately)
                                          for k, a in anchors.items()}  # fmt: skip
    out: list[Raised] = []
    for sid, items in by_sensor.items():
        items.sort(key=lambda r: r.reading.ts)
        prev = previous.get(sid)
        # a cancel between two presses parts them: the press after it is the resident saying it
        # is real after all, never collapsed into the press before (nor is a later press's)
        stored = anchors.get((sid, SafetyFinding.BUTTON_CANCEL.value))
        cancels = [r.reading.ts for r in items if r.ref.kind is SensorKind.BUTTON
                   and r.reading.value == ButtonValue.CANCEL] + (stored.times if stored else [])  # fmt: skip
        for r in items:
            value, ts = r.reading.value, r.reading.ts
            rule = RULES.get((r.ref.kind, value))
            if rule is not None and (rule.event or prev != value):
                late = now is not None and now - ts > LATE
                anchor = anchors.setdefault((sid, rule.finding.value), Anchor([]))
                voids = cancels if rule.finding is SafetyFinding.HELP_BUTTON else None
                if not anchor.covers(ts, late, voids):
                    ref = r.ref
                    late_s = int((now - ts).total_seconds()) if late and now else None
                    out.append(Raised(ref.resident_id, rule, ts, sid, ref.kind, ref.room, value,
                                      late_s))  # fmt: skip
                    anchor.times.append(ts)
                    anchor.received_lately = anchor.received_lately or late
            prev = value
    return out


def _anchors(
    conn: psycopg.Connection[Any], safety: list[Resolved], now: datetime | None
) -> dict[tuple[int, str], Anchor]:
    """The stored findings that may collapse the batch's: per sensor and finding kind it could
    raise, those dated within COLLAPSE of its readings' span, and whether one was received
    within COLLAPSE before `now`."""
    spans: dict[tuple[int, str], tuple[int, datetime, datetime]] = {}
    for r in safety:
        for kind in _FINDINGS_OF[r.ref.kind]:
            key = (r.ref.sensor_id, kind)
            _, lo, hi = spans.get(key, (0, r.reading.ts, r.reading.ts))
            spans[key] = (r.ref.resident_id, min(lo, r.reading.ts), max(hi, r.reading.ts))
    if not spans:
        return {}
    keys = list(spans)
    # two branches, not one OR: the first is a range scan of findings_urgent_anchor (0066) per
    # sensor and kind; the second reads that sensor's findings of the kind (received lately)
    rows = conn.execute(
        """WITH c AS (SELECT * FROM unnest(%(sid)s::bigint[], %(kind)s::text[], %(rid)s::bigint[],
                                           %(lo)s::timestamptz[], %(hi)s::timestamptz[])
                                 AS c(sensor_id, kind, resident_id, lo, hi))
           SELECT c.sensor_id, c.kind, f.raised_at,
                  COALESCE((f.details->>'received_at')::timestamptz > %(lately)s, false)
             FROM c JOIN anbu.findings f
               ON f.resident_id = c.resident_id AND f.kind = c.kind
              AND (f.details->>'sensor_id') = c.sensor_id::text
              AND f.raised_at > c.lo - %(collapse)s AND f.raised_at < c.hi + %(collapse)s
           UNION
           SELECT c.sensor_id, c.kind, f.raised_at, true
             FROM c JOIN anbu.findings f
               ON f.resident_id = c.resident_id AND f.kind = c.kind
              AND (f.details->>'sensor_id') = c.sensor_id::text
            WHERE (f.details->>'received_at')::timestamptz > %(lately)s""",
        {
            "lately": None if now is None else now - COLLAPSE,
            "sid": [k[0] for k in keys], "kind": [k[1] for k in keys],
            "rid": [spans[k][0] for k in keys], "lo": [spans[k][1] for k in keys],
            "hi": [spans[k][2] for k in keys], "collapse": COLLAPSE,
        },
    ).fetchall()  # fmt: skip
    out: dict[tuple[int, str], Anchor] = {}
    for sid, kind, at, lately in rows:
        anchor = out.setdefault((int(sid), str(kind)), Anchor([]))
        anchor.times.append(at)
        anchor.received_lately = anchor.received_lately or bool(lately)
    return out


def _previous(conn: psycopg.Connection[Any], safety: list[Resolved]) -> dict[int, float | None]:
    """Each detector's value before its earliest reading in the batch: its sensor_state when
    that is older, else (a late or redelivered reading) the latest stored reading before it."""
    firsts: dict[int, datetime] = {}
    for r in safety:
        if r.ref.kind is SensorKind.BUTTON:  # events: no previous value needed
            continue
        sid, ts = r.ref.sensor_id, r.reading.ts
        if sid not in firsts or ts < firsts[sid]:
            firsts[sid] = ts
    if not firsts:
        return {}
    rows = conn.execute(
        """SELECT f.sensor_id,
                  CASE WHEN s.value_at < f.first_ts THEN s.value
                       ELSE (SELECT r.value FROM anbu.readings r
                              WHERE r.sensor_id = f.sensor_id AND r.ts < f.first_ts
                              ORDER BY r.ts DESC LIMIT 1) END
             FROM unnest(%s::bigint[], %s::timestamptz[]) AS f(sensor_id, first_ts)
             LEFT JOIN anbu.sensor_state s ON s.sensor_id = f.sensor_id""",
        (list(firsts), list(firsts.values())),
    ).fetchall()
    return {int(sid): None if v is None else float(v) for sid, v in rows}


def _insert(conn: psycopg.Connection[Any], raised: list[Raised], now: datetime | None) -> int:
    rows = []
    for x in raised:
        ko, en = x.reasons()
        details: dict[str, Any] = {
            "sensor_id": x.sensor_id, "room": x.room, "reading_ts": x.ts.isoformat(),
            "value": x.value, "sensor_kind": x.kind.value,
        }  # fmt: skip
        if now is not None:
            details["received_at"] = now.isoformat()
        if x.late_s is not None:
            details["late_s"] = x.late_s
        rows.append((x.resident_id, x.rule.finding.value, x.rule.severity.label, x.ts, ko, en,
                     Jsonb(details)))  # fmt: skip
    rows.sort(key=lambda row: (row[0], row[3]))  # one order for every batch: no lock cycles
    cols = [list(c) for c in zip(*rows, strict=True)]
    inserted = conn.execute(
        """INSERT INTO anbu.findings
               (resident_id, kind, severity, raised_at, reason_ko, reason_en, details)
           SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[],
                                %s::text[], %s::text[], %s::jsonb[])
           ON CONFLICT DO NOTHING RETURNING 1""",
        cols,
    ).fetchall()
    return len(inserted)


_BUTTON_FINDINGS = [SafetyFinding.HELP_BUTTON.value, SafetyFinding.BUTTON_CANCEL.value]
"""The findings of an emergency button: a cancel is judged against the presses around it."""

PER_RESIDENT = 3
"""At most this many of one resident's findings in one hand-over pass: a home's flood (a
pendant mashed, a replaying gateway) cannot hold back another home's fire alarm."""


def waiting_urgent(
    conn: psycopg.Connection[Any], limit: int = 100, per_resident: int = PER_RESIDENT
) -> list[tuple[int, int, Finding]]:
    """Safety findings not yet handed to an alert, as (finding id, resident id, finding): what
    the worker hands to alerts when URGENT_CHANNEL is notified. At most `per_resident` of each
    resident's (their most severe, oldest first): the rest wait for the next pass. Critical
    first, then oldest; but one resident's button findings (presses and cancels) go as their
    most severe and in the order they happened, so a cancel is judged after the presses before
    it and before the presses after it."""
    rows = conn.execute(
        """SELECT f.id, f.resident_id, r.home, f.kind, f.severity, f.raised_at, f.reason_ko,
                  f.reason_en, f.details
             FROM (SELECT w.*, row_number() OVER (PARTITION BY w.resident_id
                                                  ORDER BY w.rank, w.id) AS nth
                     FROM (SELECT f.*, CASE f.severity WHEN 'critical' THEN 0
                                                       WHEN 'warning' THEN 1 ELSE 2 END AS rank
                             FROM anbu.findings f
                            WHERE f.alerted_at IS NULL AND f.alert_retry_at IS NULL
                              AND f.kind = ANY(%s)) w) f
             JOIN anbu.resident r ON r.id = f.resident_id
            WHERE f.nth <= %s
            ORDER BY CASE WHEN f.kind = ANY(%s)
                          THEN min(f.rank) OVER (PARTITION BY f.resident_id, f.kind = ANY(%s))
                          ELSE f.rank END, f.raised_at, f.id
            LIMIT %s""",
        ([k.value for k in SafetyFinding], per_resident, _BUTTON_FINDINGS, _BUTTON_FINDINGS,
         limit),
    ).fetchall()  # fmt: skip
    return [
        (int(fid), int(rid), Finding(str(home), str(kind), Severity.parse(sev), at, str(ko),
                                     str(en), dict(details or {})))
        for fid, rid, home, kind, sev, at, ko, en, details in rows
    ]  # fmt: skip
