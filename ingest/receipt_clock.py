"""The time ingest stamps a message with on receipt: the database's clock, carried forward by
this host's monotonic clock.

Receipt times decide what counts as "far in the future" (dead-lettered) and stamp readings
that carry no time of their own, which move `home_activity`. Read from the host's wall clock,
an NTP step forward would mask inactivity for that long and a step back over the tolerance
would dead-letter every device-stamped reading. So the clock is anchored to the database's
`clock_timestamp()` (the clock every other judgment in anbu is made against) and advanced by
`time.monotonic()`, which never steps; it is anchored again every `ingest_clock_sync_s` to
follow the database's own corrections. Until the first anchor (the database is away) the wall
clock stands in.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import psycopg

from core.clock import Clock

log = logging.getLogger(__name__)

SKEW_WARN = timedelta(seconds=30)  # a host clock this far off the database's is worth a line


class ReceiptClock:
    """now() = the database's time at the last anchor + monotonic time since; thread-safe."""

    def __init__(self, conninfo: str, wall: Clock, connect_timeout_s: int = 5) -> None:
        self._conninfo = conninfo
        self._wall = wall  # the host's clock: until the first anchor, and to report skew
        self._connect_timeout_s = connect_timeout_s
        self._anchor: tuple[datetime, float] | None = None  # (database time, monotonic then)

    @property
    def anchored(self) -> bool:
        return self._anchor is not None

    def now(self) -> datetime:
        anchor = self._anchor  # one read: a tuple swapped whole by anchor()
        if anchor is None:
            return self._wall.now()
        return anchor[0] + timedelta(seconds=time.monotonic() - anchor[1])

    def anchor(self) -> bool:
        """Read the database's clock once; False (keeping the old anchor) when it is away."""
        try:
            with psycopg.connect(self._conninfo, connect_timeout=self._connect_timeout_s) as conn:
                before = time.monotonic()
                row = conn.execute("SELECT clock_timestamp()").fetchone()
                after = time.monotonic()
        except psycopg.Error as exc:
            log.warning("database clock not read; receipt times run on",
                        extra={"error": type(exc).__name__})  # fmt: skip
            return False
        assert row is not None
        db_time: datetime = row[0]
        self._anchor = (db_time, (before + after) / 2)
        skew = self._wall.now() - self.now()
        if abs(skew) > SKEW_WARN:
            log.warning("this host's wall clock is off the database's; receipt times follow "
                        "the database", extra={"skew_s": round(skew.total_seconds(), 1)})  # fmt: skip
        return True

    def keep_anchored(self, every_s: float, stopping: threading.Event) -> None:
        """Anchor now and every `every_s` (sooner while the database is away) until stopping."""
        while not stopping.is_set():
            wait = every_s if self.anchor() else min(every_s, 5.0)
            if stopping.wait(wait):
                return
