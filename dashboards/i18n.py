"""What care managers read, Korean first and English beside it; times in their time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from alerts.models import RESOLUTION_OUTCOMES, STATE_LABELS
from alerts.policy import OUTCOME_KO
from anbu.domain import AlertState, CallOutcome, Severity

LANGUAGES = ("ko", "en")
DEFAULT_LANGUAGE = "ko"

TEXTS: dict[str, tuple[str, str]] = {
    "app": ("안부 돌봄 알림", "anbu care alerts"),
    "login": ("로그인", "Log in"),
    "logout": ("로그아웃", "Log out"),
    "username": ("아이디", "Username"),
    "password": ("비밀번호", "Password"),
    "login_failed": (
        "아이디 또는 비밀번호가 올바르지 않습니다.",
        "The username or password is not correct.",
    ),
    "open_alerts": ("진행 중인 알림", "Open alerts"),
    "no_alerts": ("진행 중인 알림이 없습니다.", "There are no open alerts."),
    "severity": ("단계", "Severity"),
    "state": ("상태", "State"),
    "home": ("가구", "Home"),
    "resident": ("대상자", "Resident"),
    "reason": ("사유", "Reason"),
    "opened": ("발생 시각", "Opened"),
    "calls": ("안부전화", "Calls"),
    "alert": ("알림", "Alert"),
    "timeline": ("처리 기록", "Timeline"),
    "time": ("시각", "Time"),
    "actor": ("처리자", "By"),
    "change": ("변경", "Change"),
    "call_status": ("통화 상태", "Call status"),
    "call_outcome": ("응답", "Outcome"),
    "no_calls": ("걸린 전화가 없습니다.", "No calls were placed."),
    "notifications": ("담당자 알림 발송", "Care manager notifications"),
    "acknowledge": ("확인", "Acknowledge"),
    "resolve": ("종결", "Resolve"),
    "outcome": ("종결 사유", "Outcome"),
    "note": ("메모 (선택)", "Note (optional)"),
    "back": ("목록으로", "Back to list"),
    "refresh_note": ("30초마다 새로고침됩니다.", "Refreshes every 30 seconds."),
    "dong": ("담당 행정동", "Dong"),
    "not_found": ("알림을 찾을 수 없습니다.", "Alert not found."),
    "illegal": (
        "지금 상태에서는 할 수 없는 처리입니다. 화면을 새로고침해 주세요.",
        "That action is not possible in the alert's current state. Please reload.",
    ),
    "csrf": (
        "요청을 확인할 수 없습니다. 화면을 새로고침한 뒤 다시 시도해 주세요.",
        "The request could not be verified. Reload the page and try again.",
    ),
    "bad_outcome": ("알 수 없는 종결 사유입니다.", "Unknown outcome."),
    "no_actions": ("지금 할 수 있는 처리가 없습니다.", "No action is possible now."),
    "error": ("오류", "Error"),
    "system": ("시스템", "system"),
    "switch_language": ("English", "한국어"),
}

ACTORS: dict[str, tuple[str, str]] = {
    "system": ("시스템", "system"),
    "resident": ("대상자 응답", "resident"),
    "care_manager": ("담당자", "care manager"),
}


def pick(lang: str, pair: tuple[str, str]) -> str:
    """The Korean or English half of a (ko, en) pair."""
    return pair[1] if lang == "en" else pair[0]


def text(lang: str, key: str) -> str:
    """A fixed sentence of the web pages in `lang`."""
    return pick(lang, TEXTS[key])


def parse_language(value: str | None) -> str | None:
    """`value` when it names a supported language, else None."""
    return value if value in LANGUAGES else None


def severity_label(lang: str, severity: str) -> str:
    """관심/주의/심각, or watch/warning/critical."""
    level = Severity.parse(severity)
    return level.label if lang == "en" else level.korean


def state_label(lang: str, state: AlertState | str) -> str:
    return pick(lang, STATE_LABELS[AlertState(state)])


def outcome_label(lang: str, outcome: str | None) -> str:
    """A resolution outcome's words."""
    if outcome is None:
        return ""
    return pick(lang, RESOLUTION_OUTCOMES[outcome]) if outcome in RESOLUTION_OUTCOMES else outcome


def call_outcome_label(lang: str, outcome: str | None) -> str:
    """How a check-in call ended, in words ('—' while it is still going)."""
    if outcome is None:
        return "—"
    try:
        value = CallOutcome(outcome)
    except ValueError:
        return outcome
    return value.value.replace("_", " ") if lang == "en" else OUTCOME_KO[value]


def actor_label(lang: str, actor: str) -> str:
    """'care_manager:7' -> '담당자 #7'; never a name."""
    role, _, ident = actor.partition(":")
    words = pick(lang, ACTORS[role]) if role in ACTORS else role
    return f"{words} #{ident}" if ident else words


def local_time_formatter(timezone: str) -> Callable[[datetime | None], str]:
    """A formatter that shows stored UTC times in `timezone` (Asia/Seoul for people)."""
    zone = ZoneInfo(timezone)

    def local(moment: datetime | None) -> str:
        return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return local
