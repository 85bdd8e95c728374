"""Routine check-in decisions and quiet hours (pure); the alert outcome rules."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from alerts.policy import (
    OUTCOME_KO,
    OUTCOME_MEANING,
    OUTCOME_RULES,
    TOP_LEVEL,
    EscalationPolicy,
    after_call,
    call_watch,
)
from calls.checkin_policy import OUTCOME_NEXT, CheckinPolicy, decide, quiet_end, watch_call
from core.domain import CallOutcome

SEOUL = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 in Seoul
POLICY = CheckinPolicy(retries=2, unclear_retries=1, retry_interval=timedelta(minutes=10))
UNANSWERED = [CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.FAILED, CallOutcome.VOICEMAIL]


def test_every_outcome_has_a_next_step_everywhere() -> None:
    for table in (OUTCOME_NEXT, OUTCOME_RULES, OUTCOME_MEANING, OUTCOME_KO):
        assert set(table) == set(CallOutcome)


def test_unanswered_retries_twice_ten_minutes_apart_then_unreached() -> None:
    for outcome in UNANSWERED:
        first = decide(outcome, 1, NOW, POLICY)
        assert (first.state, first.attempt, first.at) == (None, 2, NOW + timedelta(minutes=10))
        assert decide(outcome, 2, NOW, POLICY).attempt == 3
        assert decide(outcome, 3, NOW, POLICY).state == "unreached"


def test_unclear_retries_once() -> None:
    assert decide(CallOutcome.UNCLEAR, 1, NOW, POLICY).attempt == 2
    assert decide(CallOutcome.UNCLEAR, 2, NOW, POLICY).state == "unreached"
    assert decide(None, 3, NOW, POLICY).state == "unreached"  # never ended: unanswered


@given(outcome=st.sampled_from(list(CallOutcome)), attempts=st.integers(1, 10))
def test_only_ok_finishes_as_ok_and_risk_is_never_retried(
    outcome: CallOutcome, attempts: int
) -> None:
    d = decide(outcome, attempts, NOW, POLICY)
    assert (d.state == "ok") == (outcome is CallOutcome.OK)
    if outcome in (CallOutcome.HELP, CallOutcome.EMERGENCY, CallOutcome.UNWELL):
        assert d.state == outcome.value
    if d.state is None:
        assert d.attempt == attempts + 1 and d.at is not None and d.at > NOW
    action, level = after_call(outcome, attempts, EscalationPolicy(call_retries=2))
    assert (action == "resolve") == (outcome is CallOutcome.OK)
    if outcome is CallOutcome.EMERGENCY:
        assert (action, level) == ("escalate", TOP_LEVEL)
    if outcome in (CallOutcome.HELP, CallOutcome.UNWELL):
        assert (action, level) == ("escalate", 0)


def test_quiet_hours_hold_the_call_until_they_end() -> None:
    late = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 23:00 in Seoul
    held = quiet_end(late, time(22), time(7), SEOUL)
    assert held.astimezone(SEOUL).replace(tzinfo=None) == datetime(2026, 3, 3, 7, 0)
    assert quiet_end(NOW, time(22), time(7), SEOUL) == NOW
    assert quiet_end(NOW, None, None, SEOUL) == NOW
    assert quiet_end(NOW, time(9), time(12), SEOUL).astimezone(SEOUL).hour == 12


# What the watchdog says, minute by minute, for a call queued at NOW (watchdog 3 min, at most
# 3 watchdogs = 9 min in the queue), written out by hand: (minute, verdict, look again at minute)
STILL_QUEUED = [
    (0, "wait", 3), (1, "wait", 4), (2, "wait", 5), (3, "wait", 6), (4, "wait", 7),
    (5, "wait", 8), (6, "wait", 9), (7, "wait", 9), (8, "wait", 9),  # never past the limit
    (9, "never_dialled", None), (10, "never_dialled", None), (11, "never_dialled", None),
]  # fmt: skip
# the same call dialled at minute 2 and still without a result: no answer a watchdog later
DIALLED_AT_2 = [
    (0, "wait", 5), (1, "wait", 5), (2, "wait", 5), (3, "wait", 5), (4, "wait", 5),
    (5, "no_answer", None), (6, "no_answer", None), (11, "no_answer", None),
]  # fmt: skip


def _expected(verdict: str, until: int | None) -> tuple[str, datetime | None]:
    return verdict, (NOW + timedelta(minutes=until) if until is not None else None)


def test_a_routine_call_waits_in_the_queue_at_most_as_long_as_an_alert_call() -> None:
    """One watchdog rule for both: the round's policy and the alert's give the verdicts
    written out above, minute by minute."""
    routine = CheckinPolicy(watchdog=timedelta(minutes=3), queue_wait_watchdogs=3)
    alert = EscalationPolicy(call_watchdog=timedelta(minutes=3), queue_wait_watchdogs=3)
    assert routine.max_queue_wait == alert.max_queue_wait == timedelta(minutes=9)
    for waiting, dialled_at, table in (
        (True, None, STILL_QUEUED),
        (False, NOW + timedelta(minutes=2), DIALLED_AT_2),
    ):
        for minute, verdict, until in table:
            now = NOW + timedelta(minutes=minute)
            want = _expected(verdict, until)
            ours = watch_call(waiting, NOW, dialled_at, now, routine.watchdog,
                              routine.max_queue_wait)  # fmt: skip
            theirs = call_watch(waiting, NOW, dialled_at, now, alert)
            assert ((ours.verdict, ours.until), (theirs.verdict, theirs.until)) == (want, want), (
                waiting, minute)  # fmt: skip
    # never ended (cancelled as never dialled) counts as not reached: a retry, then unreached
    assert decide(None, 1, NOW, routine).attempt == 2
    assert decide(None, routine.retries + 1, NOW, routine).state == "unreached"
