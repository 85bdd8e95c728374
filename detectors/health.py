"""Device health, kept apart from care: silent or offline sensors, low batteries, gateways down.

Device findings are for the technician (`device_silent`, `device_offline`, `battery_low`,
`gateway_offline`). While a home's data is missing (every gateway down, or every sensor
silent) the resident is not presumed fine: the home also gets the care finding
`unknown_status`, which calls the resident. Each sensor's cadence is learned from its own
history (the longest gap between readings in a window, stored in `anbu.sensor_cadence`);
without enough history a default per kind applies. Pure and clock-injected: the database side
is detectors.health_sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from anbu.domain import Severity
from detectors.site import SitePolicy

DEVICE_SILENT = "device_silent"
DEVICE_OFFLINE = "device_offline"
BATTERY_LOW = "battery_low"
GATEWAY_OFFLINE = "gateway_offline"
UNKNOWN_STATUS = "unknown_status"
SUPPRESSING_STATUSES = ("away", "hospital")

KIND_KO = {"door": "현관 문", "motion": "동작", "contact": "접촉", "appliance": "가전",
           "power": "전력 플러그"}  # fmt: skip
ROOM_KO = {"entrance": "현관", "living": "거실", "kitchen": "부엌", "bedroom": "침실",
           "bathroom": "욕실", "other": "기타"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Thresholds of device health, as data."""

    battery_low_pct: float = 15.0
    battery_repeat_days: float = 7.0  # a battery still low is reported again after this
    gateway_grace_s: float = 600.0  # an offline gateway waits this long (site detection first)
    gateway_stale_h: float = 24.0  # no message at all for this long: offline without a will
    silent_factor: float = 1.5  # silent after this many times the sensor's longest usual gap
    min_silent_h: float = 2.0
    max_silent_h: float = 72.0
    min_cadence_readings: int = 20  # fewer readings in the window: the default of its kind
    cadence_window_days: int = 14
    # until a sensor's own cadence is learned; plugs that report only on change are common
    default_silent_h: tuple[tuple[str, float], ...] = (
        ("door", 48.0), ("motion", 24.0), ("contact", 48.0), ("appliance", 48.0), ("power", 24.0),
    )  # fmt: skip
    site: SitePolicy = field(default_factory=SitePolicy)

    def __post_init__(self) -> None:
        if not 0 < self.min_silent_h <= self.max_silent_h:
            raise ValueError("health policy: 0 < min_silent_h <= max_silent_h")
        if self.silent_factor < 1 or self.gateway_grace_s < 0 or self.gateway_stale_h <= 0:
            raise ValueError("health policy: silent_factor >= 1, grace >= 0, stale > 0")


@dataclass(frozen=True, slots=True)
class SensorHealth:
    """A sensor's live state (sensor_state) and its learned cadence (sensor_cadence)."""

    sensor_id: int
    gateway_id: str
    vendor_id: str
    kind: str
    room: str
    last_reading_at: datetime | None
    battery: float | None = None
    online: bool | None = None
    max_gap_s: float | None = None
    readings: int = 0


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    """A gateway's liveness as ingest recorded it."""

    gateway_id: str
    online: bool | None
    status_changed_at: datetime | None
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class HomeHealth:
    """One home's devices and its resident's status."""

    resident_id: int
    home: str
    status: str
    status_until: datetime | None
    gateways: tuple[GatewayHealth, ...]
    sensors: tuple[SensorHealth, ...]


@dataclass(frozen=True, slots=True)
class HealthIssue:
    """One problem with one subject (a sensor, a gateway, or the home's data), since when."""

    kind: str
    severity: Severity
    subject: str
    since: datetime
    reason_ko: str
    reason_en: str
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Held:
    """An issue not raised, and why (a site incident, an away or hospital status)."""

    issue: HealthIssue
    why: str


def silent_after_s(sensor: SensorHealth, policy: HealthPolicy) -> float:
    """Seconds without a reading after which this sensor counts as silent."""
    if sensor.max_gap_s is not None and sensor.readings >= policy.min_cadence_readings:
        learned = policy.silent_factor * sensor.max_gap_s
        return min(max(learned, policy.min_silent_h * 3600), policy.max_silent_h * 3600)
    return dict(policy.default_silent_h).get(sensor.kind, policy.max_silent_h) * 3600


def gateway_down_since(
    gw: GatewayHealth, now: datetime, policy: HealthPolicy, grace: bool = True
) -> datetime | None:
    """When the gateway went down, if it is down at `now` (offline past the grace, or stale)."""
    if gw.online is False:
        since = gw.status_changed_at or gw.last_seen_at
        if since is None:
            return None
        wait = policy.gateway_grace_s if grace else 0.0
        return since if (now - since).total_seconds() >= wait else None
    if gw.last_seen_at is not None and now - gw.last_seen_at >= timedelta(
        hours=policy.gateway_stale_h
    ):
        return gw.last_seen_at
    return None


def assess_home(
    home: HomeHealth,
    now: datetime,
    policy: HealthPolicy,
    held_gateways: frozenset[str] = frozenset(),
) -> tuple[list[HealthIssue], list[Held]]:
    """The home's device issues at `now`, and those held back (with why)."""
    issues: list[HealthIssue] = []
    held: list[Held] = []
    down: dict[str, datetime] = {}
    for gw in home.gateways:
        since = gateway_down_since(gw, now, policy)
        if since is None:
            continue
        down[gw.gateway_id] = since
        issue = _gateway_issue(gw.gateway_id, since, now)
        if gw.gateway_id in held_gateways:
            held.append(Held(issue, "site_outage"))
        else:
            issues.append(issue)
    live = [s for s in home.sensors if s.gateway_id not in down]  # the gateway explains the rest
    missing = 0
    for s in live:
        silent = s.last_reading_at is not None and (
            (now - s.last_reading_at).total_seconds() > silent_after_s(s, policy)
        )
        if s.online is False:
            issues.append(_sensor_issue(DEVICE_OFFLINE, Severity.WARNING, s, now, policy))
        elif silent:
            issues.append(_sensor_issue(DEVICE_SILENT, Severity.WATCH, s, now, policy))
        missing += s.online is False or silent or s.last_reading_at is None
        if s.battery is not None and s.battery < policy.battery_low_pct:
            issues.append(_sensor_issue(BATTERY_LOW, Severity.WATCH, s, now, policy))
    unknown = _unknown_status(home, down, live, missing)
    if unknown is not None:
        if home.status in SUPPRESSING_STATUSES and home.status_until and home.status_until > now:
            held.append(Held(unknown, home.status))
        elif down and set(down) <= held_gateways and not live:
            held.append(Held(unknown, "site_outage"))
        else:
            issues.append(unknown)
    return issues, held


def merge(issues: Sequence[HealthIssue]) -> HealthIssue:
    """Issues of one home and kind as one finding: the worst severity, every subject listed."""
    first = max(issues, key=lambda i: (i.severity, -i.since.timestamp()))
    if len(issues) == 1:
        return first
    others = len(issues) - 1
    return HealthIssue(
        first.kind,
        first.severity,
        first.subject,
        min(i.since for i in issues),
        f"{first.reason_ko} 외 {others}건",
        f"{first.reason_en} (+{others} more)",
        {**first.details, "items": [i.details for i in issues]},
    )


def _gateway_issue(gateway_id: str, since: datetime, now: datetime) -> HealthIssue:
    hours = _hours(now - since)
    return HealthIssue(
        GATEWAY_OFFLINE,
        Severity.WARNING,
        f"gateway:{gateway_id}",
        since,
        f"게이트웨이 연결이 {hours[0]} 끊겨 있습니다",
        f"Gateway offline for {hours[1]}",
        {"gateway": gateway_id, "since": since.isoformat()},
    )


def _sensor_issue(
    kind: str, severity: Severity, s: SensorHealth, now: datetime, policy: HealthPolicy
) -> HealthIssue:
    name_ko = f"{ROOM_KO.get(s.room, s.room)} {KIND_KO.get(s.kind, s.kind)} 센서"
    name_en = f"{s.room} {s.kind} sensor"
    details: dict[str, Any] = {"sensor_id": s.sensor_id, "gateway": s.gateway_id,
                               "vendor_id": s.vendor_id, "sensor_kind": s.kind}  # fmt: skip
    since = s.last_reading_at or now
    if kind == BATTERY_LOW:
        since = now - timedelta(days=policy.battery_repeat_days)
        pct = round(s.battery or 0.0)
        ko, en = f"{name_ko} 배터리가 {pct}%입니다", f"{name_en} battery at {pct} %"
        details["battery"] = s.battery
    elif kind == DEVICE_OFFLINE:
        ko, en = f"{name_ko}가 오프라인입니다", f"{name_en} reports offline"
    else:
        usual = silent_after_s(s, policy) / 3600
        hours = _hours(now - since)
        ko = f"{name_ko}가 {hours[0]}째 신호가 없습니다 (평소 최대 {usual:.0f}시간)"
        en = f"{name_en} silent for {hours[1]} (expected within {usual:.0f} h)"
        details["silent_after_h"] = round(usual, 2)
    if s.last_reading_at is not None:
        details["last_reading_at"] = s.last_reading_at.isoformat()
    return HealthIssue(kind, severity, f"sensor:{s.sensor_id}", since, ko, en, details)


def _unknown_status(
    home: HomeHealth, down: dict[str, datetime], live: list[SensorHealth], missing: int
) -> HealthIssue | None:
    """The home's data is missing: every gateway down, or every live sensor silent."""
    all_down = bool(home.gateways) and len(down) == len(home.gateways)
    all_silent = bool(live) and missing == len(live)
    if not (all_down or all_silent):
        return None
    last = [s.last_reading_at for s in home.sensors if s.last_reading_at is not None]
    if not last and not down:
        return None  # never heard from: not installed yet
    since = max(last) if last else max(down.values())
    why = "gateway_offline" if all_down else "sensors_silent"
    return HealthIssue(
        UNKNOWN_STATUS,
        Severity.WARNING,
        "home",
        since,
        "데이터가 없어 상태를 알 수 없습니다. 안부전화로 확인합니다",
        "No data: status unknown; a check-in call will confirm",
        {"why": why, "last_data_at": since.isoformat()},
    )


def _hours(delta: timedelta) -> tuple[str, str]:
    h = delta.total_seconds() / 3600
    if h < 1:
        m = max(1, round(h * 60))
        return f"{m}분", f"{m} min"
    return f"{h:.0f}시간", f"{h:.0f} h"
