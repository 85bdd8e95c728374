"""The escalation policy: timings and the ladder are data, not branches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from anbu.config import Settings
from anbu.domain import CallOutcome


@dataclass(frozen=True, slots=True)
class LadderStep:
    """Who is told at one level of escalation."""

    level: int
    roles: tuple[str, ...]
    label_ko: str


LADDER: tuple[LadderStep, ...] = (
    LadderStep(0, ("manager",), "동 담당 복지사"),
    LadderStep(1, ("manager", "supervisor"), "구 통합돌봄 담당"),
    LadderStep(2, ("manager", "supervisor", "admin"), "관리자 (가족·119 안내)"),
)


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """How long to wait at each step."""

    call_retries: int = 2
    retry_interval: timedelta = timedelta(minutes=10)
    call_watchdog: timedelta = timedelta(minutes=3)
    ack_timeout: timedelta = timedelta(minutes=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> EscalationPolicy:
        return cls(
            call_retries=settings.call_retries,
            retry_interval=timedelta(minutes=settings.call_retry_minutes),
            call_watchdog=timedelta(
                seconds=max(settings.call_watchdog_s, settings.call_ring_timeout_s)
            ),
            ack_timeout=timedelta(minutes=settings.ack_timeout_minutes),
        )

    def step(self, level: int) -> LadderStep:
        return LADDER[min(level, len(LADDER) - 1)]


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


TOP_LEVEL = len(LADDER) - 1

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
