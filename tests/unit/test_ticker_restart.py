"""A Ticker never runs a job beside itself: start() is refused while a thread of an earlier
start is still running (its stop() timed out), and allowed again once that thread has ended."""

from __future__ import annotations

import threading

import pytest

from core.ticker import Ticker


def test_start_is_refused_while_a_previous_starts_job_still_runs() -> None:
    release, running = threading.Event(), threading.Event()
    overlapping: list[int] = []
    active = [0]
    lock = threading.Lock()

    def slow() -> None:
        with lock:
            active[0] += 1
            overlapping.append(active[0])
        running.set()
        release.wait(10)
        with lock:
            active[0] -= 1

    ticker = Ticker()
    ticker.add("slow", slow, every_s=0.01, first_in_s=0)
    ticker.start()
    assert running.wait(5)
    ticker.stop(timeout=0.05)  # the job is still in its run: the thread outlives the stop
    with pytest.raises(RuntimeError, match="still running"):
        ticker.start()
    release.set()
    ticker.stop(timeout=5)  # joins what the earlier stop left behind
    running.clear()
    release.clear()
    ticker.start()
    assert running.wait(5)
    release.set()
    ticker.stop(timeout=5)
    assert max(overlapping) == 1
