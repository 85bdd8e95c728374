"""What a check-in does after each call: pure, clock-injected, a table not branches.

watch_call is the watchdog rule for any check-in call with no result yet, shared by routine
rounds (calls.checkins) and alerts (alerts.policy.call_watch): calls may not import alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.domain import CallOutcome

# outcome -> (final round state, or None to retry; which retry budget applies)
OUTCOME_NEXT: dict[CallOutcome, tuple[str | None, str]] = {
    CallOutcome.OK: ("ok", ""),
    CallOutcome.UNWELL: ("unwell", ""),
    CallOutcome.HELP: ("help", ""),
    CallOutcome.EMERGENCY: ("emergency", ""),
    CallOutcome.NO_ANSWER: (None, "unanswered"),
    CallOutcome.BUSY: (None, "unanswered"),
    CallOutcome.FAILED: (None, "unanswered"),
    CallOutcome.VOICEMAIL: (None, "unanswered"),
    CallOutcome.CALL_BACK_LATER: (None, "unanswered"),
    CallOutcome.UNCLEAR: (None, "unclear"),
}


@dataclass(frozen=True, slots=True)
class CheckinPolicy:
    """Retries and timers of a routine round; a call the send queue holds for
    queue_wait_watchdogs x watchdog is cancelled and counts as not reached (see watch_call)."""

    retries: int = 2
    unclear_retries: int = 1
    retry_interval: timedelta = timedelta(minutes=10)
    watchdog: timedelta = timedelta(minutes=3)
    queue_wait_watchdogs: int = 3

    @property
    def max_queue_wait(self) -> timedelta:
        """How long a round's call may wait in the send queue before it counts as never dialled."""
        return self.watchdog * self.queue_wait_watchdogs


@dataclass(frozen=True, slots=True)
class Decision:
    """Either finish the round in `state`, or call again (attempt `attempt`) at `at`."""

    state: str | None
    attempt: int | None = None
    at: datetime | None = None


def decide(
    outcome: CallOutcome | None, attempts: int, now: datetime, policy: CheckinPolicy
) -> Decision:
    """The next step after call number `attempts` ended with `outcome` (None = never ended)."""
    final, budget = OUTCOME_NEXT[outcome or CallOutcome.NO_ANSWER]
    if final is not None:
        return Decision(final)
    retries = policy.unclear_retries if budget == "unclear" else policy.retries
    if attempts > retries:
        return Decision("unreached")
    return Decision(None, attempts + 1, now + policy.retry_interval)


@dataclass(frozen=True, slots=True)
class CallWatch:
    """What a watchdog does with a check-in call that has no result yet."""

    verdict: str  # "wait" (look again at `until`), "no_answer", or "never_dialled"
    until: datetime | None = None


def watch_call(
    waiting: bool,
    queued_at: datetime | None,
    dialled_at: datetime | None,
    now: datetime,
    watchdog: timedelta,
    max_queue_wait: timedelta,
) -> CallWatch:
    """The watchdog fired on a call with no result: wait while it is still in the send queue
    (up to max_queue_wait from when it was queued) or was dialled less than `watchdog` ago;
    past that, a dialled call with no result is no answer, a queued one was never dialled."""
    if waiting:
        if queued_at is None or now >= queued_at + max_queue_wait:
            return CallWatch("never_dialled")
        return CallWatch("wait", min(now + watchdog, queued_at + max_queue_wait))
    if dialled_at is not None and now < dialled_at + watchdog:
        return CallWatch("wait", dialled_at + watchdog)
    return CallWatch("no_answer")


def missed_before(now: datetime, tz: ZoneInfo, late_window: timedelta) -> datetime:
    """Slots before this moment are too late to call: their local day is over and they are
    more than `late_window` old. A slot found after an outage is called late if it is at or
    after this, and recorded as missed (never dropped) if it is before."""
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date(), time(0), tzinfo=tz)
    return min(now - late_window, midnight.astimezone(now.tzinfo))


def quiet_end(at: datetime, start: time | None, end: time | None, tz: ZoneInfo) -> datetime:
    """`at`, or the end of the resident's quiet hours (local, may wrap midnight) if inside them."""
    if start is None or end is None or start == end:
        return at
    local = at.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    inside = (t >= start or t < end) if start > end else (start <= t < end)
    if not inside:
        return at
    out = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if out <= local:
        out += timedelta(days=1)
    return out.astimezone(at.tzinfo)
