"""Which findings call the resident, and when a call may be placed: data, not branches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.domain import SAFETY_KINDS, Severity

CARE, TECHNICIAN = "care", "technician"  # the two queues an alert can be in


@dataclass(frozen=True, slots=True)
class Route:
    """What an alert of one kind does."""

    call_resident: bool
    label_ko: str
    label_en: str
    escalate_now: bool = False  # the resident already spoke: straight to the care manager
    queue: str = CARE  # whose queue its alert is in: the care manager's, or the technician's


# Kinds are matched by prefix, first match wins. Device, site and routine findings are for
# the technician or the weekly review: they never ring a resident, and device and site
# findings are the technician's queue, never the care queue (migration 0077 has the same list).
# "Not up" and "not back" are gentler care findings (watch, then warning): a check-in call
# like inactivity's, held through quiet hours, the care manager only if it goes unanswered;
# so is a long stay in the bathroom (watch; inactivity's own levels follow if it goes on).
ROUTES: tuple[tuple[str, Route], ...] = (
    ("help_request", Route(False, "대상자 도움 요청", "resident asked for help", True)),
    # safety devices (issue 20): the care manager and a check-in call to the resident at once
    ("help_button", Route(True, "응급호출기 호출", "emergency button pressed", True)),
    ("fire_alarm", Route(True, "화재 감지기 경보", "smoke or fire alarm", True)),
    ("gas_alarm", Route(True, "가스·일산화탄소 경보", "gas or carbon monoxide alarm", True)),
    ("water_leak", Route(True, "누수 감지", "water leak")),
    ("button_cancel", Route(False, "응급호출 취소", "emergency call cancelled")),
    ("alarm_test", Route(False, "감지기 시험 작동", "detector test", queue=TECHNICIAN)),
    ("checkin_emergency", Route(False, "안부전화 응급", "emergency on a check-in", True)),
    ("checkin_help", Route(False, "안부전화 도움 요청", "help asked on a check-in", True)),
    ("checkin_unwell", Route(False, "안부전화 중 몸 불편 호소", "unwell on a check-in", True)),
    (
        "checkin_unreached",
        Route(False, "정기 안부전화 연락 두절", "routine calls unreached", True),
    ),
    ("voice_message", Route(False, "대상자 음성 메시지", "resident's voice message")),
    ("device", Route(False, "기기 점검", "device check", queue=TECHNICIAN)),
    ("gateway", Route(False, "게이트웨이 점검", "gateway check", queue=TECHNICIAN)),
    ("battery", Route(False, "배터리 교체", "battery replacement", queue=TECHNICIAN)),
    ("site", Route(False, "지역 장애", "site outage", queue=TECHNICIAN)),
    ("routine", Route(False, "생활 변화 검토", "routine review")),
    ("night", Route(False, "야간 활동 검토", "night activity review")),
    ("not_up", Route(True, "기상 확인", "not up this morning")),
    ("not_back", Route(True, "외출 후 미귀가 확인", "not back from an outing")),
    ("bathroom", Route(True, "욕실 장시간 머묾 확인", "long stay in the bathroom")),
    ("", Route(True, "안부 확인", "check on the resident")),
)


# A cancel press never opens an alert of its own: it speaks to the open alert of this kind.
CANCELS: dict[str, str] = {"button_cancel": "help_button"}

# Findings of one resident that are one emergency: whichever comes second within JOIN_WINDOW of
# the first joins its open alert (its timeline, its severity), never a second alert or call round.
JOIN_WINDOW = timedelta(minutes=10)
JOINED_KINDS: tuple[frozenset[str], ...] = (frozenset({"help_request", "help_button"}),)

# What the care manager reads first on the alert's page and in its message: (Korean, English).
FIRST_ADVICE: dict[str, tuple[str, str]] = {
    "help_button": ("대상자와 통화가 안 되면 바로 119에 신고하세요",
                    "If the resident cannot be reached, call 119 now"),
    "fire_alarm": ("화재 의심: 119에 먼저 신고하세요", "Possible fire: call 119 first"),
    "gas_alarm": ("가스·일산화탄소 누출 의심: 119에 먼저 신고하세요",
                  "Possible gas or CO leak: call 119 first"),
}  # fmt: skip


def spoken_to_manager(alert_id: int, kind: str, severity_ko: str, dong_name: str | None) -> str:
    """What a care manager's alert call says: fixed spoken sentences with the severity, the
    dong and the cause in the programme's words, the first advice where there is one, and the
    alert's number to find it by. Never the log text (hours with decimals, brackets, codes)
    nor a name or a phone number."""
    where = f"{dong_name} 대상자 댁" if dong_name else "대상자 댁"
    advice = FIRST_ADVICE.get(kind)
    label = route_for(kind).label_ko.replace("·", " 또는 ")  # the dot is read aloud
    said = f"{severity_ko} 알림입니다. {where}, {label}입니다."
    if advice is not None:
        said += f" {advice[0]}."
    return f"{said} 알림 번호는 {alert_id}번입니다."


def join_partners(kind: str) -> frozenset[str]:
    """The other kinds whose open alert a finding of `kind` joins (empty: it opens its own)."""
    for group in JOINED_KINDS:
        if kind in group:
            return group - {kind}
    return frozenset()


def route_for(kind: str) -> Route:
    """The route of an alert kind."""
    for prefix, route in ROUTES:
        if kind.startswith(prefix):
            return route
    raise AssertionError("the empty prefix matches every kind")


def quiet_hours_end(
    now: datetime, quiet_start: time | None, quiet_end: time | None, tz: ZoneInfo
) -> datetime | None:
    """When the resident's quiet hours end, if `now` falls inside them; else None.

    Quiet hours are local wall-clock times and may wrap midnight (22:00-07:00).
    """
    if quiet_start is None or quiet_end is None or quiet_start == quiet_end:
        return None
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    wraps = quiet_start > quiet_end
    inside = (t >= quiet_start or t < quiet_end) if wraps else (quiet_start <= t < quiet_end)
    if not inside:
        return None
    end = local.replace(hour=quiet_end.hour, minute=quiet_end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(now.tzinfo)


def holds_for_quiet_hours(severity: Severity) -> bool:
    """Quiet hours hold every call but a critical alert's."""
    return severity < Severity.CRITICAL


_SAFETY_SENSORS = frozenset(k.value for k in SAFETY_KINDS)


def queue_of(kind: str, details: Mapping[str, Any]) -> str:
    """Whose queue an alert of `kind` is in: its route's, except that a safety device's
    (emergency button, smoke, gas, CO or water detector) being offline, silent or flat stays
    the care manager's: the resident's way to call for help may be broken, which changes what
    they do (a detector's test press stays the technician's)."""
    route = route_for(kind)
    safety = details.get("sensor_kind") in _SAFETY_SENSORS
    if route.queue == TECHNICIAN and safety and not kind.startswith("alarm_test"):
        return CARE
    return route.queue
