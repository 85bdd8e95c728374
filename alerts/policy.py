"""The escalation policy: timings and the ladder are data, not branches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from calls.checkin_policy import CallWatch, watch_call
from core.config import Settings
from core.domain import CallOutcome


@dataclass(frozen=True, slots=True)
class LadderStep:
    """Who is told at one level of escalation."""

    level: int
    roles: tuple[str, ...]
    label_ko: str


LADDER: tuple[LadderStep, ...] = (
    LadderStep(0, ("manager",), "동 케어매니저"),
    LadderStep(1, ("manager", "supervisor"), "구 통합돌봄 담당"),
    LadderStep(2, ("manager", "supervisor", "admin"), "관리자 (가족·119 안내)"),
)


TOP_LEVEL = len(LADDER) - 1


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """How long to wait at each step.

    call_watchdog counts from when the check-in call was dialled, not queued; a call the send
    queue holds for queue_wait_watchdogs x call_watchdog is given up as never dialled and the
    care manager is told (see call_watch). Once the top of the ladder has been told, it is told
    again while nobody acknowledges, after top_repeats[i] x ack_timeout for the i-th repeat,
    and then no more: the alert stays escalated on the dong's dashboard (see wait_after).
    """

    call_retries: int = 2
    retry_interval: timedelta = timedelta(minutes=10)
    call_watchdog: timedelta = timedelta(minutes=3)
    ack_timeout: timedelta = timedelta(minutes=30)
    queue_wait_watchdogs: int = 3
    top_repeats: tuple[int, ...] = (1, 2, 4)  # 30 min, then 1 h, then 2 h at the defaults
    button_cancel_grace: timedelta = timedelta(minutes=2)  # a cancel press turns it to a call

    @classmethod
    def from_settings(cls, settings: Settings) -> EscalationPolicy:
        return cls(
            call_retries=settings.call_retries,
            retry_interval=timedelta(minutes=settings.call_retry_minutes),
            call_watchdog=timedelta(
                seconds=max(settings.call_watchdog_s, settings.call_ring_timeout_s)
            ),
            ack_timeout=timedelta(minutes=settings.ack_timeout_minutes),
            button_cancel_grace=timedelta(seconds=settings.button_cancel_grace_s),
        )

    def step(self, level: int) -> LadderStep:
        """Who is told at `level`; levels past the top (its repeats) tell the top step."""
        return LADDER[min(level, TOP_LEVEL)]

    @property
    def max_queue_wait(self) -> timedelta:
        """How long a check-in call may wait in the send queue before it counts as never dialled."""
        return self.call_watchdog * self.queue_wait_watchdogs

    def wait_after(self, level: int) -> timedelta | None:
        """How long to wait for an acknowledgement after telling `level` before telling the
        next; None after the last repeat at the top: the reminders stop there.

        escalation_level counts past TOP_LEVEL: TOP_LEVEL + i is the top's i-th repeat (which
        also keeps each repeat's voice call to a care manager under its own idempotency key).
        """
        repeat = level - TOP_LEVEL
        if repeat < 0:
            return self.ack_timeout
        if repeat < len(self.top_repeats):
            return self.ack_timeout * self.top_repeats[repeat]
        return None

    def repeat_of(self, level: int) -> int:
        """Which repeat at the top `level` is (0 below the top and for its first telling)."""
        return max(0, level - TOP_LEVEL)


def call_watch(
    waiting: bool,
    queued_at: datetime | None,
    dialled_at: datetime | None,
    now: datetime,
    policy: EscalationPolicy,
) -> CallWatch:
    """The alert's watchdog on a check-in call with no result: calls.checkin_policy.watch_call
    (the rule routine rounds share) with the escalation policy's timings."""
    return watch_call(
        waiting, queued_at, dialled_at, now, policy.call_watchdog, policy.max_queue_wait
    )


# What a call's outcome means for the alert. Anything not OK is never reassurance.
# (AlertService._after_call reads this: "ok" resolves, "help" escalates, others retry.)
OUTCOME_MEANING: dict[CallOutcome, str] = {
    CallOutcome.OK: "ok",
    CallOutcome.HELP: "help",
    CallOutcome.UNWELL: "help",  # reaches the care manager, not an emergency
    CallOutcome.EMERGENCY: "help",  # see OUTCOME_RULES: at once, at the top of the ladder
    CallOutcome.NO_ANSWER: "unanswered",
    CallOutcome.BUSY: "unanswered",
    CallOutcome.FAILED: "unanswered",
    CallOutcome.VOICEMAIL: "unanswered",
    CallOutcome.CALL_BACK_LATER: "unanswered",
    CallOutcome.UNCLEAR: "unanswered",
}


@dataclass(frozen=True, slots=True)
class OutcomeRule:
    """What an alert does after a check-in call ended this way."""

    meaning: str  # "ok" resolves, "help" escalates, "unanswered" retries then escalates
    retries: int | None = None  # retries before "unreached"; None = the policy's call_retries
    level: int = 0  # ladder level when this outcome escalates


OUTCOME_RULES: dict[CallOutcome, OutcomeRule] = {
    CallOutcome.OK: OutcomeRule("ok"),
    CallOutcome.HELP: OutcomeRule("help"),
    CallOutcome.UNWELL: OutcomeRule("help"),
    CallOutcome.EMERGENCY: OutcomeRule("help", level=TOP_LEVEL),
    CallOutcome.NO_ANSWER: OutcomeRule("unanswered"),
    CallOutcome.BUSY: OutcomeRule("unanswered"),
    CallOutcome.FAILED: OutcomeRule("unanswered"),
    CallOutcome.VOICEMAIL: OutcomeRule("unanswered"),
    CallOutcome.CALL_BACK_LATER: OutcomeRule("unanswered"),
    CallOutcome.UNCLEAR: OutcomeRule("unanswered", retries=1),
}


def after_call(outcome: CallOutcome, attempts: int, policy: EscalationPolicy) -> tuple[str, int]:
    """("resolve" | "escalate" | "retry", ladder level) after call number `attempts`."""
    rule = OUTCOME_RULES[outcome]
    if rule.meaning == "ok":
        return "resolve", 0
    if rule.meaning == "help":
        return "escalate", rule.level
    retries = policy.call_retries if rule.retries is None else rule.retries
    return ("escalate", rule.level) if attempts > retries else ("retry", 0)


OUTCOME_KO: dict[CallOutcome, str] = {
    CallOutcome.OK: "괜찮다고 응답",
    CallOutcome.HELP: "도움 요청",
    CallOutcome.UNWELL: "몸이 좋지 않다고 응답",
    CallOutcome.EMERGENCY: "응급 상황",
    CallOutcome.NO_ANSWER: "받지 않음",
    CallOutcome.BUSY: "통화 중",
    CallOutcome.FAILED: "연결 실패",
    CallOutcome.VOICEMAIL: "음성사서함",
    CallOutcome.CALL_BACK_LATER: "나중에 통화 요청",
    CallOutcome.UNCLEAR: "응답 불분명",
}
