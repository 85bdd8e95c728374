"""`anbu demo` as a user runs it: a subprocess on embedded defaults that must reach the care
manager and raise every kind of finding its scenarios script, from a learned routine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

KINDS = ("inactivity", "not_up", "not_back", "gateway_offline", "site_outage", "help_button",
         "alarm_test")  # fmt: skip


@pytest.mark.parametrize("broker", ["mosquitto", "inproc"])
def test_demo_runs_the_scenario_to_the_care_manager(tmp_path: Path, broker: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    deep = tmp_path.joinpath(*[f"checked-out-four-folders-deep-{i}" for i in range(4)])
    deep.mkdir(parents=True)
    assert len(str(deep)) > 107  # the embedded server's socket could not be bound under it
    env["TMPDIR"] = str(deep)
    done = subprocess.run(
        [sys.executable, "-m", "anbu.cli", "demo", "--duration", "150", "--speed", "2000",
         "--port", "0", "--stop-when-done", "--broker", broker],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "안부전화" in out and "담당자 알림" in out
    assert "OK:" in out
    assert "+8210" not in out  # no phone number is ever printed
    assert re.search(r"History: \d+ readings stored", out), out[:2000]
    for kind in KINDS:  # the summary ticks each, and the narrator told it as it happened
        assert re.search(rf"^✓ {kind} ", out, re.MULTILINE), f"{kind} not raised\n{out[-4000:]}"
        assert re.search(rf"(발견 finding|지역 장애 incident) .*{kind}", out), kind
    # the smoke alarm's test press is a test, never a fire
    assert re.search(r"^✓ no fire_alarm ", out, re.MULTILINE), out[-4000:]
    assert not re.search(r"발견 finding .*fire_alarm", out), out[-4000:]
