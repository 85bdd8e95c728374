"""The alert ladder on real PostgreSQL, the real twilio client and the local phone network:
the call watchdog counts from when the check-in call was dialled, not queued; a call the send
queue never dials is cancelled and the care manager told; a cancelled call reads the same
whichever path cancelled it; the top of the ladder is reminded at growing intervals, then the
reminders stop and the alert stays escalated on the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import registry
from alerts import absence, queries
from alerts.policy import TOP_LEVEL, EscalationPolicy
from alerts.service import AlertService, IncomingFinding
from core.clock import VirtualClock
from core.domain import Finding, Severity
from simulators import personas
from tests.calls_support import ACCOUNT_SID, CallsRig, calls_rig
from tests.integration.dashboard_support import seed_alert

DONG = "1111051500"
PHONE = "+821055504444"
MANAGERS = {"manager": "+821000000011", "supervisor": "+821000000012", "admin": "+821000000013"}
NOON = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 12:00 in Seoul
POLICY = EscalationPolicy()  # watchdog 3 min, ack 30 min, queue wait 9 min, repeats (1, 2, 4)


@dataclass
class Rig:
    calls: CallsRig
    alerts: AlertService
    clock: VirtualClock
    resident_id: int
    manager_id: int

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.calls.query(sql, *args)

    def alert(self, alert_id: int) -> tuple[Any, ...]:
        (row,) = self.query(
            """SELECT state, call_attempts, awaiting_call, escalation_level, next_action_at
               FROM anbu.alerts WHERE id = %s""",
            alert_id,
        )
        return row

    def reasons(self, alert_id: int) -> list[str]:
        rows = self.query(
            "SELECT reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id", alert_id
        )
        return [r[0] for r in rows]

    def free_tokens(self) -> None:
        self.query("UPDATE anbu.call_rate SET tokens = 10 RETURNING tokens")


@pytest.fixture
def rig(db_url: str, unique: str) -> Iterator[Rig]:
    """A resident and a care manager of each role in one dong; the calls-per-second budget is
    spent, so a check-in call waits in the send queue until a test frees tokens."""
    clock = VirtualClock(NOON)
    with calls_rig(db_url, clock=clock, call_cps=0.001, call_inline_wait_s=0.0) as calls:
        with calls.database.connection() as conn:
            registry.add_dong(conn, DONG, "청운효자동", "종로구")
            ids = {
                role: registry.add_care_manager(
                    conn, f"{role}{unique}", DONG, f"담당{role}", phone, "pw", role=role
                )
                for role, phone in MANAGERS.items()
            }
            resident = registry.add_resident(conn, f"home-{unique}", DONG, "박영자", PHONE)
            conn.execute(
                """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
                   VALUES (%s, 0, clock_timestamp())""",
                (ACCOUNT_SID,),
            )
        calls.network.set_persona(PHONE, personas.SCRIPTED["press_1"])
        alerts = AlertService(calls.database, calls.service, POLICY, clock, "http://dash.test")
        yield Rig(calls, alerts, clock, resident, ids["manager"])


def _queued_check_in(rig: Rig) -> tuple[int, int]:
    """An inactivity alert whose first check-in call waits in the send queue."""
    alert_id = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "inactivity")
    rig.alerts.process_due()
    [(call_id, dial_state)] = rig.query(
        "SELECT id, dial_state FROM anbu.calls WHERE alert_id = %s", alert_id
    )
    assert dial_state == "waiting"
    assert rig.alert(alert_id)[:3] == ("calling", 1, True)
    return alert_id, int(call_id)


def test_the_watchdog_waits_while_the_call_is_still_queued(rig: Rig) -> None:
    alert_id, call_id = _queued_check_in(rig)
    rig.clock.advance(POLICY.call_watchdog + timedelta(seconds=1))
    assert rig.alerts.process_due() == 1
    # still queued: not counted as unanswered, no retry planned, the timer moved on
    state, attempts, awaiting, _, next_at = rig.alert(alert_id)
    assert (state, attempts, awaiting) == ("calling", 1, True)
    assert next_at == rig.clock.now() + POLICY.call_watchdog
    assert rig.reasons(alert_id)[-1] == "안부전화 1회차 발신"

    rig.clock.advance(timedelta(minutes=2))
    rig.free_tokens()
    assert rig.calls.service.drain_queue(1) == 1  # dialled at last; the resident presses 1
    assert rig.calls.network.wait_idle(20)
    rig.alerts.process_due()
    assert rig.alert(alert_id)[:2] == ("resolved", 1)
    assert rig.query("SELECT id, outcome FROM anbu.calls") == [(call_id, "ok")]
    assert len(rig.calls.network.calls) == 1


def test_the_watchdog_counts_from_when_the_call_was_dialled(rig: Rig) -> None:
    alert_id, call_id = _queued_check_in(rig)
    rig.calls.network.set_persona(PHONE, personas.slow(personas.PRESS_1, 25))
    rig.calls.network.time_scale = 0.08  # 25 s of ringing take 2 s
    rig.clock.advance(POLICY.call_watchdog - timedelta(seconds=10))
    rig.free_tokens()
    assert rig.calls.service.drain_queue(1) == 1  # dialled 10 s before the queued watchdog
    dialled_at = rig.clock.now()

    rig.clock.advance(timedelta(seconds=11))  # 3 min after queueing, 11 s after dialling
    assert rig.alerts.process_due() == 1
    assert rig.query("SELECT outcome FROM anbu.calls WHERE id = %s", call_id) == [(None,)]
    state, attempts, awaiting, _, next_at = rig.alert(alert_id)
    assert (state, attempts, awaiting) == ("calling", 1, True)
    assert next_at == dialled_at + POLICY.call_watchdog

    assert rig.calls.network.wait_idle(20)  # the resident picks up and presses 1
    rig.alerts.process_due()
    assert rig.alert(alert_id)[:2] == ("resolved", 1)
    assert "안부전화 1회차: 괜찮다고 응답" in rig.reasons(alert_id)


def test_a_dialled_call_with_no_result_after_the_watchdog_is_no_answer(rig: Rig) -> None:
    alert_id, _ = _queued_check_in(rig)
    rig.free_tokens()
    rig.calls.network.set_persona(PHONE, personas.slow(personas.PRESS_1, 25))
    rig.calls.network.time_scale = 0.2  # 5 s of ringing: no result when the watchdog fires
    assert rig.calls.service.drain_queue(1) == 1
    rig.clock.advance(POLICY.call_watchdog)
    rig.alerts.process_due()
    state, attempts, awaiting, _, next_at = rig.alert(alert_id)
    assert (state, attempts, awaiting) == ("calling", 1, False)  # counted, a retry is planned
    assert next_at == rig.clock.now() + POLICY.retry_interval
    assert rig.reasons(alert_id)[-1] == "안부전화 1회차: 받지 않음 — 10분 뒤 다시 전화"
    assert rig.calls.network.wait_idle(20)


def test_a_call_the_queue_never_dials_is_cancelled_and_the_care_manager_told(rig: Rig) -> None:
    alert_id, call_id = _queued_check_in(rig)
    for _ in range(POLICY.queue_wait_watchdogs - 1):
        rig.clock.advance(POLICY.call_watchdog)
        rig.alerts.process_due()
        assert rig.alert(alert_id)[:3] == ("calling", 1, True)
    rig.clock.advance(POLICY.call_watchdog)  # 9 minutes in the queue: given up
    rig.alerts.process_due()

    state, attempts, awaiting, level, next_at = rig.alert(alert_id)
    assert (state, attempts, awaiting, level) == ("escalated", 1, False, 0)
    assert next_at == rig.clock.now() + POLICY.ack_timeout
    assert rig.reasons(alert_id)[-1] == (
        "안부전화 1회차가 9분 동안 발신 대기열에서 나가지 못해 취소함 (발신 지연) — "
        "동 케어매니저에게 알림"
    )
    assert rig.query(
        "SELECT status, outcome, dial_state, dialled_at, ended_at FROM anbu.calls WHERE id = %s",
        call_id,
    ) == [("canceled", None, "dialled", None, rig.clock.now())]
    assert rig.query(
        "SELECT status, params FROM anbu.call_events WHERE call_id = %s ORDER BY id", call_id
    ) == [("queued", {}), ("canceled", {"reason": "queue_timeout", "waited_s": 540})]
    assert [m.to for m in rig.calls.network.messages] == [MANAGERS["manager"]]

    rig.free_tokens()
    assert rig.calls.service.drain_queue(0.5) == 0  # the cancelled call never rings
    assert rig.calls.network.calls == []


def test_a_cancelled_call_reads_the_same_whichever_path_cancelled_it(rig: Rig) -> None:
    """Superseded by a later attempt, or closed by an absence: one writer, one shape, and the
    alert page lists it as cancelled with no outcome (it rang nobody)."""
    superseded_alert, superseded = _queued_check_in(rig)
    rig.calls.service.place_check_in(rig.resident_id, superseded_alert, 2)  # attempt 2 replaces
    [(attempt_2,)] = rig.query(
        "SELECT id FROM anbu.calls WHERE alert_id = %s AND attempt = 2", superseded_alert
    )
    away_alert = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "not_up")
    rig.alerts.process_due()
    [(away_call,)] = rig.query("SELECT id FROM anbu.calls WHERE alert_id = %s", away_alert)
    with rig.calls.database.connection() as conn:
        change = absence.set_status(
            conn, rig.resident_id, "away", NOON + timedelta(days=3), rig.manager_id,
            now=rig.clock.now(),
        )  # fmt: skip
    assert change.alerts.cancelled_calls == sorted([attempt_2, away_call])

    shape = "SELECT status, outcome, dial_state, dialled_at, ended_at FROM anbu.calls WHERE id = %s"
    now = rig.clock.now()
    for call_id in (superseded, attempt_2, away_call):
        assert rig.query(shape, call_id) == [("canceled", None, "dialled", None, now)]
    reasons = rig.query(
        """SELECT call_id, params->>'reason' FROM anbu.call_events
           WHERE status = 'canceled' ORDER BY call_id"""
    )
    assert reasons == [
        (superseded, "superseded"),
        (attempt_2, "resident_status:away"),
        (away_call, "resident_status:away"),
    ]
    with rig.calls.database.connection() as conn:
        page = queries.get_alert(conn, superseded_alert, DONG)
    assert [(c.id, c.status, c.outcome) for c in page.calls] == [
        (superseded, "canceled", None),
        (attempt_2, "canceled", None),
    ]
    rig.free_tokens()
    assert rig.calls.service.drain_queue(0.5) == 0
    assert rig.calls.network.calls == []


def test_the_top_of_the_ladder_is_reminded_at_growing_intervals_then_stops(rig: Rig) -> None:
    alert_id = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "help_request")
    told: list[tuple[int, int, int]] = []  # (minutes since opening, level, text messages sent)
    start = rig.clock.now()
    for _ in range(6 * 48):  # two days, a poll every ten minutes
        rig.alerts.process_due()
        level = rig.alert(alert_id)[3]
        if not told or told[-1][1] != level:
            minutes = int((rig.clock.now() - start).total_seconds() // 60)
            told.append((minutes, level, len(rig.calls.network.messages)))
        rig.clock.advance(timedelta(minutes=10))

    repeats = len(POLICY.top_repeats)
    assert [(m, lvl) for m, lvl, _ in told] == [
        (0, 0), (30, 1), (60, TOP_LEVEL),  # up the ladder, every ack timeout
        (90, TOP_LEVEL + 1), (150, TOP_LEVEL + 2), (270, TOP_LEVEL + 3),  # 30, 60, 120 min
    ]  # fmt: skip
    assert repeats == 3
    # manager, then manager + supervisor, then all three at the top and at each reminder
    assert len(rig.calls.network.messages) == 1 + 2 + 3 * (1 + repeats)
    state, _, _, level, next_at = rig.alert(alert_id)
    assert (state, level, next_at) == ("escalated", TOP_LEVEL + repeats, None)

    reasons = rig.reasons(alert_id)
    assert reasons[-2:] == [
        "120분 안에 확인되지 않아 관리자 (가족·119 안내)에게 다시 알림 (최상위 단계 재알림 3/3회)",
        "관리자 (가족·119 안내)에게 3회 다시 알렸으나 확인되지 않음: 자동 재알림을 멈춤 — "
        "담당자가 확인할 때까지 '담당자 확인 필요'로 남음",
    ]
    assert (
        "30분 안에 확인되지 않아 관리자 (가족·119 안내)에게 다시 알림 (최상위 단계 재알림 1/3회)"
        in (reasons)
    )
    with rig.calls.database.connection() as conn:
        listed = queries.page_alerts(conn, DONG, by_severity=True).alerts
    assert [(a.id, a.state.value) for a in listed] == [(alert_id, "escalated")]

    # a care manager can still take it and close it
    rig.alerts.acknowledge(alert_id, rig.manager_id, DONG)
    rig.alerts.resolve(alert_id, rig.manager_id, DONG, "visited_ok")
    assert rig.alert(alert_id)[0] == "resolved"


def _raise_to_critical(rig: Rig, kind: str) -> None:
    """The detectors raise the resident's `kind` finding to critical."""
    [(finding_id,)] = rig.query(
        """INSERT INTO anbu.findings (resident_id, kind, severity, raised_at, reason_ko, reason_en)
           VALUES (%s, %s, 'critical', %s, '다시 도움 요청', 'asked for help again')
           RETURNING id""",
        rig.resident_id, kind, rig.clock.now(),
    )  # fmt: skip
    finding = Finding(f"home-{rig.resident_id}", kind, Severity.CRITICAL, rig.clock.now(),
                      "다시 도움 요청", "asked for help again")  # fmt: skip
    assert rig.alerts.on_findings([IncomingFinding(finding_id, rig.resident_id, finding)])


def test_a_severity_raised_after_the_reminders_stopped_tells_the_top_again(rig: Rig) -> None:
    alert_id = seed_alert(rig.calls.database, rig.clock, rig.resident_id, "help_request")
    repeats = len(POLICY.top_repeats)
    while rig.alert(alert_id)[4] is not None:  # up the ladder and its reminders, until they stop
        rig.clock.advance(rig.alert(alert_id)[4] - rig.clock.now())
        rig.alerts.process_due()
    assert rig.alert(alert_id)[3] == TOP_LEVEL + repeats
    texts = len(rig.calls.network.messages)

    _raise_to_critical(rig, "help_request")  # warning -> critical, nobody has taken it yet

    state, _, _, level, next_at = rig.alert(alert_id)
    assert (state, level) == ("escalated", TOP_LEVEL)  # the repeat count starts over
    assert next_at == rig.clock.now() + POLICY.wait_after(TOP_LEVEL)
    assert rig.reasons(alert_id)[-2:] == [
        "단계 상향 주의 → 심각: 다시 도움 요청",
        "단계 상향 주의 → 심각 — 관리자 (가족·119 안내)에게 다시 알리고 자동 재알림을 다시 시작함",
    ]
    told = rig.calls.network.messages[texts:]
    assert sorted(m.to for m in told) == sorted(MANAGERS.values())
    assert all(m.body.startswith(f"[안부] 심각 알림 #{alert_id}") for m in told)
    voice = rig.query(
        """SELECT count(*) FROM anbu.calls WHERE alert_id = %s AND purpose = 'manager_alert'""",
        alert_id,
    )
    assert voice == [(len(MANAGERS),)]  # critical now: each is also rung (queued here)

    rig.clock.advance(next_at - rig.clock.now())  # and reminded again while nobody takes it
    rig.alerts.process_due()
    assert rig.alert(alert_id)[3] == TOP_LEVEL + 1
    assert len(rig.calls.network.messages) == texts + 2 * len(MANAGERS)
