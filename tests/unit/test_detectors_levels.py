"""The live sweep's vectorised levels: learned per slot, fixed in grace, capped per home."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.inactivity import InactivityPolicy
from detectors.levels import learned_levels, loop_levels

POLICY = InactivityPolicy()  # fixed 6 / 12 / 24 h
NAN = float("nan")
NOW = 100 * 3600.0


def _levels(
    silence_h: list[float], watch: list[float], override: list[list[float]] | None
) -> list[int]:
    """Levels from both implementations (they must agree), each home's table flat at `watch`."""
    since = NOW - np.array(silence_h) * 3600.0
    slots = np.zeros(len(silence_h), dtype=np.int64)
    w = np.repeat(np.array(watch)[:, None], 48, axis=1)
    step = np.ones_like(w)
    o = None if override is None else np.array(override)
    fast: list[int] = learned_levels(since, NOW, slots, w, step, POLICY, override_h=o).tolist()
    slow = loop_levels(
        since.tolist(), NOW, slots.tolist(), w.tolist(), step.tolist(), POLICY,
        override_h=None if override is None else [(a, b, c) for a, b, c in override],
    )  # fmt: skip
    assert fast == slow
    return fast


def test_learned_and_fixed_levels() -> None:
    # learned watch 3 h, step 1 h: 3 / 4 / 5 h; grace (NaN): the fixed 6 / 12 / 24 h
    assert _levels([2.9, 3.0, 4.0, 5.0], [3.0] * 4, None) == [0, 1, 2, 3]
    assert _levels([5.9, 6.0, 12.0, 24.0], [NAN] * 4, None) == [0, 1, 2, 3]


def test_a_care_managers_caps_bring_each_level_forward_and_keep_them_in_order() -> None:
    capped = [[2.0, NAN, NAN], [NAN, NAN, 8.0], [1.0, 1.5, 2.0], [NAN, NAN, NAN]]
    # home 0 learned 3/4/5 h, watch capped at 2 h; home 1 in grace, critical capped at 8 h
    assert _levels([2.0, 8.0, 1.5, 2.9], [3.0, NAN, NAN, 3.0], capped) == [1, 3, 2, 0]
    # a cap above the learned level changes nothing
    assert _levels([3.0], [3.0], [[10.0, 11.0, 12.0]]) == [1]
    # a watch cap above the learned warning keeps warning no earlier than watch
    assert _levels([3.5, 4.0], [3.0, 3.0], [[NAN, 2.0, NAN], [NAN, 2.0, NAN]]) == [2, 2]


@pytest.mark.parametrize("silence_h", [0.0, 0.5, 23.9])
def test_no_caps_means_no_change(silence_h: float) -> None:
    assert _levels([silence_h], [3.0], [[NAN, NAN, NAN]]) == _levels([silence_h], [3.0], None)
