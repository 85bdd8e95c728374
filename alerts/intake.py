"""Turns what the phone heard into alerts: check-in answers, unreached streaks, the 돌봄콜 line,
and care managers pressing 1 on an alert call.

Each source row is claimed with FOR UPDATE SKIP LOCKED and marked reported in the same
transaction that stores its finding; the alert is then opened through AlertService, as the
detectors' findings are. The finding stays waiting (`alerted_at` unset) until its alert
commits, so a crash or an error in between is made good by AlertService.reconcile_findings.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts import requests
from alerts.machine import IllegalTransition
from alerts.models import AlertNotFound
from alerts.service import AlertService, IncomingFinding
from calls.answers import claim_late_help
from calls.checkins import unreached_streak
from core.clock import Clock
from core.db import Database
from core.domain import CallOutcome, Finding, Severity

log = logging.getLogger(__name__)

# round state -> (finding kind, severity, Korean, English)
CHECKIN_FINDINGS: dict[str, tuple[str, Severity, str, str]] = {
    "emergency": ("checkin_emergency", Severity.CRITICAL,
                  "정기 안부전화에서 응급 상황을 알림", "emergency said on a routine check-in"),
    "help": ("checkin_help", Severity.WARNING,
             "정기 안부전화에서 도움을 요청함", "asked for help on a routine check-in"),
    "unwell": ("checkin_unwell", Severity.WATCH,
               "정기 안부전화에서 몸이 좋지 않다고 함", "said they are unwell on a check-in"),
}  # fmt: skip

# a help-class answer that came late -> the round state whose finding it raises, and why
LATE_STATE: dict[CallOutcome, str] = {
    CallOutcome.EMERGENCY: "emergency",
    CallOutcome.HELP: "help",
    CallOutcome.UNWELL: "unwell",
}
LATE_REASONS: dict[CallOutcome, tuple[str, str]] = {
    CallOutcome.EMERGENCY: ("안부전화 응답 후속 확인: 응급 상황 호소",
                            "check-in answer followed up: said it is an emergency"),
    CallOutcome.HELP: ("안부전화 응답 후속 확인: 도움 요청",
                       "check-in answer followed up: asked for help"),
    CallOutcome.UNWELL: ("안부전화 응답 후속 확인: 몸이 불편하다고 함",
                         "check-in answer followed up: said they are unwell"),
}  # fmt: skip

# the line's message outcome -> severity of its alert
MESSAGE_SEVERITY: dict[str, Severity] = {
    "emergency": Severity.CRITICAL,
    "help": Severity.WARNING,
    "unwell": Severity.WARNING,
}


def _finding(
    conn: psycopg.Connection[Any], resident_id: int, kind: str, severity: Severity,
    now: datetime, reason_ko: str, reason_en: str, details: dict[str, Any],
) -> IncomingFinding | None:  # fmt: skip
    row = conn.execute(
        """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko, reason_en,
                                     details)
           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
           RETURNING id, (SELECT home FROM anbu.resident WHERE id = %s)""",
        (resident_id, kind, severity.label, now, reason_ko, reason_en, Jsonb(details), resident_id),
    ).fetchone()
    if row is None:
        return None
    finding = Finding(str(row[1]), kind, severity, now, reason_ko, reason_en, details)
    return IncomingFinding(int(row[0]), resident_id, finding)


class Intake:
    """Reads rows calls/ wrote and opens alerts for them."""

    def __init__(self, db: Database, alerts: AlertService, clock: Clock, streak: int = 3) -> None:
        self.db = db
        self.alerts = alerts
        self.clock = clock
        self.streak = streak

    def run_once(self, limit: int = 200) -> int:
        """Every source once; returns how many alerts were opened or raised."""
        opened = (
            self.report_checkins(limit)
            + self.report_late_answers(limit)
            + self.report_line_calls(limit)
            + self.take_manager_acks(limit)
        )
        self.take_needs(limit)  # service requests: a queue of their own, never alerts
        return opened

    def take_needs(self, limit: int = 200) -> int:
        """Needs residents stated on a routine call's conversation, into their dong's queue of
        service requests (alerts.requests); how many were taken."""
        with self.db.connection() as conn:
            return requests.take_needs(conn, self.clock.now(), limit)

    def report_checkins(self, limit: int = 200) -> int:
        """Finished routine check-ins that were not OK: an answer that needs someone, or the
        last `streak` rounds in a row unreached."""
        now = self.clock.now()
        found: list[IncomingFinding] = []
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rounds = cur.execute(
                """SELECT id, resident_id, state FROM anbu.checkin_rounds
                   WHERE reported_at IS NULL AND state <> 'ok' AND finished_at IS NOT NULL
                   ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED""",
                (limit,),
            ).fetchall()
            for k in rounds:
                conn.execute(
                    "UPDATE anbu.checkin_rounds SET reported_at = %s WHERE id = %s", (now, k["id"])
                )
                item: IncomingFinding | None = None
                if k["state"] in CHECKIN_FINDINGS:
                    kind, severity, ko, en = CHECKIN_FINDINGS[k["state"]]
                    item = _finding(conn, k["resident_id"], kind, severity, now, ko, en,
                                    {"round_id": k["id"]})  # fmt: skip
                elif unreached_streak(conn, k["resident_id"], self.streak):
                    item = _finding(
                        conn, k["resident_id"], "checkin_unreached", Severity.WARNING, now,
                        f"정기 안부전화 {self.streak}회 연속 연락 안 됨",
                        f"{self.streak} routine check-ins in a row unreached",
                        {"round_id": k["id"]},
                    )  # fmt: skip
                if item is not None:
                    found.append(item)
        return len(self.alerts.on_findings(found)) if found else 0

    def report_late_answers(self, limit: int = 200) -> int:
        """Help asked on a call after its alert or round had moved on (the watchdog fired, the
        call had ended as unclear, an earlier "1"): a finding of its own, never dropped."""
        now = self.clock.now()
        found: list[IncomingFinding] = []
        with self.db.connection() as conn:
            for late in claim_late_help(conn, now, limit):
                kind, severity, _, _ = CHECKIN_FINDINGS[LATE_STATE[late.answer]]
                ko, en = LATE_REASONS[late.answer]
                local = late.answered_at.astimezone(self.alerts.tz).strftime("%H:%M")
                if late.in_talk:  # said in words later in the conversation, after a "1"
                    how_ko, how_en = "안부 대화 중 말씀", "said during the conversation"
                else:
                    how_ko = f"{late.digits}번" if late.digits else "음성"
                    how_en = f"pressed {late.digits}" if late.digits else "spoken"
                ko, en = f"{ko} ({how_ko}, {local})", f"{en} ({how_en}, {local})"
                item = _finding(conn, late.resident_id, kind, severity, now, ko, en,
                                {"call_id": late.call_id, "alert_id": late.alert_id})  # fmt: skip
                if item is not None:
                    found.append(item)
                log.info("late answer reported",
                         extra={"call_id": late.call_id, "resident_id": late.resident_id,
                                "answer": late.answer.value})  # fmt: skip
        return len(self.alerts.on_findings(found)) if found else 0

    def report_line_calls(self, limit: int = 200) -> int:
        """Help requests and messages left on the 돌봄콜 line: a message with its recognised text,
        or at 주의 with its recording when nothing was recognised."""
        now = self.clock.now()
        found: list[IncomingFinding] = []
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            calls = cur.execute(
                """SELECT id, resident_id, choice, transcript, outcome, recording_url, received_at
                   FROM anbu.incoming_calls
                   WHERE reported_at IS NULL AND resident_id IS NOT NULL
                     AND (choice = 'help' OR choice = 'message'
                          AND (transcript IS NOT NULL OR recording_url IS NOT NULL))
                   ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED""",
                (limit,),
            ).fetchall()
            for c in calls:
                conn.execute(
                    "UPDATE anbu.incoming_calls SET reported_at = %s WHERE id = %s", (now, c["id"])
                )
                # raised when the call came in: two calls of one resident in one pass are two
                # findings (they are unique on resident, kind, severity and time)
                at = c["received_at"]
                if c["choice"] == "help":
                    item = _finding(conn, c["resident_id"], "help_request", Severity.CRITICAL, at,
                                    "돌봄콜로 도움을 요청함", "asked for help on the care line",
                                    {"incoming_call_id": c["id"]})  # fmt: skip
                elif c["transcript"] is None:  # nothing recognised: what was said is unknown
                    item = _finding(conn, c["resident_id"], "voice_message", Severity.WARNING, at,
                                    "돌봄콜 음성 메시지 (받아쓰지 못함: 녹음을 들어 주세요)",
                                    "left a voice message on the care line (not transcribed: "
                                    "listen to the recording)",
                                    {"incoming_call_id": c["id"],
                                     "recording_url": c["recording_url"]})  # fmt: skip
                else:
                    severity = MESSAGE_SEVERITY.get(c["outcome"] or "", Severity.WATCH)
                    item = _finding(conn, c["resident_id"], "voice_message", severity, at,
                                    f"돌봄콜 메시지: {c['transcript']}",
                                    "left a message on the care line",
                                    {"incoming_call_id": c["id"],
                                     "recording_url": c["recording_url"]})  # fmt: skip
                if item is not None:
                    found.append(item)
        return len(self.alerts.on_findings(found)) if found else 0

    def take_manager_acks(self, limit: int = 200) -> int:
        """A care manager pressed 1 on an alert call: they took the alert."""
        now = self.clock.now()
        with self.db.connection() as conn:
            rows = conn.execute(
                """UPDATE anbu.calls c SET reported_at = %s
                   FROM anbu.care_manager m
                   WHERE c.id IN (SELECT id FROM anbu.calls WHERE purpose = 'manager_alert'
                                    AND reported_at IS NULL AND outcome IS NOT NULL
                                  LIMIT %s FOR UPDATE SKIP LOCKED)
                     AND m.id = c.care_manager_id
                   RETURNING c.alert_id, c.care_manager_id, m.dong_code, c.digits""",
                (now, limit),
            ).fetchall()
        taken = 0
        for alert_id, manager_id, dong_code, digits in rows:
            if digits != "1":
                continue
            try:
                self.alerts.acknowledge(alert_id, manager_id, dong_code, "전화로 확인 (1번)")
                taken += 1
            except (AlertNotFound, IllegalTransition) as exc:  # already taken or resolved
                why = type(exc).__name__
                log.info("alert call not taken", extra={"alert_id": alert_id, "why": why})
        return taken
