"""The live care queue: one LISTEN per web process, fanned out to care managers' streams.

Migration 0073 notifies channel `anbu_queue` with a resident's dong code whenever an alert of
theirs changes what the queue shows. A web process keeps one database connection LISTENing,
in a thread of its own, only while some care manager's page is open (it closes a second
after the last stream ends), and wakes each stream whose dongs the notification names. A
stream says only "your queue changed": the page then reads the queue again through its own
route, with the care manager's own session and rights, so nothing passes here that the
route would not show. The connection is checked when quiet (a dead one raises, and is opened
again with a growing wait); every stream is woken after each (re)connect, for what changed
while nobody listened. A stream sends a `ping` event every PING_S, so the page can tell a
live stream from one a proxy holds or a sleeping laptop lost, and ends by itself after about
STREAM_LIFE_S; a care manager has at most STREAMS_PER_MANAGER open in one process; when the
server stops, close() ends every stream at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
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
CHECK_S = 15.0  # a quiet LISTEN connection is checked this often (a dead one raises)
PING_S = 20.0  # a ping event this often: the page knows its stream is alive
STREAM_LIFE_S = 600.0  # then the stream ends and the browser opens it again (the session is
# checked once more: a care manager logged out elsewhere, or moved to another dong, stops);
# each stream's life is spread by up to a tenth, so pages do not all come back at once
RETRY_MS = 5000  # the browser's wait before it opens an ended stream again
EVENT_GAP_S = 2.0  # at most one `queue` event a stream this often: a burst is one re-read
STREAMS_PER_MANAGER = 4  # in one web process; past it 429 (the page then polls)


class TooManyStreams(Exception):
    """A care manager already has STREAMS_PER_MANAGER streams open in this process."""


@dataclass(eq=False)
class Subscription:
    """One open stream: whose, the dongs it shows and the event its coroutine waits on."""

    owner: int
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
        self.closing = False  # set by close(): streams end, new ones are refused
        self.connects = 0  # LISTEN connections opened, for tests and metrics
        self.listening = threading.Event()

    def room_for(self, owner: int) -> bool:
        """Whether `owner` may open one more stream (the route answers 429 when not)."""
        with self._lock:
            return sum(1 for s in self._subs if s.owner == owner) < STREAMS_PER_MANAGER

    def subscribe(self, owner: int, dongs: Iterable[str]) -> Subscription:
        """A new stream's subscription; TooManyStreams past STREAMS_PER_MANAGER."""
        sub = Subscription(owner, frozenset(dongs), asyncio.get_running_loop())
        with self._lock:
            if sum(1 for s in self._subs if s.owner == owner) >= STREAMS_PER_MANAGER:
                raise TooManyStreams(owner)
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="queue-feed", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def close(self) -> None:
        """The server is stopping: end every stream now (they would hold the stop up)."""
        self.closing = True
        self._wake(None)

    def stop(self) -> None:
        """End the listener (the app's shutdown)."""
        self.close()
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)
        self.listening.clear()

    def _wake(self, dong: str | None) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if dong is None or dong in sub.dongs:
                sub.wake()

    def _done_if_idle(self) -> bool:
        """True (and the thread let go) when no stream is open."""
        with self._lock:  # a stream subscribing after this starts a new thread
            if self._subs:
                return False
            self._thread = None
            self.listening.clear()
            return True

    def _run(self) -> None:
        wait = RETRY_S[0]
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10,
                                     keepalives_idle=10, keepalives_interval=5,
                                     keepalives_count=3,
                                     application_name="anbu-queue-feed") as conn:  # fmt: skip
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connects += 1
                    self.listening.set()
                    wait = RETRY_S[0]
                    self._wake(None)  # whatever changed while nobody listened
                    if self._listen(conn):
                        return
            except Exception as exc:  # a lost connection, or anything else: try again
                self.listening.clear()
                log.warning("queue feed lost its connection; reconnecting",
                            extra={"error": type(exc).__name__, "wait_s": wait})  # fmt: skip
                if self._stop.wait(wait) or self._done_if_idle():
                    return
                wait = min(wait * 2, RETRY_S[1])
        self.listening.clear()

    def _listen(self, conn: psycopg.Connection[Any]) -> bool:
        """Wake streams until stopped or idle (True: the thread is done)."""
        checked = idle_since = time.monotonic()
        while not self._stop.is_set():
            for note in conn.notifies(timeout=0.5, stop_after=1):
                self._wake(note.payload)
                checked = time.monotonic()
            now = time.monotonic()
            if now - checked > CHECK_S:
                conn.execute("SELECT 1")  # a dead connection raises here
                checked = now
            with self._lock:
                open_ = bool(self._subs)
            if open_:
                idle_since = now
            elif now - idle_since > IDLE_CLOSE_S and self._done_if_idle():
                return True
        return True


def stop_feed(app_state: Any) -> None:
    """At the app's shutdown: end the listener, if one was started."""
    feed = getattr(app_state, "queue_feed", None)
    if feed is not None:
        feed.stop()


def close_streams(app_state: Any) -> None:
    """As the server begins to stop: end the open streams at once."""
    feed = getattr(app_state, "queue_feed", None)
    if feed is not None:
        feed.close()


def feed_of(app_state: Any, conninfo: str) -> QueueFeed:
    """The app's one feed, made on first use."""
    feed = getattr(app_state, "queue_feed", None)
    if feed is None:
        feed = app_state.queue_feed = QueueFeed(conninfo)
    return feed


def _event(name: str) -> str:
    return f"event: {name}\ndata: {{}}\n\n"


async def queue_events(
    feed: QueueFeed, owner: int, dongs: Iterable[str], request: Any
) -> AsyncIterator[str]:
    """Server-sent events for one care manager's queue: `ready` once, `queue` whenever their
    dongs' queue changed (at most one every EVENT_GAP_S: several changes come as one), `ping`
    every PING_S. Subscribed when the stream starts, given up however it ends."""
    try:
        sub = feed.subscribe(owner, dongs)
    except TooManyStreams:
        return  # opened meanwhile by the same manager: this one ends at once
    try:
        yield f"retry: {RETRY_MS}\n\n" + _event("ready")
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_LIFE_S * (1 - random.random() / 10)
        while loop.time() < ends and not feed.closing:
            try:
                await asyncio.wait_for(sub.changed.wait(), min(PING_S, ends - loop.time()))
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield _event("ping")
                continue
            if feed.closing:
                return
            sub.changed.clear()
            yield _event("queue")
            await asyncio.sleep(EVENT_GAP_S)  # changes meanwhile set the event again
    finally:
        feed.unsubscribe(sub)
