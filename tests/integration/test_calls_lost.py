"""A call claimed and marked dialled that Twilio never took (the worker died between the claim's
commit and the REST request) is ended as lost after the watchdog, and the alert and check-in
timers place a fresh attempt; a call Twilio did take is never lost, a late SID is cancelled,
and nobody is called twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
import pytest
from twilio.rest.api.v2010.account.call import CallList

import registry
from alerts.policy import EscalationPolicy
from alerts.service import AlertService
from calls.checkins import CheckinService, add_plan
from calls.dialer import Priority
from calls.lost import lost_after
from core.clock import VirtualClock
from simulators import personas
from tests.calls_support import CallsRig, calls_rig

DONG = "1111051500"
PHONE = "+821055508888"
MANAGER_PHONE = "+821099990008"
MONDAY_10 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 10:00 Asia/Seoul


class WorkerDied(BaseException):
    """The process ends here: nothing in anbu catches it, as nothing survives a kill -9."""


@contextmanager
def dies_before_twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every REST request to create a call kills the worker before it leaves the process."""
    tried: list[str] = []

    def create(self: CallList, **kwargs: Any) -> Any:
        tried.append(str(kwargs.get("to")))
        raise WorkerDied("killed before the call left the process")

    with monkeypatch.context() as m:
        m.setattr(CallList, "create", create)
        yield tried


def _seed(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        registry.add_dong(conn, DONG, "청운효자동", "종로구")
        rid = registry.add_resident(conn, "h-lost", DONG, "이순자", PHONE)
        cm = registry.add_care_manager(conn, "cm-lost", DONG, "최담당", MANAGER_PHONE, "pw")
        return rid, cm


def _call(rig: CallsRig, call_id: int) -> tuple[Any, ...]:
    [row] = rig.query(
        "SELECT status, outcome, twilio_sid, dial_state FROM anbu.calls WHERE id = %s", call_id
    )
    return row


def _events(rig: CallsRig, call_id: int) -> list[str]:
    rows = rig.query("SELECT status FROM anbu.call_events WHERE call_id = %s ORDER BY id", call_id)
    return [r[0] for r in rows]


def _alert(
    db_url: str, rid: int, state: str = "open", severity: str = "warning", kind: str = "inactivity"
) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            """INSERT INTO anbu.alerts (resident_id, kind, severity, state, opened_at, updated_at,
                   next_action_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (rid, kind, severity, state, MONDAY_10, MONDAY_10, MONDAY_10),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_lost_alert_call_is_reaped_and_the_alert_calls_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, _ = _seed(db_url)
    alert_id = _alert(db_url, rid)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["press_1"])
        # a long alert watchdog: only the reaper can tell the alert this call is over
        policy = EscalationPolicy(call_watchdog=timedelta(minutes=30))
        alerts = AlertService(rig.database, rig.service, policy, clock,
                              rig.settings.public_base_url)  # fmt: skip
        with (
            dies_before_twilio(monkeypatch) as tried,
            pytest.raises(WorkerDied, match="killed before the call left"),
        ):
            alerts.process_due()  # claimed and committed, then the worker died
        assert tried == [PHONE]
        [(call_id,)] = rig.query("SELECT id FROM anbu.calls")
        assert _call(rig, call_id) == ("queued", None, None, "dialled")

        # the step committed before the dial: the restarted worker finds the alert waiting on
        # that (lost) call, and nothing due until the reaper ends it
        assert alerts.process_due() == 0
        assert rig.query("SELECT last_call_id, awaiting_call FROM anbu.alerts") == [(call_id, True)]
        assert rig.query("SELECT count(*) FROM anbu.calls") == [(1,)]
        assert rig.service.reap_lost_calls() == []  # not before the grace period

        clock.advance(lost_after(rig.settings) + timedelta(seconds=1))
        [lost] = rig.service.reap_lost_calls()
        assert (lost.id, lost.alert_id, lost.redial_id) == (call_id, alert_id, None)
        assert _call(rig, call_id) == ("lost", "failed", None, "dialled")
        assert _events(rig, call_id) == ["queued", "lost"]
        [(params,)] = rig.query(
            "SELECT params FROM anbu.call_events WHERE call_id = %s AND status = 'lost'", call_id
        )
        assert params["reason"] == "never_reached_twilio"
        assert rig.service.reap_lost_calls() == []  # twice changes nothing more
        assert _events(rig, call_id) == ["queued", "lost"]

        assert alerts.process_due() == 1  # the alert reads the outcome: not reached, retry
        assert rig.query("SELECT state, awaiting_call FROM anbu.alerts") == [("calling", False)]
        [(reason,)] = rig.query(
            "SELECT reason FROM anbu.alert_events WHERE alert_id = %s ORDER BY id DESC LIMIT 1",
            alert_id,
        )
        assert "연결 실패" in reason

        clock.advance(policy.retry_interval)
        alerts.process_due()  # attempt 2, under a new idempotency key, reaches the resident
        assert rig.network.wait_idle(20)
        alerts.process_due()
        assert rig.query("SELECT state, call_attempts FROM anbu.alerts") == [("resolved", 2)]
        keys = [r[0] for r in rig.query("SELECT idempotency_key FROM anbu.calls ORDER BY id")]
        assert keys == [f"alert:{alert_id}:attempt:1", f"alert:{alert_id}:attempt:2"]
        assert len(rig.network.calls) == 1  # the resident's phone rang once
        assert rig.service.reap_lost_calls() == []


def test_a_lost_routine_call_is_reaped_and_the_round_calls_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, _ = _seed(db_url)
    with psycopg.connect(db_url) as conn:
        add_plan(conn, rid, [1], time(10, 0))
    clock = VirtualClock(MONDAY_10 + timedelta(seconds=5))
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["says_fine"])
        checkins = CheckinService(rig.database, rig.settings, clock)
        checkins.schedule()
        checkins.advance()
        with (
            dies_before_twilio(monkeypatch),
            pytest.raises(WorkerDied, match="killed before the call left"),
        ):
            rig.service.drain_queue(budget_s=5)
        [(call_id,)] = rig.query("SELECT id FROM anbu.calls")
        checkins.advance()  # dialled, no outcome, inside the watchdog: the round waits
        assert rig.query("SELECT state, attempts FROM anbu.checkin_rounds") == [("calling", 1)]

        clock.advance(lost_after(rig.settings) + timedelta(seconds=1))
        assert [c.round_id for c in rig.service.reap_lost_calls()] == [
            r[0] for r in rig.query("SELECT id FROM anbu.checkin_rounds")
        ]
        assert _call(rig, call_id)[:2] == ("lost", "failed")
        checkins.advance()  # failed: retried in ten minutes, like a busy line
        assert rig.query("SELECT state, attempts FROM anbu.checkin_rounds") == [("calling", 2)]

        clock.advance(timedelta(minutes=10))
        checkins.advance()
        assert rig.service.drain_queue(budget_s=5) == 1
        assert rig.network.wait_idle(20)
        checkins.advance()
        assert rig.query("SELECT state, attempts FROM anbu.checkin_rounds") == [("ok", 2)]
        assert len(rig.network.calls) == 1
        assert _call(rig, call_id)[:2] == ("lost", "failed")  # the retry changed nothing here


def test_calls_twilio_took_or_not_yet_due_are_never_lost(db_url: str) -> None:
    rid, _ = _seed(db_url)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as rig:
        claimed = MONDAY_10 - timedelta(hours=1)
        with psycopg.connect(db_url) as conn:
            for key, sid, status in [
                ("with-sid", "CA" + "a" * 32, "queued"),  # took it; no callback arrived yet
                ("callback-only", None, "ringing"),  # took it; our SID write died
                ("no-sid", None, "queued"),  # lost
            ]:
                conn.execute(
                    """INSERT INTO anbu.calls (idempotency_key, resident_id, purpose, status,
                           created_at, updated_at, dial_state, claimed_at, dialled_at, twilio_sid)
                       VALUES (%s, %s, 'routine', %s, %s, %s, 'dialled', %s, %s, %s)""",
                    (key, rid, status, claimed, claimed, claimed, claimed, sid),
                )
            conn.execute(
                """INSERT INTO anbu.call_events (call_id, at, status)
                   SELECT id, %s, 'ringing' FROM anbu.calls WHERE idempotency_key = 'callback-only'""",
                (claimed,),
            )
        recent, _ = rig.service.enqueue("recent", rid, priority=Priority.ROUTINE, purpose="routine")
        with psycopg.connect(db_url) as conn:  # claimed a moment ago: its request may be in flight
            conn.execute(
                """UPDATE anbu.calls SET dial_state = 'dialled', claimed_at = %s, dialled_at = %s
                   WHERE id = %s""",
                (MONDAY_10, MONDAY_10, recent),
            )
        rig.service.enqueue("waiting", rid, priority=Priority.ROUTINE, purpose="routine",
                            not_before=MONDAY_10 + timedelta(days=1))  # fmt: skip

        lost = rig.service.reap_lost_calls()
        assert [c.purpose for c in lost] == ["routine"]
        rows = rig.query("SELECT idempotency_key, status, outcome FROM anbu.calls ORDER BY id")
        assert rows == [
            ("with-sid", "queued", None),
            ("callback-only", "ringing", None),
            ("no-sid", "lost", "failed"),
            ("recent", "queued", None),
            ("waiting", "queued", None),
        ]
        assert rig.service.reap_lost_calls() == []


def test_a_late_sid_for_a_reaped_call_is_cancelled_and_counts_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, _ = _seed(db_url)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as rig:
        rig.network.set_persona(PHONE, personas.SCRIPTED["press_1"])
        real_create: Callable[..., Any] = CallList.create
        reaped: list[int] = []

        def hung_create(self: CallList, **kwargs: Any) -> Any:
            # the request hangs past the grace period; the reaper gives the call up meanwhile
            clock.advance(lost_after(rig.settings) + timedelta(seconds=1))
            reaped.extend(c.id for c in rig.service.reap_lost_calls())
            return real_create(self, **kwargs)

        monkeypatch.setattr(CallList, "create", hung_create)
        call_id = rig.service.place_check_in(rid, None, 1)
        assert reaped == [call_id]
        assert rig.network.wait_idle(20)
        [simulated] = rig.network.calls
        status, outcome, sid, _ = _call(rig, call_id)
        assert (status, outcome, sid) == ("lost", "failed", simulated.sid)
        events = _events(rig, call_id)
        assert events[:2] == ["queued", "lost"] and "late_sid" in events
        assert "gather" not in events  # hung up, never asked: a retry may be ringing
        [(digits,)] = rig.query("SELECT digits FROM anbu.calls WHERE id = %s", call_id)
        assert digits is None


def test_a_claim_too_old_to_dial_is_failed_not_dialled_late(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, _ = _seed(db_url)
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as rig:
        call_id, _ = rig.service.enqueue("slow", rid, priority=Priority.ROUTINE, purpose="routine")
        dialler = rig.service.dialler
        real_take = dialler._take

        def slow_take(conn: Any, want: int, only: int | None) -> Any:
            taken = real_take(conn, want, only)
            clock.advance(lost_after(rig.settings) / 2 + timedelta(seconds=1))  # no free thread
            return taken

        monkeypatch.setattr(dialler, "_take", slow_take)
        assert dialler.dial_waiting().dialled == 1
        assert rig.network.calls == []
        assert _call(rig, call_id)[:2] == ("failed", "failed")
        [(params,)] = rig.query(
            "SELECT params FROM anbu.call_events WHERE call_id = %s AND status = 'failed'", call_id
        )
        assert params["error"] == "StaleClaim"
        clock.advance(lost_after(rig.settings))
        assert rig.service.reap_lost_calls() == []


def test_a_lost_care_manager_call_is_queued_again_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, cm = _seed(db_url)
    alert_id = _alert(db_url, rid, state="escalated", severity="critical")
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as rig:
        with (
            dies_before_twilio(monkeypatch),
            pytest.raises(WorkerDied, match="killed before the call left"),
        ):
            rig.service.call_care_manager(alert_id, cm, "심각 알림입니다.", step=0)
        [(first,)] = rig.query("SELECT id FROM anbu.calls")
        clock.advance(lost_after(rig.settings) + timedelta(seconds=1))
        [lost] = rig.service.reap_lost_calls()
        assert lost.id == first and lost.redial_id is not None
        redial = lost.redial_id
        [(key, priority, message)] = rig.query(
            "SELECT idempotency_key, priority, message_ko FROM anbu.calls WHERE id = %s", redial
        )
        assert key == f"manager:{alert_id}:{cm}:step:0:redial"
        assert (priority, message) == (int(Priority.EMERGENCY), "심각 알림입니다.")

        with (
            dies_before_twilio(monkeypatch),
            pytest.raises(WorkerDied, match="killed before the call left"),
        ):
            rig.service.drain_queue(budget_s=5)  # the redial is lost as well
        clock.advance(lost_after(rig.settings) + timedelta(seconds=1))
        [again] = rig.service.reap_lost_calls()
        assert (again.id, again.redial_id) == (redial, None)  # once: SMS and the ladder remain
        assert rig.query("SELECT count(*) FROM anbu.calls") == [(2,)]
        assert rig.network.calls == []


def test_a_lost_care_manager_call_rings_again_and_no_redial_after_the_alert_is_taken(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid, cm = _seed(db_url)
    alert_id = _alert(db_url, rid, state="escalated", severity="critical")
    taken_id = _alert(db_url, rid, state="acknowledged", severity="critical", kind="help_request")
    clock = VirtualClock(MONDAY_10)
    with calls_rig(db_url, clock=clock) as rig:
        with dies_before_twilio(monkeypatch):
            with pytest.raises(WorkerDied, match="killed before the call left"):
                rig.service.call_care_manager(alert_id, cm, "심각 알림입니다.", step=0)
            # the alert already taken: the claim cancels its call instead of dialling it
            rig.service.call_care_manager(taken_id, cm, "심각 알림입니다.", step=0)
        assert rig.query("SELECT status FROM anbu.calls WHERE alert_id = %s", taken_id) == [
            ("canceled",)
        ]
        clock.advance(lost_after(rig.settings) + timedelta(seconds=1))
        lost = {c.alert_id: c.redial_id for c in rig.service.reap_lost_calls()}
        assert lost[alert_id] is not None and taken_id not in lost
        assert rig.service.drain_queue(budget_s=5) == 1
        assert rig.network.wait_idle(20)
        assert [c.to for c in rig.network.calls] == [MANAGER_PHONE]
        [(outcome, digits)] = rig.query(
            "SELECT outcome, digits FROM anbu.calls WHERE id = %s", lost[alert_id]
        )
        assert (outcome, digits) == ("ok", "1")
