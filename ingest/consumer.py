"""The MQTT consumer: persistent MQTT 5 session, shared subscription, ack only after commit.

Two processes per worker, so that receiving and storing no longer take turns under one GIL:
- this one: paho's network thread puts each message on a queue (with the connection
  generation it arrived on); a sending thread takes batches and passes their raw messages to
  the storing process (ingest.store_process); a replying thread reads what that process
  committed and only then sends those messages' PUBACKs;
- the storing process parses, resolves and stores each batch in one transaction, retrying
  with backoff until it commits (nothing is acknowledged meanwhile: back-pressure), and
  answers with the batch's id.
The inbox between paho's thread and the sending thread (ingest.inbox) is capped: past it a
QoS 0 message is dropped and counted, a QoS 1/2 one pauses the reading until there is room
(never dropped: unacknowledged, the broker would redeliver it anyway). The client id is one per
replica and stable across restarts (ingest.identity). Receipt times, against which "in the
future" is judged, follow the database's clock, not this host's (ingest.receipt_clock).
A message whose connection has gone is not acknowledged (its packet id belongs to the old
connection): the broker redelivers it on the resumed session and the unique keys make the
second copy harmless. If the storing process dies, the batches it held are not acknowledged;
a new one is started and given them again. Stopping lets it finish the batch in hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.clock import Clock, SystemClock
from core.config import Settings
from core.db import Database
from ingest.adapters import topic_filters
from ingest.dead_letter_limits import dead_letter_limits
from ingest.identity import client_id, username
from ingest.inbox import Inbox
from ingest.receipt_clock import ReceiptClock
from ingest.shares import POLL_S, Census, Holdings, chunks, leave
from ingest.store import BatchSummary
from ingest.store_process import Config, Item, StoreProcess

log = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another connection took the client id


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Counters since start(), for metrics and the demo."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    db_errors: int = 0
    connects: int = 0
    acked: int = 0
    """PUBACKs sent, each after the commit that stored its message."""
    restarts: int = 0
    """Storing processes started again after one died."""
    dropped: int = 0
    """QoS 0 messages dropped because the inbox was full (storing is behind or down)."""
    paused: int = 0
    """Times reading stopped for a full inbox rather than drop a QoS 1/2 message."""
    taken_over: int = 0
    """Times the broker said it closed this connection for another with the same client id
    (MQTT 5 reason 0x8E; Mosquitto 2.0.11 closes it without a reason: `connects` grows)."""


# What paho's thread hands the sending thread: (connection generation, mid, qos, topic,
# payload, retain, time of receipt).
_Received = tuple[int, int, int, str, bytes, bool, datetime]

BATCH_BYTES = 8 << 20
"""Payload bytes a batch holds at most (one message over it goes alone): a batch is parsed,
held and copied whole by the storing process, with up to three in flight, so its memory is
bounded by bytes, not only by `batch_size` messages of up to the broker's 1 MiB each."""


def _payload_bytes(received: _Received) -> int:
    return len(received[4])


@dataclass(slots=True)
class _Batch:
    """A batch handed to the storing process, kept until it answers: what to acknowledge."""

    id: int
    now: datetime
    items: list[Item]
    acks: list[tuple[int, int, int]]  # (generation, mid, qos)


@dataclass(slots=True)
class _Flight:
    """Batches handed to the storing process and not yet committed, under the service's lock."""

    child: StoreProcess
    batches: dict[int, _Batch] = field(default_factory=dict)
    unsent: list[_Batch] = field(default_factory=list)
    """Batches to (re)send to `child` before any newer one: all of them after a restart."""


def configure_tls(client: mqtt.Client, s: Settings) -> None:
    """TLS to the broker when ANBU_MQTT_TLS_CA is set (with a client certificate when given)."""
    if s.mqtt_tls_ca:
        client.tls_set(ca_certs=s.mqtt_tls_ca, certfile=s.mqtt_tls_cert, keyfile=s.mqtt_tls_key)


class IngestService:
    """Reads gateways' messages from the broker into PostgreSQL; start() and stop() do the work.

    `db` gives the storing process its conninfo (it keeps one connection of its own); up to
    `max_batches_in_flight` batches wait in it for their commit, and the broker is asked for
    no more unacknowledged messages than those plus the batch being gathered.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        *,
        batch_size: int = 500,
        batch_wait_s: float = 0.005,
        retry_max_s: float = 5.0,
        max_batches_in_flight: int = 3,
        on_batch: Callable[[BatchSummary], None] | None = None,
        database_time: bool | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        # receipt stamps: the database's clock carried by the monotonic one (ingest.receipt_clock);
        # by default only with the system clock: a virtual clock (replay, tests) is the truth
        use_db = isinstance(clock, SystemClock) if database_time is None else database_time
        self._receipt = ReceiptClock(db.conninfo, clock) if use_db else None
        self._stamp = self._receipt.now if self._receipt is not None else clock.now
        self._clock_keeper: threading.Thread | None = None
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._retry_max_s = retry_max_s
        self._max_in_flight = max(max_batches_in_flight, 1)
        self.on_batch = on_batch
        self._client: mqtt.Client | None = None
        self._inbox: Inbox[_Received] = Inbox(settings.ingest_inbox_max)
        self.client_id = ""
        self._sender: threading.Thread | None = None
        self._replier: threading.Thread | None = None
        self._flight: _Flight | None = None
        self._stopping = threading.Event()
        # guards generation/connected, the counters and the flight; `_room` waits on it
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._generation = 0
        self._connected = False
        self._received = 0  # written by paho's thread only (kept off the lock: hot path)
        self._next_id = 0
        self._stats = IngestStats()
        self.subscribed = threading.Event()
        # several workers without a shared group: each its own share (ingest.shares)
        self._holdings = Holdings()
        self._shares: threading.Thread | None = None
        self._shares_wake = threading.Event()
        self._acked: set[int] = set()  # SUBACKed message ids since the last connect
        self._round: set[int] | None = None  # the first round's SUBSCRIBE ids since then
        self._refused = False  # a SUBSCRIBE of that round refused: not ready
        self._share_ready = False  # the first round acknowledged: the others may let go

    @property
    def stats(self) -> IngestStats:
        with self._lock:
            return replace(
                self._stats,
                messages=self._received,
                dropped=self._inbox.dropped,
                paused=self._inbox.paused,
            )

    @property
    def clock_anchored(self) -> bool:
        """Receipt times follow the database's clock (False: the injected clock's or, until the
        database has been reached, the wall clock's)."""
        return self._receipt is not None and self._receipt.anchored

    @property
    def inbox_size(self) -> int:
        """Messages received and not yet taken by the sending thread (at most the cap)."""
        return self._inbox.size()

    @property
    def store_pid(self) -> int | None:
        """The storing process's pid (for tests and operators); None when not running."""
        with self._lock:
            return None if self._flight is None else self._flight.child.pid

    @property
    def partitioned(self) -> bool:
        """Several workers and no shared group: each subscribes its own share of the gateways
        (ingest.shares), which the broker keeps across its restart."""
        s = self._settings
        return s.mqtt_protocol == 5 and not s.mqtt_shared_group and s.ingest_replicas > 1

    def start(self) -> None:
        """Start the storing process, connect (retrying in the background) and start storing."""
        s = self._settings
        self.client_id = client_id(s)  # refuses an id several replicas would share
        self._stopping = threading.Event()  # a fresh one: a stuck old thread keeps its own
        self._flight = _Flight(self._spawn())
        v5 = s.mqtt_protocol == 5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.username_pw_set(username(s), s.mqtt_password)
        configure_tls(client, s)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.mqtt_session_expiry_s
            # room for the batches in flight and the one being gathered
            window = self._batch_size * (self._max_in_flight + 1)
            props.ReceiveMaximum = min(max(window, 100), 65535)
            client.connect_async(
                s.mqtt_host, s.mqtt_port, keepalive=30, clean_start=False, properties=props
            )
        else:  # MQTT 3.1.1 (the in-process demo broker): persistent session, no shared group
            client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=30)
        self._client = client
        stopping = self._stopping
        self._sender = threading.Thread(
            target=self._send_loop, args=(stopping,), name="ingest-send", daemon=True
        )
        self._replier = threading.Thread(
            target=self._reply_loop, args=(stopping,), name="ingest-replies", daemon=True
        )
        self._sender.start()
        self._replier.start()
        if self._receipt is not None:
            self._clock_keeper = threading.Thread(
                target=self._receipt.keep_anchored,
                args=(s.ingest_clock_sync_s, stopping),
                name="ingest-clock",
                daemon=True,
            )
            self._clock_keeper.start()
        client.loop_start()
        if self.partitioned:
            self._shares = threading.Thread(
                target=self._shares_loop, args=(stopping,), name="ingest-shares", daemon=True
            )
            self._shares.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then leave; unstored messages stay with the broker."""
        self._stopping.set()
        with self._room:
            self._room.notify_all()
        if self._sender is not None:
            self._sender.join(timeout)
            self._sender = None
        if self._clock_keeper is not None:
            self._clock_keeper.join(timeout)
            self._clock_keeper = None
        self._shares_wake.set()
        if self._shares is not None:
            self._shares.join(timeout)
            self._shares = None
            try:
                leave(self._db.conninfo, self.client_id)
            except Exception as exc:  # the others take its share once it is not seen (LIVE_S)
                log.warning(
                    "ingest member not removed at stop", extra={"error": type(exc).__name__}
                )
        flight = self._flight
        if flight is not None:
            flight.child.stop()  # it answers for the batch in hand, then leaves
        if self._replier is not None:
            self._replier.join(timeout)
            if self._replier.is_alive() and flight is not None:
                log.warning("storing process still busy at stop; its batch will be redelivered")
                flight.child.kill()
                self._replier.join(timeout)
            self._replier = None
        if flight is not None:
            flight.child.kill()  # gone already, unless it hung
            flight.child.close()
            with self._lock:
                self._flight = None
        if self._client is not None:
            with self._lock:
                self._connected = False
                self._generation += 1
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.subscribed.clear()
        self._inbox.clear()  # not acknowledged: the broker keeps them

    def _spawn(self) -> StoreProcess:
        return StoreProcess(
            Config(
                conninfo=self._db.conninfo,
                future_tolerance_s=self._settings.future_tolerance_s,
                log_level=logging.getLogger("ingest").getEffectiveLevel(),
                retry_max_s=self._retry_max_s,
                dead_letters=dead_letter_limits(self._settings),
            )
        )

    # paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("mqtt connect refused", extra={"reason": str(reason_code)})
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self._stats = _bump(self._stats, connects=1)
        group = self._settings.mqtt_shared_group
        if self.partitioned:
            with self._lock:
                self._holdings.forget()  # sent again: a SUBSCRIBE may have died with the link
                self._acked, self._round, self._refused = set(), None, False
                self._share_ready = False  # the others hold their shares until it is again
            if not flags.session_present:
                # the broker kept nothing (a session expired, a broker's state lost): every
                # gateway, until the share is in (the database may be away for a while)
                client.subscribe([(f, SubscribeOptions(qos=1)) for f in topic_filters()])
            self._shares_wake.set()
        elif self._settings.mqtt_protocol == 5:
            # Subscribe on every connect: Mosquitto does not persist shared subscriptions, so
            # after a broker restart the resumed session has its queue but not the $share one.
            # Retained messages: never at subscribe time for $share (MQTT 5 4.8.2; Mosquitto
            # before 2.0.13 sent them, again on every resubscribe), once for a new plain one.
            prefix = f"$share/{group}/" if group else ""
            retained = (
                SubscribeOptions.RETAIN_DO_NOT_SEND
                if group
                else SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            options = SubscribeOptions(qos=1, retainHandling=retained)
            client.subscribe([(prefix + f, options) for f in topic_filters()])
        else:
            client.subscribe([(f, 1) for f in topic_filters()])
        log.info("mqtt connected", extra={"session_present": flags.session_present})

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        refused = any(rc.is_failure for rc in reason_codes)
        if refused:
            log.error(
                "mqtt subscription refused", extra={"reasons": [str(r) for r in reason_codes]}
            )
        if not self.partitioned:
            if not refused:
                self.subscribed.set()
            return
        with self._lock:
            self._acked.add(mid)
            self._refused = self._refused or (refused and self._round is not None
                                              and mid in self._round)  # fmt: skip
        self._maybe_ready(client)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        taken = getattr(reason_code, "value", None) == SESSION_TAKEN_OVER
        with self._lock:
            self._connected = False
            if taken:
                self._stats = _bump(self._stats, taken_over=1)
        self.subscribed.clear()
        if taken:
            log.error("another client connected with this client id and took the session; "
                      "each ingest replica needs its own (ANBU_INGEST_REPLICA)",
                      extra={"client_id": self.client_id})  # fmt: skip
        elif not self._stopping.is_set():
            log.warning("mqtt disconnected; reconnecting", extra={"reason": str(reason_code)})

    # this worker's share of the gateways (ingest.shares)

    def _maybe_ready(self, client: mqtt.Client) -> None:
        """Once the first round since the connect is acknowledged, every filter accepted: ready
        (the others may let go of this worker's share), and the catch-all of a single worker,
        an old shared group or a lost session dropped, now that the share is in."""
        with self._lock:
            done = self._round is not None and self._round <= self._acked and not self._refused
            if not done or self._share_ready:
                return
            self._share_ready = True
        client.unsubscribe([*topic_filters(), *(f"$share/ingest/{f}" for f in topic_filters())])
        self.subscribed.set()
        self._shares_wake.set()  # tell the others at once

    def _shares_loop(self, stopping: threading.Event) -> None:
        """Every POLL_S (and at once after a connect): be seen, read the members and the
        gateways, and subscribe what this worker owns, unsubscribe what it gave away."""
        census = Census()
        while not stopping.is_set():
            self._shares_wake.clear()
            try:
                with self._lock:
                    ready = self._share_ready
                census.take(self._db.conninfo, self.client_id, ready)
                self._reconcile(census.owned, census.gateways, len(census.members))
            except Exception as exc:  # the database away, the link gone: the next round tries
                log.warning("ingest share not brought up to date; the subscriptions held stay",
                            extra={"error": type(exc).__name__})  # fmt: skip
            self._shares_wake.wait(POLL_S)

    def _reconcile(self, owned: set[str], gateways: list[str], members: int) -> None:
        client = self._client
        with self._lock:
            if client is None or not self._connected:
                return
            generation = self._generation
            plan = self._holdings.plan(owned, gateways)
            first = self._round is None
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        sent: set[int] = set()
        for part in chunks(plan.subscribe):
            rc, mid = client.subscribe([(f, options) for f in part])
            with self._lock:
                if rc != mqtt.MQTT_ERR_SUCCESS or generation != self._generation:
                    return  # the link went: the next connect sends them all again
                self._holdings.subscribed(part)
            if mid is not None:
                sent.add(mid)
        for part in chunks(plan.unsubscribe):
            rc, _ = client.unsubscribe(part)
            with self._lock:
                if rc != mqtt.MQTT_ERR_SUCCESS or generation != self._generation:
                    return
                self._holdings.unsubscribed(part)
        if first:
            with self._lock:
                if generation != self._generation:
                    return
                self._round = sent
            self._maybe_ready(client)
        if plan.subscribe or plan.unsubscribe:
            log.info("ingest share", extra={"members": members, "gateways": len(owned),
                                            "subscribed": len(plan.subscribe),
                                            "unsubscribed": len(plan.unsubscribe)})  # fmt: skip

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # The hot path: no lock (generation is only written on this thread, in _on_connect,
        # or by stop() after the sending thread is gone), one tuple into the bounded inbox.
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self._received += 1
        self._inbox.offer(
            (
                self._generation,
                msg.mid,
                msg.qos,
                topic,
                bytes(msg.payload),
                msg.retain,
                self._stamp(),
            ),
            msg.qos,
            self._stopping,
        )

    # sending thread: batches to the storing process

    def _send_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            with self._room:
                flight = self._flight
                while flight is not None and not flight.unsent and not stopping.is_set():
                    if len(flight.batches) < self._max_in_flight:
                        break
                    self._room.wait(0.1)
            if flight is None or stopping.is_set():
                return
            if flight.unsent:  # after a restart: the batches the dead process held
                self._send(flight, None)
                continue
            received = self._inbox.take(
                self._batch_size, self._batch_wait_s, _payload_bytes, BATCH_BYTES
            )
            if received:
                self._send(flight, self._batch(received))

    def _batch(self, received: list[_Received]) -> _Batch:
        self._next_id += 1
        items = [(topic, payload, retain, at) for _, _, _, topic, payload, retain, at in received]
        acks = [(generation, mid, qos) for generation, mid, qos, *_ in received]
        return _Batch(self._next_id, self._stamp(), items, acks)

    def _send(self, flight: _Flight, batch: _Batch | None) -> None:
        """Send `batch` (after any batch still unsent) to the flight's current process."""
        with self._lock:
            if batch is not None:
                flight.batches[batch.id] = batch
                flight.unsent.append(batch)
            out, flight.unsent = flight.unsent, []
            child = flight.child
        try:
            for b in out:
                child.send(b.id, b.now, b.items)
        except OSError:
            pass  # the process is gone: the replying thread restarts it and all is sent again

    # replying thread: what committed is acknowledged; a dead storing process is replaced

    def _reply_loop(self, stopping: threading.Event) -> None:
        delay = 0.1
        while True:
            with self._lock:
                flight = self._flight
            if flight is None:
                return
            try:
                reply = flight.child.recv()
            except (EOFError, OSError):
                if stopping.is_set():
                    return
                if not self._restart(flight, stopping, delay):
                    return
                delay = min(delay * 2, self._retry_max_s)
                continue
            kind = reply[0]
            if kind == "done":
                delay = 0.1
                self._committed(flight, reply[1], BatchSummary(*reply[2]))
            elif kind == "error":
                with self._lock:
                    self._stats = _bump(self._stats, db_errors=1)
            elif kind == "log":
                record = logging.makeLogRecord(reply[1])
                logging.getLogger(record.name).handle(record)

    def _committed(self, flight: _Flight, batch_id: int, summary: BatchSummary) -> None:
        with self._room:
            batch = flight.batches.pop(batch_id, None)
            self._stats = _bump(
                self._stats,
                batches=1,
                stored=summary.stored,
                duplicates=summary.duplicates,
                dead_lettered=summary.dead_lettered,
            )
            self._room.notify_all()
        if batch is None:
            return
        self._ack(batch)
        if self.on_batch is not None:
            try:
                self.on_batch(summary)
            except Exception:
                log.exception("on_batch hook failed")

    def _restart(self, flight: _Flight, stopping: threading.Event, delay: float) -> bool:
        """Replace a storing process that died; its batches stay unacknowledged and are sent
        to the new one. False when stopping first."""
        dead = flight.child
        dead.close()
        log.error(
            "the storing process died; starting another, its batches were not acknowledged",
            extra={"returncode": dead.proc.returncode, "batches": len(flight.batches)},
        )
        if stopping.wait(delay):
            return False
        try:
            child = self._spawn()
        except OSError:
            log.exception("could not start the storing process")
            return True  # recv on the dead one fails again: the next attempt, after a longer wait
        with self._room:
            flight.child = child
            flight.unsent = sorted(flight.batches.values(), key=lambda b: b.id)
            self._stats = _bump(self._stats, restarts=1)
            self._room.notify_all()
        if stopping.is_set():  # stop() may have stopped the old one just before the swap
            child.stop()
        return True

    def _ack(self, batch: _Batch) -> None:
        """PUBACK each message of the committed batch that arrived on the current connection.

        A message from an earlier connection is left alone: its packet id meant something
        on that connection only; the broker redelivers it on the resumed session.
        """
        client = self._client
        if client is None:
            return
        acked = 0
        with self._lock:
            if not self._connected:
                return
            current = self._generation
            for generation, mid, qos in batch.acks:
                if qos > 0 and generation == current:
                    client.ack(mid, qos)
                    acked += 1
            self._stats = _bump(self._stats, acked=acked)


def _bump(stats: IngestStats, **deltas: int) -> IngestStats:
    return replace(stats, **{name: getattr(stats, name) + n for name, n in deltas.items()})
