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
OUTCOME_MEANING: dict[CallOutcome, str] = {
    CallOutcome.OK: "ok",
    CallOutcome.HELP: "help",
    CallOutcome.NO_ANSWER: "unanswered",
    CallOutcome.BUSY: "unanswered",
    CallOutcome.FAILED: "unanswered",
    CallOutcome.VOICEMAIL: "unanswered",
    CallOutcome.UNCLEAR: "unanswered",
}

OUTCOME_KO: dict[CallOutcome, str] = {
    CallOutcome.OK: "괜찮다고 응답",
    CallOutcome.HELP: "도움 요청",
    CallOutcome.NO_ANSWER: "받지 않음",
    CallOutcome.BUSY: "통화 중",
    CallOutcome.FAILED: "연결 실패",
    CallOutcome.VOICEMAIL: "음성사서함",
    CallOutcome.UNCLEAR: "응답 불분명",
}
