"""A worker's polls keep ticking when its wall clock steps back.

The real clock cannot be stepped in a test, so the wall clock APScheduler reads
(`datetime.now` in its scheduler module) is replaced by one the test steps back an hour, as NTP
would. APScheduler's interval jobs, which the worker used for every poll, then stall for that
hour; core.ticker.Ticker waits on monotonic deadlines and goes on. The worker's own polls run on
the Ticker, with APScheduler left only the nightly cron jobs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import apscheduler.schedulers.base as aps_base
import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from anbu.service import Runtime, build
from core.clock import VirtualClock
from core.config import Settings
from core.ticker import Ticker, next_deadline

STEP_BACK = timedelta(hours=1)


class SteppedWall(datetime):
    """datetime whose now() is the real wall clock plus an offset the test sets."""

    offset = timedelta(0)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        return datetime.now(tz) + cls.offset


@pytest.fixture
def stepped_wall(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[SteppedWall]]:
    """APScheduler's wall clock (and time.time), steppable; put back after the test."""
    SteppedWall.offset = timedelta(0)
    real_time = time.time
    monkeypatch.setattr(aps_base, "datetime", SteppedWall)
    monkeypatch.setattr(time, "time", lambda: real_time() + SteppedWall.offset.total_seconds())
    yield SteppedWall
    SteppedWall.offset = timedelta(0)


class Counter:
    """Counts a job's runs; waits for a count without sleeping."""

    def __init__(self) -> None:
        self.n = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.n += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.n >= n, timeout)


def test_apscheduler_interval_jobs_stall_when_the_wall_clock_steps_back(
    stepped_wall: type[SteppedWall],
) -> None:
    """The old path, kept as the reason for the Ticker: after a step back nothing runs."""
    runs = Counter()
    sched = BackgroundScheduler(timezone="UTC")
    sched.add_job(runs, "interval", seconds=0.05, id="poll", max_instances=1, coalesce=True)
    sched.start()
    try:
        assert runs.wait_for(3, timeout=20), "APScheduler never ran the job"
        stepped_wall.offset = -STEP_BACK
        sched.wakeup()
        before = runs.n
        # absence can only be shown over a window: 40 intervals with no run
        assert not runs.wait_for(before + 2, timeout=2.0), "APScheduler kept ticking"
    finally:
        sched.shutdown(wait=True)


def test_the_ticker_keeps_ticking_when_the_wall_clock_steps_back(
    stepped_wall: type[SteppedWall],
) -> None:
    runs = Counter()
    ticker = Ticker()
    ticker.add("poll", runs, every_s=0.05)
    ticker.start()
    try:
        assert runs.wait_for(3, timeout=20)
        stepped_wall.offset = -STEP_BACK
        before = runs.n
        assert runs.wait_for(before + 5, timeout=20), "the ticker stalled after the step"
    finally:
        ticker.stop()
    assert ticker.runs("poll") == runs.n


def test_the_ticker_follows_its_monotonic_source_and_never_bursts() -> None:
    """Driven by an injected monotonic clock: frozen, the job waits; jumped an hour (a suspend),
    it runs once, not once per missed interval."""
    real = time.monotonic
    jump = {"s": 0.0}
    frozen: dict[str, float | None] = {"at": None}

    def monotonic() -> float:
        at = frozen["at"]
        return (at if at is not None else real()) + jump["s"]

    ticker = Ticker(monotonic=monotonic)
    ticker.add("poll", lambda: None, every_s=0.05, first_in_s=0.0)
    ticker.start()
    try:
        assert ticker.wait_runs("poll", 2, timeout=20)
        frozen["at"] = real()  # the injected time stands still: no deadline comes due
        settled = ticker.runs("poll")
        assert not ticker.wait_runs("poll", settled + 2, timeout=0.5)
        jump["s"] = 3600.0  # an hour passes at once
        assert ticker.wait_runs("poll", settled + 1, timeout=20)
        assert not ticker.wait_runs("poll", settled + 3, timeout=0.5), "missed runs replayed"
    finally:
        ticker.stop()


def test_next_deadline_keeps_the_phase_and_skips_missed_runs() -> None:
    assert next_deadline(10.0, 10.01, 2.0) == 12.0
    assert next_deadline(10.0, 15.0, 2.0) == 16.0  # 12 and 14 were missed while it ran
    assert next_deadline(10.0, 16.0, 2.0) == 18.0


def test_a_stopped_ticker_runs_nothing_more() -> None:
    runs = Counter()
    ticker = Ticker()
    ticker.add("poll", runs, every_s=0.05, first_in_s=0.0)
    ticker.start()
    assert runs.wait_for(1, timeout=20)
    ticker.stop()
    after = runs.n
    assert ticker.runs("poll") == after
    with pytest.raises(ValueError, match="positive"):
        Ticker().add("bad", runs, every_s=0)


@pytest.fixture
def runtime(db_url: str) -> Iterator[Runtime]:
    settings = Settings(
        database_url=db_url,
        due_poll_s=0.1,
        checkin_tick_s=0.1,
        call_queue_poll_s=0.1,
        twilio_api_base_url="http://127.0.0.1:9",  # nothing is dialled: no plans, no alerts
    )
    rt = build(settings, clock=VirtualClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC)))
    yield rt
    rt.stop()


def test_the_worker_polls_keep_ticking_when_the_wall_clock_steps_back(
    runtime: Runtime, stepped_wall: type[SteppedWall]
) -> None:
    runtime.start_worker()
    ticker, sched = runtime.ticker, runtime.scheduler
    assert ticker is not None and sched is not None
    # every poll is on the ticker; APScheduler keeps the nightly wall-clock jobs only
    assert {"due", "intake", "reconcile", "outbox", "checkins", "call-queue"} <= set(ticker.names)
    nightly = {j.id for j in sched.get_jobs()}
    assert {"learn", "night_review", "routine_review", "dead_letters", "review_sums"} <= nightly
    assert not nightly & set(ticker.names)  # no poll left on the wall clock
    assert all(type(j.trigger).__name__ == "CronTrigger" for j in sched.get_jobs())

    assert ticker.wait_runs("due", 2, timeout=30)
    stepped_wall.offset = -STEP_BACK
    for name in ("due", "checkins", "outbox"):
        before = ticker.runs(name)
        assert ticker.wait_runs(name, before + 3, timeout=30), f"{name} stalled after the step"


def test_a_job_raising_systemexit_keeps_its_poll_alive() -> None:
    """A BaseException in a job would end its thread silently; the poll must go on."""
    calls = Counter()

    def job() -> None:
        calls()
        if calls.n == 1:
            raise SystemExit(3)

    ticker = Ticker()
    ticker.add("poll", job, every_s=0.02, first_in_s=0.0)
    ticker.start()
    try:
        assert ticker.wait_runs("poll", 3, timeout=20)  # ran again after the SystemExit
        age = ticker.last_run_age("poll")
        assert age is not None and age >= 0.0
    finally:
        ticker.stop()


def test_stop_waits_once_for_all_jobs_and_a_restart_revives_no_old_thread() -> None:
    release = threading.Event()
    started = threading.Barrier(3)

    def stuck() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            started.wait(10)
        release.wait(30)

    ticker = Ticker()
    ticker.add("slow1", stuck, every_s=0.01, first_in_s=0.0)
    ticker.add("slow2", stuck, every_s=0.01, first_in_s=0.0)
    ticker.start()
    started.wait(10)  # both jobs are inside their run
    t0 = time.monotonic()
    ticker.stop(timeout=0.5)
    assert time.monotonic() - t0 < 1.5  # one timeout for all, not 0.5 s per job
    # the old threads outlived the stop: a start now would run each job beside itself
    with pytest.raises(RuntimeError, match="still running"):
        ticker.start()
    release.set()
    ticker.stop(timeout=10)  # joins the threads the first stop left behind
    ticker.start()  # they must not run their loops again
    try:
        assert ticker.wait_runs("slow1", 2, timeout=20)
        names = [t.name for t in threading.enumerate() if t.name == "tick-slow1"]
        deadline = time.monotonic() + 10
        while len(names) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a thread count: there is no event for a thread's end
            names = [t.name for t in threading.enumerate() if t.name == "tick-slow1"]
        assert names == ["tick-slow1"]
    finally:
        release.set()
        ticker.stop()
