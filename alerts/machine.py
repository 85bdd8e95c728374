"""The alert state machine: named transitions, a table instead of branches; illegal ones raise."""

from __future__ import annotations

import enum
from datetime import datetime

from core.domain import AlertState

S = AlertState


class Event(enum.StrEnum):
    """Things that happen to an alert."""

    CALL_PLACED = "call_placed"
    RESIDENT_OK = "resident_ok"
    RESIDENT_NEEDS_HELP = "resident_needs_help"
    CALL_UNANSWERED = "call_unanswered"  # will retry
    RESIDENT_UNREACHED = "resident_unreached"  # retries exhausted
    CANNOT_CALL = "cannot_call"
    SEVERITY_RAISED = "severity_raised"
    ACK_OVERDUE = "ack_overdue"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    ABSENCE_RECORDED = "absence_recorded"  # a care manager set away / hospital: the cause is known
    SERVICE_ENDED = "service_ended"  # the resident's service ended (moved, care home, died)
    REASSIGN = "reassign"  # a supervisor hands the alert to another care manager
    BUTTON_CANCELLED = "button_cancelled"  # cancel pressed in the grace window: a check-in
    RESIDENT_ANSWERED = "resident_answered"  # the call placed beside an escalation ended
    JOINED = "joined"  # a related finding joined the open alert (its timeline, its severity)
    PRESSED_AGAIN = "pressed_again"  # a button or an alarm again on its open alert: told again


class IllegalTransition(Exception):
    """The event is not allowed in the alert's current state; where known, when the alert came
    to that state and who brought it there (an alert_events actor: 'care_manager:7', 'system',
    'resident'), so that a care manager who acted second is told who acted first."""

    def __init__(
        self,
        state: AlertState,
        event: Event,
        changed_at: datetime | None = None,
        changed_by: str | None = None,
    ) -> None:
        super().__init__(f"{event.value} is not allowed when the alert is {state.value}")
        self.state = state
        self.event = event
        self.changed_at = changed_at
        self.changed_by = changed_by


_OPEN_STATES = (S.OPEN, S.CALLING, S.ESCALATED, S.ACKNOWLEDGED)

TRANSITIONS: dict[tuple[AlertState, Event], AlertState] = {
    (S.OPEN, Event.CALL_PLACED): S.CALLING,
    (S.OPEN, Event.CANNOT_CALL): S.ESCALATED,
    (S.OPEN, Event.RESIDENT_NEEDS_HELP): S.ESCALATED,  # the resident asked on the line
    (S.CALLING, Event.CALL_PLACED): S.CALLING,
    (S.CALLING, Event.CALL_UNANSWERED): S.CALLING,
    (S.CALLING, Event.RESIDENT_OK): S.RESOLVED,
    (S.CALLING, Event.RESIDENT_NEEDS_HELP): S.ESCALATED,
    (S.CALLING, Event.RESIDENT_UNREACHED): S.ESCALATED,
    (S.CALLING, Event.CANNOT_CALL): S.ESCALATED,
    (S.ESCALATED, Event.ACK_OVERDUE): S.ESCALATED,
    (S.OPEN, Event.BUTTON_CANCELLED): S.CALLING,  # cancelled before anyone was told
    (S.ESCALATED, Event.BUTTON_CANCELLED): S.CALLING,  # follows the call already placed
    (S.ESCALATED, Event.RESIDENT_ANSWERED): S.ESCALATED,  # noted; the care manager decides
    (S.OPEN, Event.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.CALLING, Event.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.ESCALATED, Event.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, Event.RESOLVE): S.RESOLVED,
    (S.ESCALATED, Event.RESOLVE): S.RESOLVED,
    **{(state, Event.SEVERITY_RAISED): state for state in _OPEN_STATES},
    **{(state, Event.REASSIGN): state for state in _OPEN_STATES},  # who, never the step
    **{(state, Event.JOINED): state for state in _OPEN_STATES},
    (S.OPEN, Event.PRESSED_AGAIN): S.OPEN,  # its first step has not run: that step tells
    (S.CALLING, Event.PRESSED_AGAIN): S.ESCALATED,  # after a cancel: a real emergency after all
    (S.ESCALATED, Event.PRESSED_AGAIN): S.ESCALATED,  # told again
    (S.ACKNOWLEDGED, Event.PRESSED_AGAIN): S.ESCALATED,  # taken, then pressed again: told again
    **{(state, Event.ABSENCE_RECORDED): S.RESOLVED for state in _OPEN_STATES},
    **{(state, Event.SERVICE_ENDED): S.RESOLVED for state in _OPEN_STATES},
}


def next_state(state: AlertState, event: Event) -> AlertState:
    """The state after `event`, or IllegalTransition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def allowed_events(state: AlertState) -> list[Event]:
    """Events legal in `state` (what the dashboard may offer)."""
    return [event for (s, event) in TRANSITIONS if s is state]
