"""The MQTT consumer: persistent MQTT 5 session, shared subscription, ack only after commit.

paho's network thread puts each message on a queue (with the connection generation it
arrived on); one storing thread takes batches, stores them through `Store` in one
transaction and only then sends the PUBACKs. A failed transaction is retried with backoff
and never acknowledged, so nothing is dropped; a message whose connection has gone is not
acknowledged either (its packet id belongs to the old connection): the broker redelivers it
on the resumed session and the unique keys make the second copy harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from anbu.clock import Clock
from anbu.config import Settings
from anbu.db import Database
from ingest.adapters import topic_filters
from ingest.store import BatchSummary, Message, Store

log = logging.getLogger(__name__)


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


# What paho's thread hands the storing thread: (connection generation, mid, qos, message).
_Received = tuple[int, int, int, Message]


class IngestService:
    """Reads gateways' messages from the broker into PostgreSQL; start() and stop() do the work."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        *,
        batch_size: int = 500,
        batch_wait_s: float = 0.005,
        retry_max_s: float = 5.0,
        on_batch: Callable[[BatchSummary], None] | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._retry_max_s = retry_max_s
        self.on_batch = on_batch
        self._client: mqtt.Client | None = None
        self._store: Store | None = None
        self._inbox: queue.SimpleQueue[_Received] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # guards generation/connected and the storing counters
        self._generation = 0
        self._connected = False
        self._received = 0  # written by paho's thread only (kept off the lock: hot path)
        self._stats = IngestStats()
        self.subscribed = threading.Event()

    @property
    def stats(self) -> IngestStats:
        with self._lock:
            return replace(self._stats, messages=self._received)

    def start(self) -> None:
        """Connect (retrying in the background) and start the storing thread."""
        s = self._settings
        self._stopping = threading.Event()  # a fresh one: a stuck old worker keeps its own
        self._store = Store(self._db, future_tolerance_s=s.future_tolerance_s)
        v5 = s.mqtt_protocol == 5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.username_pw_set(s.mqtt_username, s.mqtt_password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.mqtt_session_expiry_s
            props.ReceiveMaximum = max(self._batch_size * 2, 100)  # room for a batch in flight
            client.connect_async(
                s.mqtt_host, s.mqtt_port, keepalive=30, clean_start=False, properties=props
            )
        else:  # MQTT 3.1.1 (the in-process demo broker): persistent session, no shared group
            client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=30)
        self._client = client
        self._worker = threading.Thread(
            target=self._run, args=(self._store, self._stopping), name="ingest-store", daemon=True
        )
        self._worker.start()
        client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then leave; unstored messages stay with the broker."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("storing thread still busy at stop; its batch will be redelivered")
            self._worker = None
        if self._client is not None:
            with self._lock:
                self._connected = False
                self._generation += 1
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.subscribed.clear()
        while not self._inbox.empty():  # not acknowledged: the broker keeps them
            self._inbox.get_nowait()

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
        if self._settings.mqtt_protocol == 5:
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
        if any(rc.is_failure for rc in reason_codes):
            log.error(
                "mqtt subscription refused", extra={"reasons": [str(r) for r in reason_codes]}
            )
            return
        self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        with self._lock:
            self._connected = False
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("mqtt disconnected; reconnecting", extra={"reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # The hot path: no lock (generation is only written on this thread, in _on_connect,
        # or by stop() after the storing thread is gone), one tuple onto a SimpleQueue.
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self._received += 1
        message = Message(topic, bytes(msg.payload), msg.retain, self._clock.now())
        self._inbox.put((self._generation, msg.mid, msg.qos, message))

    # storing thread

    def _run(self, store: Store, stopping: threading.Event) -> None:
        while not stopping.is_set():
            batch = self._take_batch()
            summary = self._store_until_committed(store, stopping, batch) if batch else None
            if summary is None:
                continue
            self._ack(batch)
            if self.on_batch is not None:
                try:
                    self.on_batch(summary)
                except Exception:
                    log.exception("on_batch hook failed")

    def _take_batch(self) -> list[_Received]:
        """Up to batch_size messages: what is waiting, plus what comes within batch_wait_s."""
        inbox = self._inbox
        try:
            first = inbox.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self._batch_wait_s
        while len(batch) < self._batch_size:
            try:
                batch.append(inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _store_until_committed(
        self, store: Store, stopping: threading.Event, batch: list[_Received]
    ) -> BatchSummary | None:
        """Store the batch, retrying with backoff; None only when stopping first."""
        delay = 0.05
        messages = [r[3] for r in batch]
        while True:
            try:
                summary = store.store_batch(messages, self._clock.now())
            except Exception:
                log.exception("storing a batch failed; retrying", extra={"size": len(batch)})
                with self._lock:
                    self._stats = _bump(self._stats, db_errors=1)
                if stopping.wait(delay):
                    return None
                delay = min(delay * 2, self._retry_max_s)
                continue
            with self._lock:
                self._stats = _bump(
                    self._stats,
                    batches=1,
                    stored=summary.stored,
                    duplicates=summary.duplicates,
                    dead_lettered=summary.dead_lettered,
                )
            return summary

    def _ack(self, batch: list[_Received]) -> None:
        """PUBACK each message of the committed batch that arrived on the current connection.

        A message from an earlier connection is left alone: its packet id meant something
        on that connection only; the broker redelivers it on the resumed session.
        """
        client = self._client
        if client is None:
            return
        with self._lock:
            if not self._connected:
                return
            current = self._generation
            for generation, mid, qos, _ in batch:
                if qos > 0 and generation == current:
                    client.ack(mid, qos)


def _bump(stats: IngestStats, **deltas: int) -> IngestStats:
    return replace(stats, **{name: getattr(stats, name) + n for name, n in deltas.items()})
