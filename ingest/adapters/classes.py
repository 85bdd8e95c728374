"""What a device's announced class means to anbu: declarative tables, one row per class.

Home Assistant's discovery names a component (`binary_sensor`, `sensor`, `switch`...) and a
`device_class` (https://www.home-assistant.io/integrations/binary_sensor/#device-class,
https://www.home-assistant.io/integrations/sensor/#device-class); Zigbee2MQTT names the
properties a device exposes; Shelly and Tasmota name a model. Each maps to the sensor kind an
installer would most likely register; the installer decides. Safety devices (issue 20) too:
smoke, gas and carbon monoxide detectors, leak sensors, a device's tamper switch, and an
emergency button (Home Assistant's `safety` class, "on means unsafe", is how an ESPHome pull
cord or panic button is usually declared; its `event` entities of class `button` are buttons).
"""

from __future__ import annotations

from collections.abc import Mapping

from core.domain import SensorKind

DOOR, MOTION, CONTACT = SensorKind.DOOR, SensorKind.MOTION, SensorKind.CONTACT
APPLIANCE, POWER = SensorKind.APPLIANCE, SensorKind.POWER
BUTTON, SMOKE, GAS, CO = SensorKind.BUTTON, SensorKind.SMOKE, SensorKind.GAS, SensorKind.CO
WATER_LEAK, TAMPER = SensorKind.WATER_LEAK, SensorKind.TAMPER

HA_CLASSES: Mapping[tuple[str, str | None], SensorKind] = {
    # (component, device_class) -> kind; (component, None) is the component without a class
    ("binary_sensor", "door"): DOOR,
    ("binary_sensor", "garage_door"): CONTACT,
    ("binary_sensor", "window"): CONTACT,
    ("binary_sensor", "opening"): CONTACT,
    ("binary_sensor", "motion"): MOTION,
    ("binary_sensor", "occupancy"): MOTION,
    ("binary_sensor", "presence"): MOTION,
    ("binary_sensor", "moving"): MOTION,
    ("binary_sensor", "plug"): APPLIANCE,
    ("binary_sensor", "power"): APPLIANCE,
    ("binary_sensor", "running"): APPLIANCE,
    ("binary_sensor", "smoke"): SMOKE,
    ("binary_sensor", "heat"): SMOKE,
    ("binary_sensor", "gas"): GAS,
    ("binary_sensor", "carbon_monoxide"): CO,
    ("binary_sensor", "moisture"): WATER_LEAK,
    ("binary_sensor", "tamper"): TAMPER,
    ("binary_sensor", "safety"): BUTTON,
    ("event", "button"): BUTTON,
    ("sensor", "power"): POWER,
    ("sensor", "current"): POWER,
    ("switch", "outlet"): APPLIANCE,
    ("switch", "switch"): APPLIANCE,
    ("switch", None): APPLIANCE,
    ("light", None): APPLIANCE,
    ("fan", None): APPLIANCE,
}

Z2M_EXPOSES: Mapping[str, SensorKind] = {
    # a Zigbee2MQTT exposed property -> kind (https://www.zigbee2mqtt.io/guide/usage/exposes.html)
    "contact": CONTACT,
    "occupancy": MOTION,
    "presence": MOTION,
    "power": POWER,
    "state": APPLIANCE,
    "smoke": SMOKE,
    "gas": GAS,
    "carbon_monoxide": CO,
    "water_leak": WATER_LEAK,
    "tamper": TAMPER,
    "action": BUTTON,
}

SHELLY_MODELS: tuple[tuple[str, SensorKind], ...] = (
    # a Shelly Gen1 model code's prefix -> kind (https://shelly-api-docs.shelly.cloud/gen1/);
    # the first row whose prefix matches wins: longer prefixes first
    ("SHDW", DOOR),
    ("SHSM", SMOKE),  # Shelly Smoke
    ("SHWT", WATER_LEAK),  # Shelly Flood
    ("SHGS", GAS),  # Shelly Gas
    ("SHBTN", BUTTON),  # Shelly Button1
    ("SHMOS", MOTION),
    ("SHSEN", MOTION),
    ("SHIX3", CONTACT),
    ("SHPLG", POWER),
    ("SHSW-PM", POWER),
    ("SHSW-25", POWER),
    ("SHEM", POWER),
    ("SHSW", APPLIANCE),
    ("SHDM", APPLIANCE),
    ("SHBLB", APPLIANCE),
    # Gen2+ model codes (https://shelly-api-docs.shelly.cloud/gen2/Devices/): S<gen><type>-...;
    # their `Shelly.GetDeviceInfo`, which is what a Gen2 device's announce carries
    ("SNPL", POWER),
    ("S3PL", POWER),
    ("SAPL", POWER),  # plugs (Plus, Gen3, Gen4)
    ("SNPM", POWER),
    ("S3PM", POWER),
    ("SPEM", POWER),
    ("SPSW-001P", POWER),
    ("SPSW-002P", POWER),
    ("SPSW-004P", POWER),
    ("SPSW-202P", POWER),  # PM Mini, Pro EM, Pro *PM
    ("SNSW-001P", POWER),
    ("SNSW-002P", POWER),
    ("S3SW-001P", POWER),  # 1PM, 2PM
    ("SNSW", APPLIANCE),
    ("S3SW", APPLIANCE),
    ("SPSW", APPLIANCE),
    ("SNDM", APPLIANCE),  # relays, dimmers
    ("SNSN-0031Z", SMOKE),  # Plus Smoke
    ("SNSN-0024X", CONTACT),
    ("S3SN-0024X", CONTACT),  # i4: four inputs
)
# The Gen2+ `app` name (PlusPlugS, Plus1PM, PlusI4, Mini1PMG3...) when the model code is new:
SHELLY_APPS: tuple[tuple[str, SensorKind], ...] = (
    ("SMOKE", SMOKE),
    ("FLOOD", WATER_LEAK),
    ("PLUG", POWER),
    ("PM", POWER),
    ("EM", POWER),
    ("I4", CONTACT),
    ("I3", CONTACT),
    ("DIMMER", APPLIANCE),
    ("1", APPLIANCE),
    ("2", APPLIANCE),
)

KIND_RANK: Mapping[SensorKind, int] = {
    TAMPER: 1,
    BUTTON: 2,
    APPLIANCE: 3,
    POWER: 4,
    CONTACT: 5,
    MOTION: 6,
    DOOR: 7,
    WATER_LEAK: 8,
    CO: 9,
    GAS: 10,
    SMOKE: 11,
}
"""One device announcing several entities (a plug: its switch and its power sensor; a door
sensor: its contact and its battery): the higher-ranked kind describes it. A tamper switch is
never what a device is for; a wall switch exposing `action` beside its relay is an appliance,
a pendant exposing only `action` a button; a detector is what it detects, a combined smoke and
CO alarm a smoke alarm."""

PAYLOAD_PREFERENCE: tuple[SensorKind, ...] = (
    POWER, MOTION, CONTACT, APPLIANCE, DOOR, SMOKE, GAS, CO, WATER_LEAK, BUTTON, TAMPER
)  # fmt: skip
"""A dead-lettered payload that fits several kinds (a plug's watts and relay, a contact's
door-or-contact) suggests the first of these it fits: `door` is the entrance, chosen only
where nothing else fits; a safety kind only where no activity kind fits (an ESPHome binary
sensor could be any of them, and is most often a motion sensor)."""


def ha_kind(component: str, device_class: str | None) -> SensorKind | None:
    """The kind a Home Assistant entity suggests, or None (battery, temperature...)."""
    return HA_CLASSES.get((component, device_class)) or (
        HA_CLASSES.get((component, None)) if device_class is None else None
    )


def strongest(kinds: list[SensorKind]) -> SensorKind | None:
    """The kind that best describes a device announcing all of `kinds`."""
    return max(kinds, key=KIND_RANK.__getitem__, default=None)


def shelly_kind(model: str, app: str | None = None) -> SensorKind | None:
    """The kind a Shelly model code (or, failing it, a Gen2+ app name) describes."""
    found = next((k for prefix, k in SHELLY_MODELS if model.upper().startswith(prefix)), None)
    if found is None and app:
        found = next((k for part, k in SHELLY_APPS if part in app.upper()), None)
    return found


def suggested_by_payload(kinds: set[SensorKind]) -> SensorKind | None:
    """The kind a payload's candidate values suggest."""
    return next((k for k in PAYLOAD_PREFERENCE if k in kinds), None)
