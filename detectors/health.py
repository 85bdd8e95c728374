"""Device health, kept apart from care: silent or offline sensors, low batteries, gateways down.

Device findings are for the technician (`device_silent`, `device_offline`, `battery_low`,
`gateway_offline`). While a home's data is missing (every gateway down, or every sensor
silent) the resident is not presumed fine: the home also gets the care finding
`unknown_status`, which calls the resident. Each sensor's cadence is learned from its own
history (the longest gap between readings in a window, stored in `anbu.sensor_cadence`), only
once that history spans a week (nights, a weekend); until then a default per kind applies.

A device finding means the device probably needs attention. A heartbeat sensor (a plug
reporting on its own) is silent past its cadence. A safety device (an emergency button, a fire,
gas, CO or leak detector, a tamper sensor) is rarely used, so only its heartbeat, battery or availability messages say
it still works: no message of any kind for `safety_silent_h` (24 h), whatever the home does, or
reported unavailable, is a device finding; that its alarm state never changes is no fault. An event-driven sensor (door, contact,
motion, appliance) reports only when someone uses it, so its silence is mostly the resident's
behaviour: it is a device finding only past a floor of its kind, while other sensors show
that someone is at home and active now, and not right after someone came in (the rooms they
have not passed yet are not faults). A silence the whole home shares is for care detectors
and `unknown_status`. Pure and clock-injected: the database side is detectors.health_sweep.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from core.domain import SAFETY_KINDS, Severity
from detectors.site import SitePolicy

DEVICE_SILENT = "device_silent"
DEVICE_OFFLINE = "device_offline"
BATTERY_LOW = "battery_low"
GATEWAY_OFFLINE = "gateway_offline"
GATEWAY_CLOCK = "gateway_clock"
UNKNOWN_STATUS = "unknown_status"
SUPPRESSING_STATUSES = ("away", "hospital")
_SAFETY = frozenset(k.value for k in SAFETY_KINDS)  # their messages say nothing of the person

# what a person calls the device and its place: "현관 문 센서", "bedroom motion sensor"
KIND_KO = {"door": "문 센서", "motion": "동작 센서", "contact": "접촉 센서",
           "appliance": "가전 센서", "power": "전력 플러그",
           "button": "응급호출기", "smoke": "화재 감지기", "gas": "가스 감지기",
           "co": "일산화탄소 감지기", "water_leak": "누수 감지기",
           "tamper": "분리 감지 센서"}  # fmt: skip
KIND_EN = {"door": "door sensor", "motion": "motion sensor", "contact": "contact sensor",
           "appliance": "appliance sensor", "power": "power plug",
           "button": "emergency call button", "smoke": "smoke (fire) detector",
           "gas": "gas detector", "co": "carbon monoxide detector",
           "water_leak": "water leak detector", "tamper": "tamper sensor"}  # fmt: skip
ROOM_KO = {"entrance": "현관", "living": "거실", "kitchen": "부엌", "bedroom": "침실",
           "bathroom": "욕실", "other": "기타"}  # fmt: skip
ROOM_EN = {"entrance": "entrance", "living": "living room", "kitchen": "kitchen",
           "bedroom": "bedroom", "bathroom": "bathroom", "other": "other"}  # fmt: skip


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
    min_cadence_days: float = 7.0  # a cadence is learned only from history this long
    # until a sensor's own cadence is learned; plugs that report only on change are common
    default_silent_h: tuple[tuple[str, float], ...] = (
        ("door", 48.0), ("motion", 24.0), ("contact", 48.0), ("appliance", 48.0), ("power", 24.0),
    )  # fmt: skip
    heartbeat_kinds: tuple[str, ...] = ("power",)  # report on a cadence by themselves
    # the other kinds report only when used: their silence is a device finding only past
    # (kind, this once the sensor's own cadence is learned, this until then)
    event_silent_h: tuple[tuple[str, float, float], ...] = (
        ("door", 168.0, 168.0), ("motion", 24.0, 72.0), ("contact", 168.0, 168.0),
        ("appliance", 168.0, 168.0),
    )  # fmt: skip
    # safety devices: rarely used, heard through heartbeats, battery and availability only;
    # silent after this long whatever the home does (no learned cadence, no home activity)
    safety_kinds: tuple[str, ...] = ("button", "smoke", "gas", "co", "water_leak", "tamper")
    safety_silent_h: float = 24.0
    presence_kinds: tuple[str, ...] = ("motion", "contact", "appliance")  # someone is inside
    entrance_kinds: tuple[str, ...] = ("door",)  # someone came in or went out
    active_peers: int = 1  # other presence sensors heard within active_within_h: home active
    active_within_h: float = 1.0
    settle_h: float = 6.0  # after the entrance door, the home is not judged for this long
    # a gateway's clock (learned nightly): off this far behind or ahead, or its readings
    # refused as from the future (ingest's tolerance: 300 s) in this many hours of the day,
    # two nights running; no longer off once within clock_clear_s
    clock_behind_s: float = 300.0
    clock_ahead_s: float = 120.0  # ahead is near refusal: ingest refuses past 300 s
    clock_clear_s: float = 60.0
    clock_refused_hours: int = 3
    clock_nights: int = 2
    clock_min_hours: int = 6  # hours of a day with readings that learning a clock needs
    clock_system_gateways: int = 10  # with this many, most off the same way: the database's
    site: SitePolicy = field(default_factory=SitePolicy)

    def __post_init__(self) -> None:
        if not 0 < self.min_silent_h <= self.max_silent_h:
            raise ValueError("health policy: 0 < min_silent_h <= max_silent_h")
        if self.silent_factor < 1 or self.gateway_grace_s < 0 or self.gateway_stale_h <= 0:
            raise ValueError("health policy: silent_factor >= 1, grace >= 0, stale > 0")
        if self.min_cadence_days > self.cadence_window_days or self.min_cadence_days < 0:
            raise ValueError("health policy: 0 <= min_cadence_days <= cadence_window_days")
        if self.active_peers < 1 or self.active_within_h <= 0 or self.settle_h < 0:
            raise ValueError("health policy: active_peers >= 1, active_within_h > 0, settle >= 0")
        if self.safety_silent_h <= 0:
            raise ValueError("health policy: safety_silent_h > 0")


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
    clock_lag_s: float | None = None  # learned nightly: + behind (or late), - ahead
    clock_off_since: datetime | None = None  # off since (two nights running)
    clock_refused: bool = False  # its readings refused as from the future


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


def learn_cadence(
    times: Iterable[float], at: float, policy: HealthPolicy
) -> tuple[float | None, int]:
    """(longest gap, readings) of a sensor's reading times (epoch s) in the window before `at`.

    The gap is None until the sensor's history in the window spans `min_cadence_days`: a day or
    two has not seen a night alone, a weekend or an outing. `learn_cadences` does this in SQL.
    """
    lo = at - policy.cadence_window_days * 86400.0
    w = sorted(t for t in times if lo <= t < at)
    if len(w) < 2 or at - w[0] < policy.min_cadence_days * 86400.0:
        return None, len(w)
    return max(b - a for a, b in pairwise(w)), len(w)


def cadence_learned(sensor: SensorHealth, policy: HealthPolicy) -> bool:
    """Whether the sensor's own cadence is known (else the default of its kind applies)."""
    return sensor.max_gap_s is not None and sensor.readings >= policy.min_cadence_readings


def silent_after_s(sensor: SensorHealth, policy: HealthPolicy) -> float:
    """Seconds without a reading after which this sensor counts as silent (its data missing)."""
    if is_safety(sensor.kind, policy):
        return policy.safety_silent_h * 3600
    if sensor.max_gap_s is not None and cadence_learned(sensor, policy):
        learned = policy.silent_factor * sensor.max_gap_s
        return min(max(learned, policy.min_silent_h * 3600), policy.max_silent_h * 3600)
    return dict(policy.default_silent_h).get(sensor.kind, policy.max_silent_h) * 3600


def is_safety(kind: str, policy: HealthPolicy) -> bool:
    """Whether this kind is a safety device known alive only by its heartbeats (a button,
    a fire, gas, CO or leak detector, a tamper sensor)."""
    return kind in policy.safety_kinds


def is_heartbeat(kind: str, policy: HealthPolicy) -> bool:
    """Whether sensors of this kind report on a cadence by themselves (else only when used)."""
    return kind in policy.heartbeat_kinds or is_safety(kind, policy)


def device_silent_after_s(sensor: SensorHealth, policy: HealthPolicy) -> float:
    """Seconds without a reading after which the silence may be the device's fault."""
    own = silent_after_s(sensor, policy)
    if is_heartbeat(sensor.kind, policy):
        return own
    rule = {k: (learned, grace) for k, learned, grace in policy.event_silent_h}
    learned, grace = rule.get(sensor.kind, (policy.max_silent_h, policy.max_silent_h))
    return max(own, (learned if cadence_learned(sensor, policy) else grace) * 3600)


def home_active_without(
    sensor: SensorHealth, home: Sequence[SensorHealth], now: datetime, policy: HealthPolicy
) -> bool:
    """Someone is at home and active now, seen by other sensors: not just come in the door."""
    recent = now - timedelta(hours=policy.active_within_h)
    settled = now - timedelta(hours=policy.settle_h)
    peers = 0
    for p in home:
        if p.sensor_id == sensor.sensor_id or p.last_reading_at is None:
            continue
        if p.kind in policy.entrance_kinds and p.last_reading_at > settled:
            return False  # someone came in (or went out) lately: not every room is passed yet
        peers += p.kind in policy.presence_kinds and p.last_reading_at >= recent
    return peers >= policy.active_peers


def device_silent(
    sensor: SensorHealth, home: Sequence[SensorHealth], now: datetime, policy: HealthPolicy
) -> bool:
    """Whether the sensor's silence at `now` is a device finding (it probably needs a look)."""
    if sensor.last_reading_at is None:
        return False
    quiet = (now - sensor.last_reading_at).total_seconds()
    if quiet <= device_silent_after_s(sensor, policy):
        return False
    return is_heartbeat(sensor.kind, policy) or home_active_without(sensor, home, now, policy)


def sensor_name(kind: str, room: str) -> tuple[str, str]:
    """What people call the sensor, in Korean and English: "현관 문 센서", "kitchen motion sensor"."""
    ko = f"{ROOM_KO.get(room, room)} {KIND_KO.get(kind, f'{kind} 센서')}"
    en = f"{ROOM_EN.get(room, room)} {KIND_EN.get(kind, f'{kind} sensor')}"
    return _once(ko), _once(en)


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
            clock = _clock_issue(gw)
            if clock is not None:
                issues.append(clock)
            continue
        down[gw.gateway_id] = since
        issue = _gateway_issue(gw.gateway_id, since, now)
        if gw.gateway_id in held_gateways:
            held.append(Held(issue, "site_outage"))
        else:
            issues.append(issue)
    live = [s for s in home.sensors if s.gateway_id not in down]  # the gateway explains the rest
    # the resident's data: a safety device's heartbeat says nothing about the person
    watched = [s for s in live if s.kind not in _SAFETY] or live
    missing: list[SensorHealth] = []
    for s in live:
        silent = s.last_reading_at is not None and (
            (now - s.last_reading_at).total_seconds() > silent_after_s(s, policy)
        )
        if s.online is False:
            issues.append(_sensor_issue(DEVICE_OFFLINE, Severity.WARNING, s, now, policy))
        elif silent and device_silent(s, live, now, policy):
            grade = Severity.WARNING if is_safety(s.kind, policy) else Severity.WATCH
            issues.append(_sensor_issue(DEVICE_SILENT, grade, s, now, policy))
        if (watched is live or s.kind not in _SAFETY) and (
            s.online is False or silent or s.last_reading_at is None
        ):
            missing.append(s)
        if s.battery is not None and s.battery < policy.battery_low_pct:
            issues.append(_sensor_issue(BATTERY_LOW, Severity.WATCH, s, now, policy))
    unknown = _unknown_status(home, down, watched, missing)
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


def _clock_issue(gw: GatewayHealth) -> HealthIssue | None:
    """A gateway whose clock the nightly job found off: its readings' times shift every silence
    and every morning the detectors judge, or (ahead past ingest's tolerance) its readings are
    refused and the home cannot be observed. For the technician (its time sync, NTP)."""
    lag, since = gw.clock_lag_s, gw.clock_off_since
    if lag is None or since is None:
        return None
    details = {"gateway": gw.gateway_id, "clock_lag_s": round(lag), "since": since.isoformat()}
    subject = f"gateway:{gw.gateway_id}"
    if gw.clock_refused:
        ko = (
            "게이트웨이 시계가 5분 넘게 빠릅니다. 기록 시각이 미래로 찍혀 측정값이 거부되고 있어 "
            "이 가정의 움직임을 볼 수 없습니다. 시간 동기화(NTP)를 바로 점검해 주세요"
        )
        en = (
            "Gateway clock more than 5 min ahead: its readings are stamped in the future and "
            "refused, so the home cannot be observed; check its time sync (NTP) now"
        )
        return HealthIssue(GATEWAY_CLOCK, Severity.WARNING, subject, since, ko, en, details)
    minutes = round(abs(lag) / 60)
    ko_span, en_span = (
        (f"{minutes}분", f"{minutes} min") if minutes < 120 else _hours(timedelta(seconds=abs(lag)))
    )
    if lag > 0:
        ko = (
            f"게이트웨이 시계가 약 {ko_span} 늦습니다. 기록 시각이 실제보다 이르게 찍혀 "
            "움직임 없음·기상 확인 판단이 어긋날 수 있습니다. 시간 동기화(NTP)를 점검하고, "
            "시계가 맞으면 통신 지연을 확인해 주세요"
        )
        en = (
            f"Gateway clock about {en_span} behind: readings are stamped earlier than they "
            "happen, so inactivity and morning checks may be judged wrongly; check its time "
            "sync (NTP), and if the clock is right, check for delivery delays"
        )
    else:
        ko = (
            f"게이트웨이 시계가 약 {ko_span} 빠릅니다. 기록 시각이 실제보다 늦게 찍혀 "
            "움직임 없음·기상 확인 판단이 어긋날 수 있습니다. 시간 동기화(NTP)를 점검해 주세요"
        )
        en = (
            f"Gateway clock about {en_span} ahead: readings are stamped later than they "
            "happen, so inactivity and morning checks may be judged wrongly; check its time "
            "sync (NTP)"
        )
    return HealthIssue(GATEWAY_CLOCK, Severity.WATCH, subject, since, ko, en, details)


def _sensor_issue(
    kind: str, severity: Severity, s: SensorHealth, now: datetime, policy: HealthPolicy
) -> HealthIssue:
    name_ko, name_en = sensor_name(s.kind, s.room)
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
        if is_safety(s.kind, policy):
            ko += " (안전 기기: 오늘 안에 점검이 필요합니다)"
            en += " (a safety device: check it today)"
    elif is_safety(s.kind, policy):
        limit, hours = f"{policy.safety_silent_h:g}", _hours(now - since)
        ko = (f"{name_ko}가 {hours[0]}째 신호가 없습니다 (안전 기기 기준 {limit}시간). "
              "배터리와 연결을 점검해 주세요")  # fmt: skip
        en = (f"{name_en} silent for {hours[1]} (safety devices: {limit} h at most); "
              "check its battery and link")  # fmt: skip
        details["silent_after_h"] = policy.safety_silent_h
        details["rule"] = "safety_heartbeat"
    else:
        usual = device_silent_after_s(s, policy) / 3600
        hours = _hours(now - since)
        if is_heartbeat(s.kind, policy):
            ko = f"{name_ko}가 {hours[0]}째 신호가 없습니다 (평소 최대 {usual:.0f}시간)"
            en = f"{name_en} silent for {hours[1]} (expected within {usual:.0f} h)"
        else:
            ko = (f"{name_ko}가 {hours[0]}째 신호가 없습니다 (기준 {usual:.0f}시간). "
                  "다른 센서로는 집 안 활동이 보입니다")  # fmt: skip
            en = (f"{name_en} silent for {hours[1]} (threshold {usual:.0f} h) "
                  "while other sensors show activity at home")  # fmt: skip
        details["silent_after_h"] = round(usual, 2)
        details["cadence"] = "learned" if cadence_learned(s, policy) else "default"
        details["rule"] = "cadence" if is_heartbeat(s.kind, policy) else "home_active"
    if s.last_reading_at is not None:
        details["last_reading_at"] = s.last_reading_at.isoformat()
    return HealthIssue(kind, severity, f"sensor:{s.sensor_id}", since, ko, en, details)


def _unknown_status(
    home: HomeHealth,
    down: dict[str, datetime],
    live: list[SensorHealth],
    missing: list[SensorHealth],
) -> HealthIssue | None:
    """The home's data is missing: every gateway down, or every live sensor silent.

    Dated by the resident's last data: a safety detector's check-in is not that (it would
    move the date, and raise the same silence anew at each check-in). Its details name the
    devices: the gateways down, and the sensors silent, offline or never heard."""
    all_down = bool(home.gateways) and len(down) == len(home.gateways)
    all_silent = bool(live) and len(missing) == len(live)
    if not (all_down or all_silent):
        return None
    person = [s for s in home.sensors if s.kind not in _SAFETY] or home.sensors
    last = [s.last_reading_at for s in person if s.last_reading_at is not None]
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
        {"why": why, "last_data_at": since.isoformat(), "gateways": sorted(down),
         "sensors": [{"sensor_id": s.sensor_id, "kind": s.kind, "room": s.room}
                     for s in missing]},
    )  # fmt: skip


def _once(name: str) -> str:
    """A word said twice in a row said once ("현관 현관 문 센서" → "현관 문 센서")."""
    words: list[str] = []
    for w in name.split():
        if not words or words[-1] != w:
            words.append(w)
    return " ".join(words)


def _hours(delta: timedelta) -> tuple[str, str]:
    h = delta.total_seconds() / 3600
    if h < 1:
        m = max(1, round(h * 60))
        return f"{m}분", f"{m} min"
    return f"{h:.0f}시간", f"{h:.0f} h"
