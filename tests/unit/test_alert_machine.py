"""The alert state machine: legal paths, illegal transitions raise, no sequence escapes the table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.machine import TRANSITIONS, Event, IllegalTransition, allowed_events, next_state
from anbu.domain import AlertState as S


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
    with pytest.raises(IllegalTransition):
        next_state(state, event)


@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_no_sequence_reaches_an_unknown_state_or_leaves_resolved(events: list[Event]) -> None:
    state = S.OPEN
    for event in events:
        if (state, event) not in TRANSITIONS:
            with pytest.raises(IllegalTransition):
                next_state(state, event)
            continue
        before = state
        state = next_state(state, event)
        assert state in S
        assert before is not S.RESOLVED


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
