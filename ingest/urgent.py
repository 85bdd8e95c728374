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
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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

# What a person calls the place and the device. The same words as detectors.health's ROOM_KO
# and dashboards' ROOM_LABELS; ingest may import neither (import contracts), so kept here too.
ROOM_KO = {"entrance": "현관", "living": "거실", "kitchen": "부엌", "bedroom": "침실",
           "bathroom": "욕실", "other": "기타"}  # fmt: skip
ROOM_EN = {"entrance": "entrance", "living": "living room", "kitchen": "kitchen",
           "bedroom": "bedroom", "bathroom": "bathroom", "other": "other room"}  # fmt: skip
DEVICE_KO = {SensorKind.BUTTON: "응급호출기", SensorKind.SMOKE: "화재감지기",
             SensorKind.GAS: "가스감지기", SensorKind.CO: "일산화탄소 감지기",
             SensorKind.WATER_LEAK: "누수감지기", SensorKind.TAMPER: "기기"}  # fmt: skip
DEVICE_EN = {SensorKind.BUTTON: "emergency button", SensorKind.SMOKE: "smoke detector",
             SensorKind.GAS: "gas detector", SensorKind.CO: "carbon monoxide detector",
             SensorKind.WATER_LEAK: "water leak detector", SensorKind.TAMPER: "device"}  # fmt: skip
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


_PLACE_KO = "어르신 댁 {room} {device}"
_PLACE_EN = "the {device} in the {room}"
_TEST_KO = _PLACE_KO + "의 시험 버튼 또는 자체 점검 신호입니다 (실제 {not_ko} 아님)"
_TEST_EN = "test button or self-test of " + _PLACE_EN + " (not {not_en})"

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
        _PLACE_KO + "가 연기(화재)를 감지했습니다", _PLACE_EN + " detects smoke (fire)"),
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
        _PLACE_KO + "가 열렸거나 떼어졌습니다 (훼손 감지)",
        _PLACE_EN + " was opened or taken off its mount"),
    **{
        (kind, AlarmValue.TEST): Rule(SafetyFinding.ALARM_TEST, Severity.WATCH, _TEST_KO, _TEST_EN)
        for kind in ALARM_KINDS
    },
}  # fmt: skip


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
        return self.rule.ko.format(**words), self.rule.en.format(**words_en)


def safety_readings(resolved: list[Resolved]) -> list[Resolved]:
    """The batch's readings of safety devices (usually none)."""
    return [r for r in resolved if r.ref.kind in SAFETY_KINDS]


def raise_urgent(conn: psycopg.Connection[Any], resolved: list[Resolved]) -> int:
    """Store the findings of the batch's safety readings and notify URGENT_CHANNEL when any is
    new; returns how many were stored. Call it after the readings are inserted and before
    sensor_state is updated: a detector's previous value is its state before this batch."""
    safety = safety_readings(resolved)
    if not safety:
        return 0
    raised = judge(safety, _previous(conn, safety))
    if not raised:
        return 0
    stored = _insert(conn, raised)
    if stored:
        conn.execute("SELECT pg_notify(%s, '')", (URGENT_CHANNEL,))
    return stored


def judge(safety: list[Resolved], previous: dict[int, float | None]) -> list[Raised]:
    """What the readings raise, given each detector's value before its first one here (pure)."""
    by_sensor: dict[int, list[Resolved]] = defaultdict(list)
    for r in safety:
        by_sensor[r.ref.sensor_id].append(r)
    out: list[Raised] = []
    for sid, items in by_sensor.items():
        items.sort(key=lambda r: r.reading.ts)
        prev = previous.get(sid)
        for r in items:
            value = r.reading.value
            rule = RULES.get((r.ref.kind, value))
            if rule is not None and (rule.event or prev != value):
                ref = r.ref
                out.append(Raised(ref.resident_id, rule, r.reading.ts, sid, ref.kind, ref.room,
                                  value))  # fmt: skip
            prev = value
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


def _insert(conn: psycopg.Connection[Any], raised: list[Raised]) -> int:
    rows = []
    for x in raised:
        ko, en = x.reasons()
        details = {"sensor_id": x.sensor_id, "room": x.room, "reading_ts": x.ts.isoformat(),
                   "value": x.value, "sensor_kind": x.kind.value}  # fmt: skip
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


def waiting_urgent(
    conn: psycopg.Connection[Any], limit: int = 100
) -> list[tuple[int, int, Finding]]:
    """Safety findings not yet handed to an alert, oldest first, as (finding id, resident id,
    finding): what the worker hands to alerts when URGENT_CHANNEL is notified."""
    rows = conn.execute(
        """SELECT f.id, f.resident_id, r.home, f.kind, f.severity, f.raised_at, f.reason_ko,
                  f.reason_en, f.details
             FROM anbu.findings f JOIN anbu.resident r ON r.id = f.resident_id
            WHERE f.alerted_at IS NULL AND f.alert_retry_at IS NULL AND f.kind = ANY(%s)
            ORDER BY f.id LIMIT %s""",
        ([k.value for k in SafetyFinding], limit),
    ).fetchall()
    return [
        (int(fid), int(rid), Finding(str(home), str(kind), Severity.parse(sev), at, str(ko),
                                     str(en), dict(details or {})))
        for fid, rid, home, kind, sev, at, ko, en, details in rows
    ]  # fmt: skip
