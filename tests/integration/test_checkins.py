"""Routine check-ins end to end: plans -> rounds -> queued calls -> the phone network -> decisions,
retries 10 minutes apart, quiet hours, and three unreached rounds in a row reaching the care
manager through alerts/intake."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import psycopg

import registry
from alerts.intake import Intake
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.checkins import CheckinService, add_plan
from core.clock import VirtualClock
from simulators import personas
from tests.calls_support import ACCOUNT_SID, CallsRig, calls_rig

DONG = "1111051500"
PHONE = "+821055507777"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul


def _seed(db_url: str, quiet: tuple[time, time] | None = None) -> int:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(
            conn, "h-checkin", DONG, "박순자", PHONE,
            quiet_start=quiet[0] if quiet else None, quiet_end=quiet[1] if quiet else None,
        )  # fmt: skip
        add_plan(conn, rid, [1, 4], time(10, 0))
        registry.add_care_manager(conn, "cm", DONG, "김담당", "+821099990001", "pw")
        return rid


def _tick(rig: CallsRig, checkins: CheckinService) -> None:
    """What the worker's jobs do, once: schedule, advance, drain, let the calls play out."""
    checkins.schedule()
    checkins.advance()
    rig.service.drain_queue(budget_s=5)
    assert rig.network.wait_idle(20)
    checkins.advance()


def _round_states(rig: CallsRig) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in rig.query(
        "SELECT state, attempts FROM anbu.checkin_rounds ORDER BY slot")]  # fmt: skip


def test_an_ok_answer_finishes_the_round(db_url: str) -> None:
    _seed(db_url)
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["says_fine"])
        checkins = CheckinService(rig.database, rig.settings, clock)
        assert checkins.schedule() == 1
        assert checkins.schedule() == 0  # idempotent per plan and slot
        _tick(rig, checkins)
        assert _round_states(rig) == [("ok", 1)]
        [(key, priority, outcome)] = rig.query(
            "SELECT idempotency_key, priority, outcome FROM anbu.calls"
        )
        assert (priority, outcome) == (2, "ok") and key.endswith(":attempt:1")


def test_unanswered_retries_then_three_unreached_rounds_alert_the_care_manager(
    db_url: str,
) -> None:
    rid = _seed(db_url)
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.VOICEMAIL)
        checkins = CheckinService(rig.database, rig.settings, clock)
        alerts = AlertService(rig.database, rig.service, EscalationPolicy(), clock,
                              rig.settings.public_base_url)  # fmt: skip
        intake = Intake(rig.database, alerts, clock, streak=3)
        for n, start in enumerate([MONDAY_10, MONDAY_10 + timedelta(days=3),
                                   MONDAY_10 + timedelta(days=7)]):  # fmt: skip
            clock.advance(start + timedelta(seconds=5) - clock.now())
            _tick(rig, checkins)
            for _ in range(2):  # two retries, ten minutes apart
                clock.advance(timedelta(minutes=10))
                _tick(rig, checkins)
            assert _round_states(rig)[-1] == ("unreached", 3)
            opened = intake.run_once()
            assert opened == (1 if n == 2 else 0)
        calls = rig.query("SELECT outcome, not_before FROM anbu.calls ORDER BY id")
        assert [c[0] for c in calls] == ["voicemail"] * 9
        gaps = {calls[i + 1][1] - calls[i][1] for i in (0, 1)}
        assert gaps == {timedelta(minutes=10)}
        [(kind, severity, state)] = rig.query(
            "SELECT kind, severity, state FROM anbu.alerts WHERE resident_id = %s", rid
        )
        assert (kind, severity, state) == ("checkin_unreached", "warning", "open")


def test_help_on_a_routine_check_in_opens_an_alert(db_url: str) -> None:
    _seed(db_url)
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["says_emergency"])
        checkins = CheckinService(rig.database, rig.settings, clock)
        alerts = AlertService(rig.database, rig.service, EscalationPolicy(), clock,
                              rig.settings.public_base_url)  # fmt: skip
        _tick(rig, checkins)
        assert _round_states(rig) == [("emergency", 1)]
        assert Intake(rig.database, alerts, clock).run_once() == 1
        assert Intake(rig.database, alerts, clock).run_once() == 0  # reported once
        assert rig.query("SELECT kind, severity FROM anbu.alerts") == [
            ("checkin_emergency", "critical")
        ]


def test_quiet_hours_hold_the_routine_call(db_url: str) -> None:
    _seed(db_url, quiet=(time(9, 0), time(11, 30)))
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock) as rig:
        checkins = CheckinService(rig.database, rig.settings, clock)
        _tick(rig, checkins)
        assert rig.network.calls == []  # not yet: 10:00 is inside 09:00-11:30
        [(not_before,)] = rig.query("SELECT not_before FROM anbu.calls")
        assert not_before == MONDAY_10 + timedelta(minutes=90)
        clock.advance(timedelta(minutes=91))
        _tick(rig, checkins)
        assert len(rig.network.calls) == 1
        assert _round_states(rig) == [("ok", 1)]


def test_a_routine_call_the_queue_never_dials_is_cancelled_and_the_round_moves_on(
    db_url: str,
) -> None:
    """The calls-per-second budget is spent: each attempt waits in the send queue for three
    watchdogs, is cancelled as never dialled and counts as not reached, so the round retries
    and then finishes as unreached instead of holding its slot forever."""
    _seed(db_url)
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock, call_cps=0.001, call_inline_wait_s=0.0) as rig:
        rig.query(
            """INSERT INTO anbu.call_rate (account, tokens, refilled_at)
               VALUES (%s, 0, clock_timestamp()) RETURNING tokens""",
            ACCOUNT_SID,
        )
        checkins = CheckinService(rig.database, rig.settings, clock)
        policy = checkins.policy
        checkins.schedule()
        for attempt in (1, 2, 3):
            checkins.advance()  # queues the first attempt; the next ones are queued already
            assert _round_states(rig) == [("calling", attempt)]
            for _ in range(policy.queue_wait_watchdogs - 1):
                clock.advance(policy.watchdog)
                checkins.advance()
                assert _round_states(rig) == [("calling", attempt)]  # still waiting
            clock.advance(policy.watchdog)  # three watchdogs in the queue: given up
            if attempt < 3:
                checkins.advance()  # cancelled, not reached: the next attempt in 10 minutes
                clock.advance(policy.retry_interval)
        checkins.advance()
        assert _round_states(rig) == [("unreached", 3)]

        waited = int(policy.max_queue_wait.total_seconds())
        calls = rig.query("""SELECT status, outcome, dial_state, dialled_at, attempt
                             FROM anbu.calls ORDER BY id""")  # fmt: skip
        assert calls == [("canceled", None, "dialled", None, n) for n in (1, 2, 3)]
        assert (
            rig.query("SELECT status, params FROM anbu.call_events ORDER BY call_id, id")
            == [("canceled", {"reason": "queue_timeout", "waited_s": waited})] * 3
        )
        rig.query("UPDATE anbu.call_rate SET tokens = 10 RETURNING tokens")
        assert rig.service.drain_queue(0.5) == 0  # the cancelled calls never ring
        assert rig.network.calls == []
