"""Interval jobs on monotonic time: a wall-clock step (NTP, a VM resumed) neither stalls nor
bursts them.

APScheduler's interval trigger computes each next run on the wall clock, so a worker whose
clock steps back an hour runs none of its polls for that hour. A Ticker waits on
`time.monotonic()` deadlines instead; the wall clock is left to the cron jobs (nightly learning
at 03:00 local), which mean wall-clock time. What a job judges as "now" still comes from the
injected Clock or the database, as before.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    name: str
    run: Callable[[], Any]
    every_s: float
    first_in_s: float


def next_deadline(deadline: float, now: float, every_s: float) -> float:
    """The deadline after `deadline` for a job run every `every_s`: runs missed while it was
    busy are skipped (never run back to back to catch up) and the phase is kept."""
    following = deadline + every_s
    if following > now:
        return following
    return following + math.ceil((now - following) / every_s + 1e-9) * every_s


class Ticker:
    """Runs each job every `every_s` seconds of `monotonic` time, each on its own thread: a slow
    job never delays another and never overlaps itself, not even across a stop() that timed
    out and a new start(). A job that raises is logged and runs again at its next deadline.
    Nothing starts before start(); stop() ends every thread."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._jobs: list[_Job] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lingering: list[threading.Thread] = []  # outlived a stop() that timed out
        self._runs: dict[str, int] = {}
        self._last_run: dict[str, float] = {}
        self._ran = threading.Condition()

    def add(
        self, name: str, job: Callable[[], Any], every_s: float, first_in_s: float | None = None
    ) -> None:
        """Run `job` every `every_s` seconds, first after `first_in_s` (default: `every_s`)."""
        if every_s <= 0:
            raise ValueError(f"job {name!r}: every_s must be positive, not {every_s}")
        if self._threads:
            raise RuntimeError("add jobs before start()")
        if any(j.name == name for j in self._jobs):
            raise ValueError(f"job {name!r} added twice")
        first = every_s if first_in_s is None else max(0.0, first_in_s)
        self._jobs.append(_Job(name, job, every_s, first))
        self._runs[name] = 0

    @property
    def names(self) -> list[str]:
        return [j.name for j in self._jobs]

    def runs(self, name: str) -> int:
        """How many times `name` has run (finished, raised or not) since start()."""
        with self._ran:
            return self._runs[name]

    def wait_runs(self, name: str, n: int, timeout: float) -> bool:
        """Wait until `name` has run at least `n` times; False on timeout."""
        with self._ran:
            return self._ran.wait_for(lambda: self._runs[name] >= n, timeout)

    def last_run_age(self, name: str) -> float | None:
        """Seconds of `monotonic` time since `name` last finished a run (None: not yet): a job
        stuck on a lock shows here long before anything else notices."""
        with self._ran:
            last = self._last_run.get(name)
        return None if last is None else self._monotonic() - last

    def start(self) -> None:
        """Start every job's thread. Refused while running, and while a thread of an earlier
        start is still in a run (its stop() timed out): the job would overlap itself."""
        if self._threads:
            raise RuntimeError("the ticker is running already")
        self._lingering = [t for t in self._lingering if t.is_alive()]
        if self._lingering:
            names = ", ".join(t.name for t in self._lingering)
            raise RuntimeError(f"jobs of an earlier start are still running: {names}")
        # A new event each start: threads of an earlier start that outlived its stop() keep
        # theirs, set, and end at their next wait instead of coming back to life.
        self._stop = threading.Event()
        for job in self._jobs:
            thread = threading.Thread(
                target=self._loop, args=(job, self._stop), name=f"tick-{job.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop every job (one that is running finishes first) and join the threads, all within
        one `timeout` (not one per job); those of an earlier stop that timed out too. A thread
        still running then is kept, and start() is refused until it has ended."""
        self._stop.set()
        end = None if timeout is None else time.monotonic() + timeout
        left: list[threading.Thread] = []
        for thread in self._lingering + self._threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
            if thread.is_alive():
                log.warning("ticker job still running at stop", extra={"job": thread.name})
                left.append(thread)
        self._threads = []
        self._lingering = left

    def _loop(self, job: _Job, stop: threading.Event) -> None:
        deadline = self._monotonic() + job.first_in_s
        while True:
            delay = deadline - self._monotonic()
            # Event.wait times out on the monotonic clock as well
            if stop.wait(max(0.0, delay)):
                return
            if self._monotonic() < deadline:  # an injected time source that runs slower
                continue
            try:
                job.run()
            except BaseException:  # the rows are the truth: the next deadline
                # tries again. BaseException too: a SystemExit raised in a job would otherwise
                # end this thread silently and that poll would never run again.
                log.exception("ticker job failed", extra={"job": job.name})
            with self._ran:
                self._runs[job.name] += 1
                self._last_run[job.name] = self._monotonic()
                self._ran.notify_all()
            deadline = next_deadline(deadline, self._monotonic(), job.every_s)
