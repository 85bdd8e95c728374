"""The fixed-rule inactivity scorer: graded severity from the hours since a home's last activity.

Pure and clock-injected: every function takes `now` (or epoch seconds) and the state; nothing
here reads the clock, the database or the settings. Thresholds are data (`InactivityPolicy`).
A later learned-routine scorer will sit beside this one; the fixed rule stays its ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core.domain import Finding, Severity

if TYPE_CHECKING:
    from core.config import Settings

KIND = "inactivity"
HOUR_S = 3600.0
NO_SEVERITY = 0  # the level the vectorised scorer reports for "nothing to say"


@dataclass(frozen=True, slots=True)
class InactivityPolicy:
    """Hours of silence at which each severity is reached, and how open intervals count."""

    watch_hours: float = 6.0
    warning_hours: float = 12.0
    critical_hours: float = 24.0
    open_hold_hours: float = 12.0
    timezone: str = "Asia/Seoul"

    def __post_init__(self) -> None:
        hours = (self.watch_hours, self.warning_hours, self.critical_hours)
        if not 0 < hours[0] < hours[1] < hours[2]:
            raise ValueError(f"inactivity thresholds must rise strictly above 0, got {hours}")
        if self.open_hold_hours < 0:
            raise ValueError("open_hold_hours must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings) -> InactivityPolicy:
        """The policy configured by ANBU_INACTIVITY_* settings."""
        return cls(
            watch_hours=settings.inactivity_watch_hours,
            warning_hours=settings.inactivity_warning_hours,
            critical_hours=settings.inactivity_critical_hours,
            open_hold_hours=settings.inactivity_open_hold_hours,
            timezone=settings.timezone,
        )

    @property
    def thresholds(self) -> tuple[tuple[Severity, float], ...]:
        """(severity, seconds of silence) in rising order."""
        return (
            (Severity.WATCH, self.watch_hours * HOUR_S),
            (Severity.WARNING, self.warning_hours * HOUR_S),
            (Severity.CRITICAL, self.critical_hours * HOUR_S),
        )

    def severity_for(self, silence_s: float) -> Severity | None:
        """The highest severity whose threshold `silence_s` has reached, or None."""
        reached = None
        for severity, seconds in self.thresholds:
            if silence_s >= seconds:
                reached = severity
        return reached


@dataclass(frozen=True, slots=True)
class InactivityScore:
    """How long a home has been silent at `now`, how bad that is, and why (Korean first)."""

    silence: timedelta
    severity: Severity | None
    last_activity: datetime
    now: datetime
    reason_ko: str
    reason_en: str


def score_inactivity(
    last_activity: datetime | None, now: datetime, policy: InactivityPolicy
) -> InactivityScore | None:
    """Score one home; None when it has no activity on record (nothing to measure from).

    A clock behind the last activity (gateway clock skew, a replay jumping back) is no silence.
    """
    if last_activity is None:
        return None
    if last_activity.tzinfo is None or now.tzinfo is None:
        raise ValueError("score_inactivity needs aware datetimes")
    silence = max(now - last_activity, timedelta(0))
    severity = policy.severity_for(silence.total_seconds())
    reason_ko, reason_en = describe(silence, last_activity, now, policy)
    return InactivityScore(silence, severity, last_activity, now, reason_ko, reason_en)


def describe(
    silence: timedelta, last_activity: datetime, now: datetime, policy: InactivityPolicy
) -> tuple[str, str]:
    """The reason a person reads, in Korean and English, with local (policy) times."""
    zone = ZoneInfo(policy.timezone)
    last = last_activity.astimezone(zone)
    same_day = last.date() == now.astimezone(zone).date()
    hours = _hours_text(silence.total_seconds())
    when_ko = f"{last:%H:%M}" if same_day else f"{last:%m-%d %H:%M}"
    ko = f"{hours}시간째 움직임이 없습니다 (마지막 활동 {when_ko})"
    en = f"No activity for {hours} h (last {when_ko})"
    return ko, en


def _hours_text(seconds: float) -> str:
    """Whole hours when whole (as care managers say them), else one decimal, rounded down."""
    tenths = int(seconds // 360)
    return str(tenths // 10) if tenths % 10 == 0 else f"{tenths / 10:.1f}"


def to_finding(home: str, score: InactivityScore) -> Finding:
    """The finding a scored home raises at `score.now`; the score must carry a severity."""
    if score.severity is None:
        raise ValueError("a score below the watch threshold raises no finding")
    details: dict[str, Any] = {
        "rule": "fixed",
        "silence_s": round(score.silence.total_seconds()),
        "last_activity_at": score.last_activity.astimezone(UTC).isoformat(),
    }
    return Finding(
        home=home,
        kind=KIND,
        severity=score.severity,
        raised_at=score.now,
        reason_ko=score.reason_ko,
        reason_en=score.reason_en,
        details=details,
    )


def severity_levels(
    last_activity_s: npt.ArrayLike, now_s: npt.ArrayLike, policy: InactivityPolicy
) -> npt.NDArray[np.int8]:
    """Vectorised `score_inactivity(...).severity` over epoch seconds (NaN = no activity).

    Returns the Severity value per home, NO_SEVERITY (0) where there is nothing to raise.
    `now_s` may be one moment for all homes (the sweep) or one per home (offline replay).
    """
    last = np.asarray(last_activity_s, dtype=np.float64)
    now = np.asarray(now_s, dtype=np.float64)
    silence = np.maximum(now - last, 0.0)  # NaN stays NaN and compares False below
    levels = np.zeros(np.broadcast(last, now).shape, dtype=np.int8)
    for severity, seconds in policy.thresholds:
        levels[silence >= seconds] = severity.value
    return levels
