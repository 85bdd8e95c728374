"""Real and virtual clocks; policy code takes `now` from one of these, never from datetime.now."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that starts at a given moment, runs `speed` times real time and can be advanced."""

    def __init__(self, start: datetime, speed: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs an aware start time")
        self._lock = threading.Lock()
        self._base = start.astimezone(UTC)
        self._mono = time.monotonic()
        self._speed = speed

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._mono) * self._speed
            return self._base + timedelta(seconds=elapsed)

    def advance(self, delta: timedelta) -> datetime:
        """Jump forward (or back) by `delta` and return the new time."""
        with self._lock:
            elapsed = (time.monotonic() - self._mono) * self._speed
            self._base = self._base + timedelta(seconds=elapsed) + delta
            self._mono = time.monotonic()
            return self._base

    @property
    def speed(self) -> float:
        return self._speed
