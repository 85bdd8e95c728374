"""A simulated resident's day as sensor events: a pure function of the home, the day and a seed.

Times are generated on the resident's wall clock (Asia/Seoul) and returned in UTC, whole
seconds, sorted. A motion sensor reports 1 when it sees movement and 0 when that ends; every
1 has its 0 before the resident leaves the room. Power plugs report watts on change.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.domain import AlarmValue, ButtonValue, SensorKind

SEOUL = ZoneInfo("Asia/Seoul")


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One sensor of a simulated home: the id its gateway publishes, its kind and room."""

    vendor_id: str
    kind: SensorKind
    room: str


@dataclass(frozen=True, slots=True)
class HomeSpec:
    """A simulated home: its resident (fake personal data), gateway and sensors."""

    home: str
    gateway_id: str
    gateway_password: str
    dong_code: str
    display_name: str
    phone: str
    sensors: tuple[SensorSpec, ...]


@dataclass(frozen=True, slots=True)
class Habits:
    """A resident's own rhythm; drawn once per home so that homes differ."""

    wake_hour: float = 7.0
    bed_hour: float = 22.0
    outing_probability: float = 0.5
    night_toilet_probability: float = 0.7
    restlessness: float = 1.0  # >1 moves between rooms more often


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One reading a simulated gateway will publish."""

    ts: datetime
    gateway: str
    sensor: str
    kind: SensorKind
    value: float

    def native(self) -> dict[str, object]:
        """The reading in the native wire format (`gw/<id>/anbu/readings`)."""
        value: float | int = int(self.value) if float(self.value).is_integer() else self.value
        return {
            "sensor": self.sensor,
            "kind": self.kind.value,
            "ts": self.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": value,
        }


def draw_habits(rng: random.Random) -> Habits:
    """Habits of one resident: wake 6-8 h, bed 21-23 h, some go out more than others."""
    return Habits(
        wake_hour=rng.uniform(6.0, 8.0),
        bed_hour=rng.uniform(21.0, 23.0),
        outing_probability=rng.uniform(0.3, 0.8),
        night_toilet_probability=rng.uniform(0.4, 0.95),
        restlessness=rng.uniform(0.7, 1.4),
    )


def default_sensors(rng: random.Random) -> tuple[SensorSpec, ...]:
    """A typical installation: front door, motion in four rooms, a plug on the TV or kettle."""
    plug = (
        SensorSpec("plug_tv", SensorKind.POWER, "living")
        if rng.random() < 0.5
        else SensorSpec("plug_kettle", SensorKind.POWER, "kitchen")
    )
    return (
        SensorSpec("door1", SensorKind.DOOR, "entrance"),
        SensorSpec("pir_living", SensorKind.MOTION, "living"),
        SensorSpec("pir_kitchen", SensorKind.MOTION, "kitchen"),
        SensorSpec("pir_bedroom", SensorKind.MOTION, "bedroom"),
        SensorSpec("pir_bathroom", SensorKind.MOTION, "bathroom"),
        plug,
    )


PENDANT = SensorSpec("sos1", SensorKind.BUTTON, "living")  # worn, its base in the living room
KITCHEN_SMOKE = SensorSpec("smoke_kitchen", SensorKind.SMOKE, "kitchen")
SAFETY_SENSORS = (PENDANT, KITCHEN_SMOKE)
"""What the emergency-safety service installs beside the activity sensors: a pendant button
(응급호출기) and a kitchen smoke detector."""

# A detector's check-in in the native format is its state, reported now and then (clear). A
# button has no state: in the native format its only readings are presses and cancels, each of
# which ingest raises as a finding, so a pendant says nothing between presses.
HEARTBEAT_VALUES: dict[SensorKind, float] = {
    SensorKind.SMOKE: AlarmValue.CLEAR,
    SensorKind.GAS: AlarmValue.CLEAR,
    SensorKind.CO: AlarmValue.CLEAR,
    SensorKind.WATER_LEAK: AlarmValue.CLEAR,
}
HEARTBEAT_EVERY_H = (2.5, 3.5)  # a check-in every 2.5 to 3.5 h, like battery-powered Zigbee alarms
ALARM_TEST_S = 20  # a test press sounds the siren for this long, then the detector reports clear


def safety_heartbeats(spec: HomeSpec, day_start: datetime, rng: random.Random) -> list[SimEvent]:
    """The home's safety detectors' check-ins over the local day from `day_start`, sorted.

    Independent of the resident: a detector keeps reporting while nobody moves."""
    out = []
    start = day_start.astimezone(SEOUL)
    for sensor in spec.sensors:
        value = HEARTBEAT_VALUES.get(sensor.kind)
        if value is None:
            continue
        t = rng.uniform(0, HEARTBEAT_EVERY_H[1] * 3600)
        while t < 86_400:
            ts = (start + timedelta(seconds=int(t))).astimezone(UTC)
            out.append(SimEvent(ts, spec.gateway_id, sensor.vendor_id, sensor.kind, value))
            t += rng.uniform(*HEARTBEAT_EVERY_H) * 3600
    out.sort(key=lambda e: e.ts)
    return out


class _Day:
    """Builds one day's events; `t` is seconds since local midnight, always moving forward."""

    def __init__(self, spec: HomeSpec, day_start: datetime, rng: random.Random) -> None:
        self.spec = spec
        self.start = day_start
        self.rng = rng
        self.t = 0
        self.events: list[tuple[int, str, SensorKind, float]] = []
        self.motion = {s.room: s for s in spec.sensors if s.kind is SensorKind.MOTION}
        self.door = next((s for s in spec.sensors if s.kind is SensorKind.DOOR), None)
        self.plugs = {s.room: s for s in spec.sensors if s.kind is SensorKind.POWER}
        self.last_toilet = 0

    def emit(self, at: int, sensor: SensorSpec, value: float) -> None:
        self.events.append((at, sensor.vendor_id, sensor.kind, value))

    def stay(self, room: str, seconds: int, stillness: float = 1.0) -> None:
        """Spend `seconds` in `room`: motion pulses of 20-90 s, every 1-8 min (longer when still)."""
        end = self.t + max(seconds, 60)
        sensor = self.motion.get(room)
        at = self.t
        while sensor is not None and at + 20 < end:
            off = min(at + self.rng.randint(20, 90), end - 1)
            self.emit(at, sensor, 1)
            self.emit(off, sensor, 0)
            at = off + int(self.rng.uniform(60, 480) * stillness)
        if room == "bathroom":
            self.last_toilet = end
        self.t = end + self.rng.randint(2, 15)

    def appliance(self, room: str, on_at: int, off_at: int, watts: float) -> None:
        plug = self.plugs.get(room)
        if plug is not None and off_at > on_at:
            self.emit(on_at, plug, round(watts, 1))
            self.emit(off_at, plug, 0)

    def meal(self, minutes: float) -> None:
        start = self.t
        if "kitchen" in self.plugs:
            on = start + self.rng.randint(30, 120)
            self.appliance(
                "kitchen", on, on + self.rng.randint(150, 270), self.rng.uniform(1800, 2200)
            )
        self.stay("kitchen", int(minutes * 60))

    def fill_until(self, target: int) -> None:
        """Ordinary home life until `target`: mostly the living room, toilet every 1.5-3 h."""
        r = self.rng
        while self.t < target - 120:
            remaining = target - self.t
            if self.t - self.last_toilet > r.uniform(5400, 10800):
                self.stay("bathroom", min(remaining, r.randint(180, 480)))
            elif r.random() < 0.2:
                self.stay(r.choice(("kitchen", "bedroom")), min(remaining, r.randint(120, 900)))
            else:
                self.stay("living", min(remaining, r.randint(900, 3600)), stillness=1.5)
        self.t = max(self.t, target)

    def outing(self, leave: int, minutes: float) -> None:
        self.fill_until(leave)
        if self.door is None:
            self.fill_until(self.t + int(minutes * 60))
            return
        self.stay("bathroom", self.rng.randint(120, 300))
        self.emit(self.t, self.door, 1)
        self.emit(self.t + self.rng.randint(4, 20), self.door, 0)
        self.t += int(minutes * 60)
        self.emit(self.t, self.door, 1)
        self.emit(self.t + self.rng.randint(4, 20), self.door, 0)
        self.t += 25
        self.stay("living", self.rng.randint(300, 900))

    def events_out(self) -> list[SimEvent]:
        day_end = 86_400
        out = [
            SimEvent(
                ts=(self.start + timedelta(seconds=at)).astimezone(UTC),
                gateway=self.spec.gateway_id,
                sensor=sensor,
                kind=kind,
                value=float(value),
            )
            for at, sensor, kind, value in self.events
            if 0 <= at < day_end
        ]
        out.sort(key=lambda e: e.ts)
        return out


def routine_events(
    spec: HomeSpec, day_start: datetime, rng: random.Random, habits: Habits | None = None
) -> list[SimEvent]:
    """One resident's day from `day_start` (local midnight) for 24 h, sorted by time.

    Night toilet trip, wake at ~habits.wake_hour, breakfast, an outing on some days, lunch,
    afternoon, dinner, TV in the evening, bed at ~habits.bed_hour.
    """
    if day_start.tzinfo is None:
        raise ValueError("day_start must be timezone-aware")
    h = habits or Habits()
    day = _Day(spec, day_start.astimezone(SEOUL), rng)

    def at_hour(hour: float, jitter_min: float = 0.0) -> int:
        return int(hour * 3600 + rng.uniform(-jitter_min, jitter_min) * 60)

    wake = at_hour(h.wake_hour, 30)
    bed = at_hour(h.bed_hour, 30)
    if rng.random() < h.night_toilet_probability:
        day.t = at_hour(rng.uniform(1.0, 4.5))
        day.stay("bedroom", rng.randint(60, 120))
        day.stay("bathroom", rng.randint(180, 480))
        day.stay("bedroom", rng.randint(60, 120), stillness=3.0)
    day.t = max(day.t, wake)
    day.stay("bedroom", rng.randint(300, 900))
    day.stay("bathroom", rng.randint(600, 1200))
    day.meal(rng.uniform(20, 40))
    day.stay("living", rng.randint(1200, 3600), stillness=1.5)
    went_out = rng.random() < h.outing_probability
    if went_out:
        day.outing(max(day.t, at_hour(rng.uniform(9.5, 14.0))), rng.uniform(60, 240))
    if day.t < at_hour(12.5):
        day.fill_until(at_hour(12.0, 30))
        day.meal(rng.uniform(20, 40))
    day.fill_until(at_hour(18.0, 45))
    day.meal(rng.uniform(25, 50))
    tv_start = day.t + rng.randint(60, 600)
    tv_end = max(tv_start + 1800, bed - rng.randint(900, 2400))
    day.appliance("living", tv_start, tv_end, rng.uniform(70, 140))
    day.fill_until(tv_end)
    day.stay("bathroom", rng.randint(300, 720))
    day.stay("bedroom", rng.randint(180, 600), stillness=3.0)
    return day.events_out()


def stopped_at(events: list[SimEvent], at: datetime) -> list[SimEvent]:
    """The events of a home whose resident stops moving at `at`.

    Nothing after `at`; each motion sensor still reporting 1 reports 0 at `at` (the PIR
    times out). Appliances keep their last state: a fallen resident does not switch off the TV.
    """
    kept = [e for e in events if e.ts < at]
    open_motion: dict[str, SimEvent] = {}
    for e in kept:
        if e.kind is SensorKind.MOTION:
            if e.value:
                open_motion[e.sensor] = e
            else:
                open_motion.pop(e.sensor, None)
    closing = [
        SimEvent(ts=at, gateway=e.gateway, sensor=e.sensor, kind=e.kind, value=0.0)
        for e in open_motion.values()
    ]
    return kept + sorted(closing, key=lambda e: e.sensor)


def went_out(
    events: list[SimEvent], at: datetime, gateway: str, door: str, until: datetime | None = None
) -> list[SimEvent]:
    """The events of a home whose resident goes out through the front door at `at`.

    Every motion sensor still reporting 1 reports 0 at `at`; the door opens 30 s later and
    closes behind the resident; nothing happens inside while they are out. Back at `until`
    (the door again, then the day as it would have gone on), or never when `until` is None.
    """
    at = at.replace(microsecond=0)
    leave = _door_pair(at + timedelta(seconds=30), gateway, door)
    out = [*stopped_at(events, at), *leave]
    if until is not None:
        back = until.replace(microsecond=0)
        out += _door_pair(back, gateway, door)
        out += [e for e in events if e.ts > back + timedelta(seconds=10)]
    return out


def _door_pair(at: datetime, gateway: str, door: str) -> list[SimEvent]:
    return [
        SimEvent(at, gateway, door, SensorKind.DOOR, 1.0),
        SimEvent(at + timedelta(seconds=10), gateway, door, SensorKind.DOOR, 0.0),
    ]


class ScenarioKind(enum.StrEnum):
    """What goes wrong in a simulated home."""

    STOPS_MOVING = "stops_moving"
    GATEWAY_OFFLINE = "gateway_offline"
    SLEEPS_IN = "sleeps_in"
    LEAVES_HOME = "leaves_home"
    PRESSES_BUTTON = "presses_button"
    TESTS_ALARM = "presses_alarm_test"


@dataclass(frozen=True, slots=True)
class Scenario:
    """An incident scripted into the town: what, in which home, from when (until when)."""

    kind: ScenarioKind
    home: str
    at: datetime
    until: datetime | None = None


def stops_moving(home: str, at: datetime) -> Scenario:
    """The resident falls or stops moving at `at`: no readings after it, and no phone answer."""
    return Scenario(ScenarioKind.STOPS_MOVING, home, at)


def gateway_offline(home: str, at: datetime, until: datetime | None = None) -> Scenario:
    """The home's gateway drops off the network at `at` (its will fires), back at `until`."""
    return Scenario(ScenarioKind.GATEWAY_OFFLINE, home, at, until)


def sleeps_in(home: str, at: datetime, until: datetime) -> Scenario:
    """The resident does not get up: nothing from `at` (in the night) until `until`, then the
    day goes on from there. They answer the phone."""
    return Scenario(ScenarioKind.SLEEPS_IN, home, at, until)


def leaves_home(home: str, at: datetime, until: datetime | None = None) -> Scenario:
    """The resident goes out through the front door at `at` and is not back until `until`
    (None: not back at all). They answer the phone wherever they are."""
    return Scenario(ScenarioKind.LEAVES_HOME, home, at, until)


def presses_button(home: str, at: datetime) -> Scenario:
    """The resident presses their emergency button (pendant) at `at`. They answer the phone."""
    return Scenario(ScenarioKind.PRESSES_BUTTON, home, at)


def presses_alarm_test(home: str, at: datetime) -> Scenario:
    """Someone presses the smoke detector's test button at `at`: the siren for a few seconds,
    reported as a test (never as smoke), then clear."""
    return Scenario(ScenarioKind.TESTS_ALARM, home, at)


def _device(spec: HomeSpec | None, kind: SensorKind, home: str) -> tuple[str, SensorSpec]:
    """(gateway, sensor) of the home's first device of `kind`; ValueError when it has none."""
    found = next((x for x in spec.sensors if x.kind is kind), None) if spec else None
    if spec is None or found is None:
        raise ValueError(f"{home}: the scenario needs the home's {kind.value} device")
    return spec.gateway_id, found


def apply_scenarios(
    events: list[SimEvent],
    home: str,
    scenarios: Sequence[Scenario],
    spec: HomeSpec | None = None,
) -> list[SimEvent]:
    """One home's events as its scenarios leave them (stopped resident, offline gateway, ...).

    A resident leaving home needs `spec` (the door they go through); the door readings that
    adds fall at the scenario's moments, whatever span `events` covers.
    """
    out = events
    for s in scenarios:
        if s.home != home:
            continue
        if s.kind is ScenarioKind.STOPS_MOVING:
            out = stopped_at(out, s.at)
        elif s.kind in (ScenarioKind.GATEWAY_OFFLINE, ScenarioKind.SLEEPS_IN):
            out = [e for e in out if not (e.ts >= s.at and (s.until is None or e.ts < s.until))]
        elif s.kind is ScenarioKind.LEAVES_HOME:
            door = (
                next((x for x in spec.sensors if x.kind is SensorKind.DOOR), None) if spec else None
            )
            if spec is None or door is None:
                raise ValueError(f"{home}: leaving home needs the home's front door")
            out = went_out(out, s.at, spec.gateway_id, door.vendor_id, s.until)
        elif s.kind is ScenarioKind.PRESSES_BUTTON:
            gw, button = _device(spec, SensorKind.BUTTON, home)
            at = s.at.replace(microsecond=0)
            out = [*out, SimEvent(at, gw, button.vendor_id, button.kind, ButtonValue.PRESS)]
        elif s.kind is ScenarioKind.TESTS_ALARM:
            gw, smoke = _device(spec, SensorKind.SMOKE, home)
            at = s.at.replace(microsecond=0)
            out = [
                *out,
                SimEvent(at, gw, smoke.vendor_id, smoke.kind, AlarmValue.TEST),
                SimEvent(at + timedelta(seconds=ALARM_TEST_S), gw, smoke.vendor_id, smoke.kind,
                         AlarmValue.CLEAR),
            ]  # fmt: skip
    return sorted(out, key=lambda e: e.ts)
