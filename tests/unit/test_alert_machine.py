"""The alert state machine: legal paths, illegal transitions raise, no sequence escapes the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.machine import Event, IllegalTransition, allowed_events, next_state
from alerts.policy import TOP_LEVEL, EscalationPolicy, call_watch
from core.domain import AlertState as S


def test_the_unanswered_path_reaches_the_care_manager_and_ends_resolved() -> None:
    state = S.OPEN
    for event in (
        Event.CALL_PLACED,
        Event.CALL_UNANSWERED,
        Event.CALL_PLACED,
        Event.RESIDENT_UNREACHED,
        Event.ACK_OVERDUE,
        Event.ACKNOWLEDGE,
        Event.RESOLVE,
    ):
        state = next_state(state, event)
    assert state is S.RESOLVED


def test_resident_ok_closes_the_alert_without_a_care_manager() -> None:
    assert next_state(next_state(S.OPEN, Event.CALL_PLACED), Event.RESIDENT_OK) is S.RESOLVED


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.RESOLVED, Event.ACKNOWLEDGE),
        (S.RESOLVED, Event.CALL_PLACED),
        (S.OPEN, Event.RESOLVE),  # nobody has looked at it yet
        (S.CALLING, Event.RESOLVE),
        (S.ACKNOWLEDGED, Event.ACKNOWLEDGE),
        (S.ACKNOWLEDGED, Event.CALL_PLACED),
        (S.OPEN, Event.RESIDENT_OK),  # no call was placed
    ],
)
def test_illegal_transitions_raise(state: S, event: Event) -> None:
    with pytest.raises(IllegalTransition, match=f"{event.value} is not allowed when the alert"):
        next_state(state, event)


def _oracle(state: S, event: Event) -> S | None:
    """The care rules, written out apart from the machine's table: where `event` takes an alert
    in `state` (None: not allowed). Read from DESIGN.md's care logic, not from TRANSITIONS."""
    if state is S.RESOLVED:
        return None  # a resolved alert is over: a new silence opens a new alert
    if event is Event.SEVERITY_RAISED:
        return state  # worse news changes the severity, never the step
    if event is Event.REASSIGN:
        return state  # another care manager takes it over where it stands; a closed one stays
    if event is Event.JOINED:
        return state  # a related finding joins the open alert where it stands
    if event is Event.BUTTON_CANCELLED:  # a cancel in the grace window: the resident's call
        return S.CALLING if state in (S.OPEN, S.ESCALATED) else None
    if event is Event.PRESSED_AGAIN:  # a button or an alarm again: everyone told again
        return S.OPEN if state is S.OPEN else S.ESCALATED
    if event is Event.RESIDENT_ANSWERED:  # the call beside an escalation: noted, no step
        return S.ESCALATED if state is S.ESCALATED else None
    if event is Event.ABSENCE_RECORDED:
        return S.RESOLVED  # away or in hospital: the cause is known
    if event is Event.SERVICE_ENDED:
        return S.RESOLVED  # moved, in a care home or died: nobody is watched any more
    if event is Event.ACKNOWLEDGE:
        return None if state is S.ACKNOWLEDGED else S.ACKNOWLEDGED
    if event is Event.RESOLVE:  # only after a care manager took it, or was told
        return S.RESOLVED if state in (S.ACKNOWLEDGED, S.ESCALATED) else None
    if state is S.ACKNOWLEDGED:
        return None  # a person has it: no more calls, no more ladder
    if event is Event.CALL_PLACED:
        return S.CALLING if state in (S.OPEN, S.CALLING) else None
    if event in (Event.CALL_UNANSWERED, Event.RESIDENT_OK, Event.RESIDENT_UNREACHED):
        if state is not S.CALLING:
            return None  # only a placed call has an answer
        return {Event.CALL_UNANSWERED: S.CALLING, Event.RESIDENT_OK: S.RESOLVED}.get(
            event, S.ESCALATED
        )
    if event in (Event.RESIDENT_NEEDS_HELP, Event.CANNOT_CALL):
        return S.ESCALATED if state in (S.OPEN, S.CALLING) else None
    if event is Event.ACK_OVERDUE:
        return S.ESCALATED if state is S.ESCALATED else None
    raise AssertionError(f"the oracle does not know {event}")


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(Event))
def test_every_transition_is_the_care_rules(state: S, event: Event) -> None:
    want = _oracle(state, event)
    if want is None:
        with pytest.raises(IllegalTransition, match=f"{event.value} is not allowed"):
            next_state(state, event)
    else:
        assert next_state(state, event) is want
        assert event in allowed_events(state)


@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_no_sequence_strays_from_the_care_rules_or_leaves_resolved(events: list[Event]) -> None:
    state = S.OPEN
    for event in events:
        want = _oracle(state, event)
        if want is None:
            with pytest.raises(IllegalTransition, match=f"when the alert is {state.value}"):
                next_state(state, event)
            continue
        assert state is not S.RESOLVED
        state = next_state(state, event)
        assert state is want


def test_resolved_is_terminal_and_every_open_state_can_end() -> None:
    assert allowed_events(S.RESOLVED) == []
    for state in (S.OPEN, S.CALLING, S.ESCALATED, S.ACKNOWLEDGED):
        seen, frontier = {state}, [state]
        while frontier:
            s = frontier.pop()
            for e in allowed_events(s):
                t = next_state(s, e)
                if t not in seen:
                    seen.add(t)
                    frontier.append(t)
        assert S.RESOLVED in seen


T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("waiting", "dialled_at", "now", "verdict", "until"),
    [
        (True, None, T0 + 3 * MIN, "wait", T0 + 6 * MIN),  # still queued: look again later
        (True, None, T0 + 7 * MIN, "wait", T0 + 9 * MIN),  # never past the queue limit
        (True, None, T0 + 9 * MIN, "never_dialled", None),  # 3 watchdogs in the queue
        (False, T0 + 2 * MIN, T0 + 3 * MIN, "wait", T0 + 5 * MIN),  # rang 1 min ago
        (False, T0 + 2 * MIN, T0 + 5 * MIN, "no_answer", None),  # rang a watchdog ago
        (False, None, T0 + 3 * MIN, "no_answer", None),  # cancelled or legacy: never waits
    ],
)
def test_the_call_watchdog_counts_from_dialling_with_a_queue_limit(
    waiting: bool, dialled_at: datetime | None, now: datetime, verdict: str, until: datetime | None
) -> None:
    policy = EscalationPolicy(call_watchdog=3 * MIN, queue_wait_watchdogs=3)
    watch = call_watch(waiting, T0, dialled_at, now, policy)
    assert (watch.verdict, watch.until) == (verdict, until)


def test_the_top_of_the_ladder_is_told_again_at_growing_intervals_then_no_more() -> None:
    policy = EscalationPolicy(ack_timeout=30 * MIN, top_repeats=(1, 2, 4))
    waits = [policy.wait_after(level) for level in range(TOP_LEVEL + 5)]
    below = [30 * MIN] * TOP_LEVEL
    assert waits == [*below, 30 * MIN, 60 * MIN, 120 * MIN, None, None]
    assert policy.step(TOP_LEVEL + 2) == policy.step(TOP_LEVEL)
    assert [policy.repeat_of(level) for level in range(TOP_LEVEL + 2)] == [0] * (TOP_LEVEL + 1) + [
        1
    ]
    assert EscalationPolicy(top_repeats=()).wait_after(TOP_LEVEL) is None  # tell the top once
