"""The consumer's inbox: what paho's network thread received, waiting for the sending thread.

Bounded, so that a flood while storing is slow or the database is down cannot grow the
process without limit. Past `limit`, a QoS 0 message is dropped and counted (the broker would
not resend it either; firmware defaults to QoS 0); a QoS 1/2 one is never dropped: the
network thread stops reading until the sending thread takes some (back-pressure: the broker
holds the rest, and redelivers what is unacknowledged anyway).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

GATHER_S = 0.001
"""While a batch is gathered, how long the taker sleeps before taking all that came meanwhile."""


class Inbox(Generic[T]):
    """One producer (paho's thread: `offer`), one consumer (the sending thread: `take`)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._drained = threading.Event()  # set by `take` each time it takes some
        self.dropped = 0  # written by the producer only (kept off any lock: the hot path)
        self.paused = 0
        self._full = False  # the producer is inside a full-inbox episode (logged once each)
        self._carried: list[T] = []  # taken, past a batch's budget: first in the next batch

    def size(self) -> int:
        return self._queue.qsize() + len(self._carried)

    def offer(self, item: T, qos: int, stopping: threading.Event) -> bool:
        """Queue `item`; False when it was dropped (QoS 0 on a full inbox) or `stopping` was
        set while waiting for room (QoS 1/2: unacknowledged, the broker redelivers it)."""
        size = self._queue.qsize()  # only this thread adds: it can only shrink meanwhile
        if size >= self.limit:
            if not self._make_room(qos, stopping):
                return False
        elif self._full and size < self.limit // 2:
            self._full = False
            log.info("ingest inbox has room again", extra={"dropped": self.dropped})
        self._queue.put(item)
        return True

    def _make_room(self, qos: int, stopping: threading.Event) -> bool:
        if not self._full:
            self._full = True
            log.warning("ingest inbox full; dropping QoS 0 messages, pausing on QoS 1/2",
                        extra={"inbox_max": self.limit})  # fmt: skip
        if qos == 0:
            self.dropped += 1
            return False
        self.paused += 1
        while True:
            self._drained.clear()
            if self._queue.qsize() < self.limit:
                self._full = False
                return True
            if stopping.is_set():
                return False
            self._drained.wait(0.1)

    def take(
        self, most: int, wait_s: float, weigh: Callable[[T], int] | None = None, budget: int = 0
    ) -> list[T]:
        """Up to `most` items: what is waiting, plus what comes within `wait_s`; waits up to
        0.1 s for the first (empty list: none came). With `weigh`, no more than `budget` in
        all (the first item always, whatever it weighs): the item that would pass it is kept
        for the next batch."""
        q = self._queue
        if self._carried:
            first = self._carried.pop()
        else:
            try:
                first = q.get(timeout=0.1)
            except queue.Empty:
                return []
        batch = [first]
        total = 0 if weigh is None else weigh(first)
        deadline = time.monotonic() + wait_s
        while len(batch) < most:
            try:
                item = q.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # a short sleep, then all that came meanwhile: waking for each message as it
                # came cost the receiving process a wake-up and a GIL hand-over per message
                time.sleep(min(remaining, GATHER_S))
                continue
            if weigh is not None:
                total += weigh(item)
                if total > budget:
                    self._carried.append(item)
                    break
            batch.append(item)
        self._drained.set()  # a producer paused on a full inbox may go on
        return batch

    def clear(self) -> None:
        """Forget what waits (at stop: unacknowledged, the broker keeps it)."""
        self._carried.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
