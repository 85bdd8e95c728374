"""A bench stopped with SIGTERM stops the servers it started (they were left running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.integration.test_stopping import processes_mentioning


def _bench_servers() -> list[int]:
    """PostgreSQL and Mosquitto processes whose command line names a bench's own directory."""
    return [
        pid
        for pid, cmd in processes_mentioning("anbu-bench-")
        if "postgres" in cmd or "mosquitto" in cmd
    ]


def test_a_bench_stopped_with_sigterm_stops_its_postgres_and_mosquitto() -> None:
    before = set(_bench_servers())
    cmd = [sys.executable, "-m", "anbu.cli", "bench", "ingest", "--messages", "200000",
           "--batched", "10", "--kill", "0"]  # fmt: skip
    bench = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(set(_bench_servers()) - before) < 2:  # both of its servers are up
            assert bench.poll() is None, "the bench ended before its servers were up"
            assert time.monotonic() < deadline, "the bench's servers did not come up"
            time.sleep(0.2)
        os.kill(bench.pid, signal.SIGTERM)
        assert bench.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while set(_bench_servers()) - before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not set(_bench_servers()) - before, "the bench left its servers running"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
