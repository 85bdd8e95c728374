"""A town of simulated homes: each gateway publishes its resident's day over MQTT on a clock.

Homes with safety devices (`with_safety_devices`: a pendant button and a kitchen smoke
detector) also publish the detectors' check-ins, whatever the resident does, and the presses
and test presses their scenarios script.

The outside world: it talks to anbu only through the broker, as real gateways do, and
through the registry when the town is set up. One scheduler thread walks the clock forward
and publishes every reading whose (virtual) time has come, stamped with that time.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import logging
import random
import secrets
import socket
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import registry
from core.clock import Clock, VirtualClock
from simulators.routines import (
    SAFETY_SENSORS,
    SEOUL,
    Habits,
    HomeSpec,
    Scenario,
    ScenarioKind,
    SensorSpec,
    SimEvent,
    apply_scenarios,
    default_sensors,
    draw_habits,
    gateway_offline,
    leaves_home,
    presses_alarm_test,
    presses_button,
    routine_events,
    safety_heartbeats,
    sleeps_in,
    stops_moving,
)

__all__ = [
    "DONGS",
    "HomeSpec",
    "Scenario",
    "SensorSpec",
    "SimEvent",
    "Town",
    "gateway_offline",
    "leaves_home",
    "make_homes",
    "presses_alarm_test",
    "presses_button",
    "sleeps_in",
    "stops_moving",
    "with_safety_devices",
]

log = logging.getLogger(__name__)

# 행정동 used by the demo town: code -> (name, district).
DONGS: dict[str, tuple[str, str]] = {
    "1111051500": ("청운효자동", "종로구"),
    "1111053000": ("사직동", "종로구"),
    "1168064000": ("역삼1동", "강남구"),
}

_SURNAMES = ("김", "이", "박", "최", "정", "강", "조", "윤", "장", "임")
_GIVEN = (
    "순자",
    "영숙",
    "정숙",
    "영자",
    "옥순",
    "영수",
    "영호",
    "춘자",
    "말순",
    "복순",
    "상철",
    "길동",
)
_MAX_READINGS_PER_MESSAGE = 500

PERSONA_OK = "press:1"  # str(simulators.personas.PRESS_1)
PERSONA_NO_ANSWER = "no_answer"


def make_homes(
    count: int, seed: int, prefix: str = "home", dong_codes: Sequence[str] = tuple(DONGS)
) -> list[HomeSpec]:
    """`count` homes with fake residents (+8210-0000-NNNN phones) spread over `dong_codes`."""
    rng = random.Random(f"{seed}:homes")
    homes = []
    for i in range(1, count + 1):
        home = f"{prefix}{i:03d}"
        homes.append(
            HomeSpec(
                home=home,
                gateway_id=f"gw-{home}",
                gateway_password=secrets.token_urlsafe(12),
                dong_code=dong_codes[(i - 1) % len(dong_codes)],
                display_name=rng.choice(_SURNAMES) + rng.choice(_GIVEN),
                phone=f"+8210{i:08d}",
                sensors=default_sensors(rng),
            )
        )
    return homes


def with_safety_devices(homes: Sequence[HomeSpec]) -> list[HomeSpec]:
    """The homes, each with a pendant button and a kitchen smoke detector added (once)."""
    out = []
    for h in homes:
        have = {s.vendor_id for s in h.sensors}
        extra = tuple(s for s in SAFETY_SENSORS if s.vendor_id not in have)
        out.append(dataclasses.replace(h, sensors=h.sensors + extra))
    return out


def local_midnight(ts: datetime) -> datetime:
    """The Asia/Seoul midnight that starts the day holding `ts`."""
    local = ts.astimezone(SEOUL)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


class Town:
    """Simulated homes publishing native readings to `gw/<id>/anbu/readings` on `clock`."""

    def __init__(
        self,
        homes: Sequence[HomeSpec],
        mqtt_host: str,
        mqtt_port: int,
        clock: Clock,
        seed: int,
        *,
        scenarios: Iterable[Scenario] = (),
        mqtt_protocol: int = 5,
        history: timedelta = timedelta(0),
    ) -> None:
        self.homes = {h.home: h for h in homes}
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.clock = clock
        self.seed = seed
        self.mqtt_protocol = mqtt_protocol
        self.history = history
        self.published = 0
        self._scenarios: list[Scenario] = list(scenarios)
        self._lock = threading.Lock()
        self._days: dict[datetime, tuple[list[datetime], list[SimEvent]]] = {}
        self._clients: dict[str, mqtt.Client] = {}
        self._connected: dict[str, threading.Event] = {}
        self._offline: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- setup ---------------------------------------------------------------------------

    def register(
        self, conn: psycopg.Connection[Any], dongs: Mapping[str, tuple[str, str]] | None = None
    ) -> dict[str, int]:
        """Write dongs, residents, gateways and sensors; return resident id by home."""
        names = {**DONGS, **(dongs or {})}
        for code in sorted({h.dong_code for h in self.homes.values()}):
            name, district = names.get(code, (code, ""))
            registry.add_dong(conn, code, name, district)
        ids = {}
        for h in self.homes.values():
            rid = registry.add_resident(conn, h.home, h.dong_code, h.display_name, h.phone)
            registry.add_gateway(conn, h.gateway_id, rid)
            for s in h.sensors:
                registry.add_sensor(conn, h.gateway_id, s.vendor_id, s.kind, s.room)
            ids[h.home] = rid
        return ids

    def credentials(self) -> dict[str, str]:
        """Broker users the town needs: gateway id -> password."""
        return {h.gateway_id: h.gateway_password for h in self.homes.values()}

    def phone_personas(self) -> dict[str, str]:
        """How each resident answers a check-in call: `no_answer` once stopped, else `press:1`."""
        with self._lock:
            stopped = {s.home for s in self._scenarios if s.kind is ScenarioKind.STOPS_MOVING}
        return {
            h.phone: PERSONA_NO_ANSWER if h.home in stopped else PERSONA_OK
            for h in self.homes.values()
        }

    def add_scenario(self, scenario: Scenario) -> None:
        """Script an incident, also while running (a moment already past takes effect now)."""
        if scenario.home not in self.homes:
            raise KeyError(f"unknown home {scenario.home!r}")
        with self._lock:
            self._scenarios.append(scenario)
            self._days.clear()

    def habits(self, home: str) -> Habits:
        return draw_habits(random.Random(f"{self.seed}:{home}:habits"))

    def events_for_day(self, day_start: datetime) -> list[SimEvent]:
        """Every home's events of the local day starting at `day_start`, scenarios applied."""
        return list(self._day(day_start)[1])

    def past_messages(
        self, since: datetime, until: datetime
    ) -> Iterator[tuple[datetime, list[tuple[str, bytes]]]]:
        """What the gateways published in [since, until), one local day at a time: the day's
        last moment and its messages (topic, native payload), as `start` would send them."""
        day = local_midnight(since)
        while day < until:
            end = min(local_midnight(day + timedelta(hours=26)), until)
            events = [e for e in self.events_for_day(day) if since <= e.ts < end]
            yield end, [(topic, payload) for _, topic, payload, _ in _messages(events)]
            day = local_midnight(day + timedelta(hours=26))

    # -- running -------------------------------------------------------------------------

    def start(self, connect_timeout: float = 10.0, since: datetime | None = None) -> None:
        """Connect every gateway (waiting up to `connect_timeout`), then start the scheduler.

        It publishes what happens after `since` (default: the clock's now less `history`):
        a town whose past is already stored goes on from where that past ends.
        """
        for h in self.homes.values():
            self._connected[h.gateway_id] = threading.Event()
            client = self._make_client(h)
            self._clients[h.gateway_id] = client
            client.connect_async(self.mqtt_host, self.mqtt_port, keepalive=30)
            client.loop_start()
        for gw, event in self._connected.items():
            if not event.wait(connect_timeout):
                self.stop()
                raise ConnectionError(f"gateway {gw} could not connect to the broker")
        self._stop.clear()
        cursor = since if since is not None else self.clock.now() - self.history
        self._thread = threading.Thread(
            target=self._run, args=(cursor,), name="town-scheduler", daemon=True
        )
        self._thread.start()
        log.info("town started: %d homes", len(self.homes))

    def stop(self) -> None:
        """Stop publishing; each gateway says `offline` and disconnects."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for gw, client in self._clients.items():
            if gw not in self._offline and client.is_connected():
                info = client.publish(_status_topic(gw), "offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(2.0)
                except (RuntimeError, ValueError):
                    log.warning("gateway %s: offline status not sent", gw)
                client.disconnect()
            client.loop_stop()
        self._clients.clear()
        self._connected.clear()
        self._offline.clear()

    def _make_client(self, h: HomeSpec) -> mqtt.Client:
        protocol = mqtt.MQTTv5 if self.mqtt_protocol == 5 else mqtt.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=h.gateway_id, protocol=protocol)
        client.username_pw_set(h.gateway_id, h.gateway_password)
        client.will_set(_status_topic(h.gateway_id), "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 10)
        client.max_queued_messages_set(0)
        gw = h.gateway_id

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object = None) -> None:
            if rc.is_failure:
                log.warning("gateway %s refused by broker: %s", gw, rc)
                return
            c.publish(_status_topic(gw), "online", qos=1, retain=True)
            ready = self._connected.get(gw)
            if ready is not None:
                ready.set()

        client.on_connect = on_connect
        return client

    def _day(self, day_start: datetime) -> tuple[list[datetime], list[SimEvent]]:
        with self._lock:
            cached = self._days.get(day_start)
            if cached is not None:
                return cached
            scenarios = list(self._scenarios)
        events: list[SimEvent] = []
        day_end = local_midnight(day_start + timedelta(hours=26))
        for h in self.homes.values():
            rng = random.Random(f"{self.seed}:{h.home}:{day_start.date().isoformat()}")
            raw = routine_events(h, day_start, rng, self.habits(h.home))
            kept = apply_scenarios(raw, h.home, scenarios, h)
            # detectors check in whatever the resident does: only a gateway down stops them
            beats = safety_heartbeats(
                h, day_start, random.Random(f"{self.seed}:{h.home}:{day_start.date()}:beats")
            )
            if beats:
                down = [s for s in scenarios if s.kind is ScenarioKind.GATEWAY_OFFLINE]
                kept += apply_scenarios(beats, h.home, down, h)
            # a door a scenario adds belongs to the day its moment falls in
            events.extend(e for e in kept if day_start <= e.ts < day_end)
        events.sort(key=lambda e: e.ts)
        day = ([e.ts for e in events], events)
        with self._lock:
            self._days[day_start] = day
            for old in [d for d in self._days if d < day_start - timedelta(days=2)]:
                del self._days[old]
        return day

    def due(self, after: datetime, until: datetime) -> list[SimEvent]:
        """Events with `after < ts <= until`, in time order."""
        out: list[SimEvent] = []
        day = local_midnight(after)
        while day <= until:
            stamps, events = self._day(day)
            out.extend(
                events[bisect.bisect_right(stamps, after) : bisect.bisect_right(stamps, until)]
            )
            day = local_midnight(day + timedelta(hours=26))
        return out

    def _run(self, cursor: datetime) -> None:
        speed = self.clock.speed if isinstance(self.clock, VirtualClock) else 1.0
        while not self._stop.is_set():
            now = self.clock.now()
            if now > cursor:
                try:
                    self._publish(self.due(cursor, now))
                    self._switch_gateways(cursor, now)
                except Exception:
                    log.exception("town scheduler tick failed")
                cursor = now
            upcoming = self.due(cursor, cursor + timedelta(hours=1))[:1]
            wait = 0.25
            if upcoming and speed > 0:
                wait = (upcoming[0].ts - cursor).total_seconds() / speed
            self._stop.wait(min(max(wait, 0.005), 0.25))

    def _publish(self, events: list[SimEvent]) -> None:
        live = [e for e in events if e.gateway not in self._offline]
        for gw, topic, payload, count in _messages(live):
            client = self._clients.get(gw)
            if client is None:
                continue
            client.publish(topic, payload, qos=1)
            self.published += count

    def _switch_gateways(self, after: datetime, until: datetime) -> None:
        with self._lock:
            offline = [s for s in self._scenarios if s.kind is ScenarioKind.GATEWAY_OFFLINE]
        dropping: list[str] = []
        for s in offline:
            gw = self.homes[s.home].gateway_id
            if after < s.at <= until and gw not in self._offline and gw not in dropping:
                dropping.append(gw)
            if s.until is not None and after < s.until <= until and gw in self._offline:
                self._restore_connection(gw)
        if dropping:
            self._drop_connections(dropping)

    def _drop_connections(self, gateways: list[str]) -> None:
        """Lose the network without a DISCONNECT, so the broker publishes each will.

        Gateways going down in the same tick (a power cut) go down together: their network
        loops stop side by side (each may wait up to a second), then every socket closes.
        """
        clients = [self._clients[gw] for gw in gateways]
        self._offline.update(gateways)
        stopping = [threading.Thread(target=c.loop_stop, daemon=True) for c in clients]
        for t in stopping:
            t.start()
        for t in stopping:
            t.join()
        for gw, client in zip(gateways, clients, strict=True):
            sock = client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            log.info("gateway %s: connection dropped (scenario)", gw)

    def _restore_connection(self, gw: str) -> None:
        client = self._clients[gw]
        self._offline.discard(gw)
        self._connected[gw].clear()
        try:
            client.reconnect()
        except OSError:
            log.warning("gateway %s: reconnect failed; paho keeps retrying", gw)
        client.loop_start()
        log.info("gateway %s: back online (scenario)", gw)


def _messages(events: list[SimEvent]) -> list[tuple[str, str, bytes, int]]:
    """Native readings messages per gateway: (gateway, topic, payload, readings in it)."""
    by_gateway: dict[str, list[dict[str, object]]] = defaultdict(list)
    for e in events:
        by_gateway[e.gateway].append(e.native())
    out = []
    for gw, readings in by_gateway.items():
        for i in range(0, len(readings), _MAX_READINGS_PER_MESSAGE):
            chunk = readings[i : i + _MAX_READINGS_PER_MESSAGE]
            payload = json.dumps({"readings": chunk}, separators=(",", ":")).encode()
            out.append((gw, _readings_topic(gw), payload, len(chunk)))
    return out


def _readings_topic(gateway: str) -> str:
    return f"gw/{gateway}/anbu/readings"


def _status_topic(gateway: str) -> str:
    return f"gw/{gateway}/anbu/status"
