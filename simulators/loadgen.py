"""Synthetic gateway traffic for load tests: N homes, R messages a second, K readings each.

Each home is a gateway `<prefix><n>` with a door, a motion sensor and two power plugs
(registered first, all at once: registry.add_synthetic_homes); messages are native anbu JSON,
QoS 1, stamped with the moment they are published (the readings of one message a millisecond
apart), so a reading's `received_at - ts` in storage is its delay from gateway to ingest.

A province is tens of thousands of gateways, each its own MQTT connection: one client and one
thread each (as `replay` connects its few homes) would be tens of thousands of threads. Here a
`Fleet` drives every gateway's client from one thread, one socket each, through paho's
external-loop interface (loop_read / loop_write / loop_misc on a selector). Connections are
made a wave at a time (at most `opening` waiting for their CONNACK: Mosquitto listens with a
backlog of 100, and connects past it wait a second for the kernel's SYN retry), from several
loopback source addresses, `per_source` gateways each (an address bound before connecting has
≈ 28,000 ephemeral ports, shared by every process and every destination). A connection the broker drops is made again after a pause, like a gateway's; what
its client had not had acknowledged is sent again (QoS 1), so a message is counted once
acknowledged, never before.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import json
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import registry
from core.domain import SensorKind
from simulators.replay import REPLAY_DONG, ReplayTarget

SENSORS: tuple[tuple[str, SensorKind, str], ...] = (
    ("door", SensorKind.DOOR, "entrance"),
    ("motion", SensorKind.MOTION, "living"),
    ("plug0", SensorKind.POWER, "kitchen"),
    ("plug1", SensorKind.POWER, "living"),
)
NO_MATCHING_SUBSCRIBERS = 0x10  # a PUBACK's reason code: accepted, and nobody subscribed
RECONNECT_S = 2.0  # a dropped gateway's pause before it connects again (then doubling, to 30)
CONNACK_TIMEOUT_S = 30.0
MISC_EVERY_S = 1.0  # every client's keepalive bookkeeping runs about this often


@dataclass(frozen=True, slots=True)
class LoadResult:
    messages: int  # published
    acknowledged: int  # PUBACKs with a success code (a message is counted once)
    readings: int
    seconds: float
    connect_seconds: float  # until every gateway first had its CONNACK
    reconnects: int  # attempts, over the fleet's life
    unrouted: int = 0  # acknowledged with "no matching subscribers": nobody had them
    rejected: int = 0  # PUBACKs with a failure code


def gateways(target: ReplayTarget, homes: int) -> list[str]:
    return [f"{target.prefix}{n:05d}" for n in range(homes)]


def register_load_homes(conn: psycopg.Connection[Any], names: list[str]) -> None:
    registry.add_dong(conn, REPLAY_DONG, "replay", "replay")
    registry.add_synthetic_homes(conn, REPLAY_DONG, names, SENSORS)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_source(n: int) -> str:
    """The `n`-th loopback address to connect from, 1 first (Linux answers 127.0.0.0/8)."""
    return f"127.0.0.{n}"


@dataclass
class Fleet:
    """Every gateway's MQTT client, driven from the calling thread (see the module's text)."""

    target: ReplayTarget
    names: list[str]
    keepalive: int = 60
    inflight: int = 20
    opening: int = 500
    per_source: int = 10_000
    first: int = 0  # the fleet's place among all the run's gateways (several fleets' processes)
    clients: list[mqtt.Client] = field(init=False, default_factory=list)
    connected: set[int] = field(init=False, default_factory=set)
    acknowledged: int = field(init=False, default=0)  # PUBACKs with a success code
    rejected: dict[str, int] = field(init=False, default_factory=dict)  # PUBACK failures
    unrouted: int = field(init=False, default=0)  # acknowledged, but no subscriber had it
    reconnects: int = field(init=False, default=0)
    refused: dict[str, int] = field(init=False, default_factory=dict)
    _sel: selectors.BaseSelector = field(init=False, default_factory=selectors.DefaultSelector)
    _waiting: dict[int, float] = field(init=False, default_factory=dict)  # index: since
    _retry: list[tuple[float, int]] = field(init=False, default_factory=list)  # a heap
    _opened: int = field(init=False, default=0)  # clients 0.._opened-1 have been connected once
    _pause: dict[int, float] = field(init=False, default_factory=dict)
    _misc_at: int = field(init=False, default=0)
    _misc_clock: float = field(init=False, default=0.0)
    all_connected_at: float | None = field(init=False, default=None)  # last time all were

    def __post_init__(self) -> None:
        for i, name in enumerate(self.names):
            self.clients.append(self._client(i, name))

    def _client(self, index: int, name: str) -> mqtt.Client:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id=f"{name}-load", protocol=mqtt.MQTTv5, userdata=index)  # fmt: skip
        c.username_pw_set(name, self.target.password)
        c.max_inflight_messages_set(self.inflight)
        c.max_queued_messages_set(0)
        c.connect_timeout = 2.0  # the TCP connect blocks the fleet's one thread meanwhile
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_socket_open = self._on_open
        c.on_socket_close = self._on_close
        c.on_socket_register_write = self._on_want_write
        c.on_socket_unregister_write = self._on_written
        return c

    # paho's callbacks (VERSION2), all run in the thread calling pump()
    def _on_open(self, _c: mqtt.Client, index: int, sock: Any) -> None:
        self._sel.register(sock, selectors.EVENT_READ, index)

    def _on_close(self, _c: mqtt.Client, _index: int, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)

    def _on_want_write(self, _c: mqtt.Client, index: int, sock: Any) -> None:
        self._watch(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, index)

    def _on_written(self, _c: mqtt.Client, index: int, sock: Any) -> None:
        self._watch(sock, selectors.EVENT_READ, index)

    def _watch(self, sock: Any, events: int, index: int) -> None:
        with contextlib.suppress(KeyError, ValueError):  # not open (yet, or any more)
            self._sel.modify(sock, events, index)

    def _on_connect(self, _c: mqtt.Client, index: int, _f: Any, rc: Any, _p: Any = None) -> None:
        self._waiting.pop(index, None)
        if rc.is_failure:
            self.refused[str(rc)] = self.refused.get(str(rc), 0) + 1
            return  # paho closes the socket; _on_disconnect schedules the retry
        self.connected.add(index)
        self._pause.pop(index, None)
        if len(self.connected) == len(self.clients):
            self.all_connected_at = time.monotonic()

    def _on_disconnect(self, _c: mqtt.Client, index: int, _f: Any, _rc: Any, _p: Any) -> None:
        self._waiting.pop(index, None)
        if index in self.connected:
            self.connected.discard(index)
        self._again(index)

    def _again(self, index: int) -> None:
        """Connect gateway `index` again after its pause (doubling from RECONNECT_S to 30 s)."""
        pause = self._pause.get(index, RECONNECT_S / 2) * 2
        self._pause[index] = min(pause, 30.0)
        heapq.heappush(self._retry, (time.monotonic() + self._pause[index], index))

    def _on_publish(self, _c: mqtt.Client, _i: int, _mid: int, rc: Any, _p: Any) -> None:
        if rc.is_failure:  # not authorised, quota exceeded...: the broker refused it
            self.rejected[str(rc)] = self.rejected.get(str(rc), 0) + 1
            return
        self.acknowledged += 1
        if rc.value == NO_MATCHING_SUBSCRIBERS:
            self.unrouted += 1

    def _source(self, index: int) -> str:
        """The loopback address gateway `index` connects from, for a broker on this machine
        (each address's ephemeral ports are shared by every process binding to it, whatever
        the broker's port); "" (the system's choice) for a broker elsewhere."""
        if not _is_loopback(self.target.host):
            return ""
        return loopback_source((self.first + index) // self.per_source + 1)

    def _open_one(self, index: int, first: bool) -> None:
        c = self.clients[index]
        self._waiting[index] = time.monotonic()
        try:
            if first:
                c.connect(self.target.host, self.target.port, self.keepalive,
                          bind_address=self._source(index))  # fmt: skip
            else:
                self.reconnects += 1
                c.reconnect()
        except OSError:
            self._waiting.pop(index, None)
            self._again(index)

    def connect_all(self, timeout: float = 600.0) -> float:
        """Connect every gateway not yet connected once, `opening` at a time (the dropped
        are connected again by pump()); seconds until all are connected."""
        began = time.monotonic()
        while len(self.connected) < len(self.clients):
            while self._opened < len(self.clients) and len(self._waiting) < self.opening:
                self._opened += 1
                self._open_one(self._opened - 1, first=True)
            self.pump(0.01)
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{len(self.connected)} of {len(self.clients)} gateways "
                                   f"connected in {timeout:.0f} s")  # fmt: skip
        return time.monotonic() - began

    def publish(self, index: int, topic: str, payload: bytes) -> None:
        """Publish QoS 1; a gateway not connected keeps it until it is (paho's queue)."""
        info = self.clients[index].publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish refused by the client: {mqtt.error_string(info.rc)}")

    def pump(self, timeout: float) -> None:
        """Read and write what the sockets are ready for, for at most `timeout` seconds; time
        out connects that had no CONNACK, connect again the dropped, run keepalives."""
        for key, events in self._sel.select(timeout):
            c = self.clients[key.data]
            if events & selectors.EVENT_READ:
                c.loop_read()
            if events & selectors.EVENT_WRITE:
                c.loop_write()
        now = time.monotonic()
        while self._retry and self._retry[0][0] <= now and len(self._waiting) < self.opening:
            self._open_one(heapq.heappop(self._retry)[1], first=False)
        for index, since in list(self._waiting.items()):
            if now - since > CONNACK_TIMEOUT_S:  # reconnect() closes the silent socket first
                del self._waiting[index]
                self._again(index)
        self._misc(now)

    def _misc(self, now: float) -> None:
        """loop_misc for a slice of the clients: each about every MISC_EVERY_S."""
        if not self.clients:
            return
        elapsed, self._misc_clock = now - self._misc_clock, now
        count = min(len(self.clients), int(len(self.clients) * elapsed / MISC_EVERY_S) + 1)
        for _ in range(count):
            self.clients[self._misc_at].loop_misc()
            self._misc_at = (self._misc_at + 1) % len(self.clients)

    def outstanding(self) -> int:
        return sum(len(c._out_messages) for c in self.clients)  # paho's own count

    def settle(self, timeout: float) -> None:
        """Pump until every published message is acknowledged."""
        deadline = time.monotonic() + timeout
        while self.outstanding():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.outstanding()} messages not acknowledged in time")
            self.pump(0.05)

    def close(self) -> None:
        for c in self.clients:
            if c.is_connected():
                c.disconnect()
        self.pump(0.1)
        for key in list(self._sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._sel.close()


def reading_payload(turn: int, batch: int, now: datetime, home: int = 0) -> bytes:
    """A home's `turn`-th message: `batch` readings of its sensors in turn (homes start at
    different sensors, so every kind arrives from the first round on)."""
    tick = timedelta(milliseconds=1)
    items = []
    for k in range(batch):
        vendor, kind, _ = SENSORS[(turn * batch + home + k) % len(SENSORS)]
        value = (turn + k) % 500 if kind is SensorKind.POWER else turn % 2
        items.append({"sensor": vendor, "kind": kind.value, "ts": (now + tick * k).isoformat(),
                      "value": value})  # fmt: skip
    return json.dumps({"readings": items}).encode()


def run_load(
    target: ReplayTarget,
    names: list[str],
    rate: float,
    duration_s: float,
    batch: int = 1,
    progress: Callable[[int], None] | None = None,
    fleet: Fleet | None = None,
) -> LoadResult:
    """Publish at `rate` messages/s (round robin over the gateways) for `duration_s`, then wait
    until the broker acknowledged every one. A `fleet` given is used (and left connected)."""
    own = fleet is None
    fleet = fleet or Fleet(target, names)
    try:
        connect_s = fleet.connect_all() if fleet._opened < len(names) else 0.0
        acked, unrouted, rejected = fleet.acknowledged, fleet.unrouted, sum(fleet.rejected.values())
        began = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - began) < duration_s:
            due = int(elapsed * rate) + 1
            while sent < due:
                i = sent % len(names)
                payload = reading_payload(sent // len(names), batch, datetime.now(UTC), i)
                fleet.publish(i, f"gw/{names[i]}/anbu/readings", payload)
                sent += 1
            if progress is not None:
                progress(sent)
            fleet.pump(min(0.005, max(0.0, (due / rate) - elapsed)))
        fleet.settle(120.0)
        seconds = time.monotonic() - began
        return LoadResult(sent, fleet.acknowledged - acked, sent * batch, seconds, connect_s,
                          fleet.reconnects, fleet.unrouted - unrouted,
                          sum(fleet.rejected.values()) - rejected)  # fmt: skip
    finally:
        if own:
            fleet.close()


def fd_room(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (children inherit it); returns
    the limit now in force, which may be less where the process may not raise it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for limits in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft
