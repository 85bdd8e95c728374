"""The live care queue: one LISTEN per web process, fanned out to care managers' streams.

Migration 0073 notifies channel `anbu_queue` with a resident's dong code whenever an alert of
theirs changes what the queue shows. A web process keeps one database connection LISTENing,
in a thread of its own, only while some care manager's page is open (it closes a second
after the last stream ends), and wakes each stream whose dongs the notification names. A
stream says only "your queue changed": the page then reads the queue again through its own
route, with the care manager's own session and rights, so nothing passes here that the
route would not show. A lost connection is opened again with a growing wait; every stream is
woken after each (re)connect, for what changed while nobody listened.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "anbu_queue"
IDLE_CLOSE_S = 1.0  # the LISTEN connection closes this long after the last stream ends
RETRY_S = (0.5, 30.0)  # first and longest wait before opening a lost connection again


@dataclass(eq=False)
class Subscription:
    """One open stream: the dongs it shows and the event its coroutine waits on."""

    dongs: frozenset[str]
    loop: asyncio.AbstractEventLoop
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.changed.set)


class QueueFeed:
    """See the module's text. subscribe() from a coroutine; unsubscribe() when it ends."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connects = 0  # LISTEN connections opened, for tests and metrics
        self.listening = threading.Event()

    def subscribe(self, dongs: Iterable[str]) -> Subscription:
        sub = Subscription(frozenset(dongs), asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="queue-feed", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def stop(self) -> None:
        """End the listener now (the app's shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)

    def _wake(self, dong: str | None) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if dong is None or dong in sub.dongs:
                sub.wake()

    def _idle(self) -> bool:
        with self._lock:
            return not self._subs

    def _run(self) -> None:
        wait = RETRY_S[0]
        idle_since: float | None = None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connects += 1
                    self.listening.set()
                    wait = RETRY_S[0]
                    self._wake(None)  # whatever changed while nobody listened
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake(note.payload)
                        if not self._idle():
                            idle_since = None
                        elif idle_since is None:
                            idle_since = time.monotonic()
                        elif time.monotonic() - idle_since > IDLE_CLOSE_S:
                            with self._lock:  # closes only if still nobody: a new stream
                                if not self._subs:  # after this starts a new thread
                                    self._thread = None
                                    self.listening.clear()
                                    return
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("queue feed lost its connection; reconnecting",
                            extra={"error": type(exc).__name__, "wait_s": wait})  # fmt: skip
                if self._stop.wait(wait):
                    return
                wait = min(wait * 2, RETRY_S[1])
                with self._lock:  # nobody waits any more: stop trying
                    if not self._subs:
                        self._thread = None
                        return
        self.listening.clear()


def stop_feed(app_state: Any) -> None:
    """At the app's shutdown: end the listener, if one was started."""
    feed = getattr(app_state, "queue_feed", None)
    if feed is not None:
        feed.stop()


def feed_of(app_state: Any, conninfo: str) -> QueueFeed:
    """The app's one feed, made on first use."""
    feed = getattr(app_state, "queue_feed", None)
    if feed is None:
        feed = app_state.queue_feed = QueueFeed(conninfo)
    return feed


PING_S = 20.0  # a comment line this often: proxies keep the stream, a closed tab is noticed
STREAM_LIFE_S = 600.0  # then the stream ends and the browser opens it again (the session is
# checked once more: a care manager logged out elsewhere, or moved to another dong, stops)
RETRY_MS = 5000  # the browser's wait before it opens an ended stream again


async def queue_events(feed: QueueFeed, dongs: Iterable[str], request: Any) -> AsyncIterator[str]:
    """Server-sent events for one care manager's queue: `ready` once, then `queue` whenever
    their dongs' queue changed (several changes close together may come as one)."""
    sub = feed.subscribe(dongs)
    try:
        yield f"retry: {RETRY_MS}\n\nevent: ready\ndata: {{}}\n\n"
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_LIFE_S
        while loop.time() < ends:
            try:
                await asyncio.wait_for(sub.changed.wait(), min(PING_S, ends - loop.time()))
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": ping\n\n"
                continue
            sub.changed.clear()
            yield "event: queue\ndata: {}\n\n"
    finally:
        feed.unsubscribe(sub)
