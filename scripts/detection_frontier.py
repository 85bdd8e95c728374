#!/usr/bin/env python3
"""How far can a silence threshold go on the recorded homes? Two bounds for README's table.

Run from the repo: `.venv/bin/python scripts/detection_frontier.py` (needs ../shared beside it).
It reuses the evaluation's own loading, activity and incident rules
(../shared/tools/eval-detection) and its most favourable reading of a home: every plug step of
10 W or more is activity, a fridge's included.

- the 24 h ceiling: silences of 24 h or more after the burn-in, each a false alarm for any
  detector that keeps the ceiling;
- hindsight: a threshold per home and hour of the day chosen knowing every silence to come
  (the best any time-of-day detector could do, and more);
- causal: a threshold per home and hour from the silences seen so far (the longest within
  ±2 h over the past 56 days, times f), the core of anbu's learned levels without its extras.

Incidents are every 5-minute moment after the burn-in with activity in the 6 h before and
nobody away (the evaluation draws its 20 per home from these), each home weighing the same.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

HOUR, DAY = 3600.0, 86400.0
MONTH = 30 * DAY
SHARED = Path(__file__).resolve().parents[2] / "shared"
DAY_GOAL_H, NIGHT_GOAL_H = 4.0, 8.0  # issue 18's medians: 07-22 h and 22-07 h
THETAS = np.array([0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 24]) * HOUR


def load_eval() -> object:
    loader = importlib.machinery.SourceFileLoader(
        "eval_detection", str(SHARED / "tools" / "eval-detection")
    )
    spec = importlib.util.spec_from_loader("eval_detection", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["eval_detection"] = mod
    loader.exec_module(mod)
    return mod


def prepare(ev, home):  # type: ignore[no-untyped-def]
    acts = np.array(home.activity)
    length = np.append(acts[1:], home.end) - acts
    local = [datetime.fromtimestamp(a, home.tz) for a in acts]
    hours = np.array([t.hour + t.minute / 60 for t in local])
    lo = home.start + 7 * DAY
    grid = np.arange(lo, home.end, 300.0)
    idx = np.searchsorted(acts, grid, side="left") - 1
    ok = (idx >= 0) & (grid - acts[np.maximum(idx, 0)] <= 6 * HOUR)
    ok &= np.array([not ev.is_away(home, t) for t in grid])
    grid, idx = grid[ok], idx[ok]
    gh = np.array([datetime.fromtimestamp(t, home.tz).hour for t in grid])
    return {"acts": acts, "len": length, "hours": hours, "lo": lo, "grid": grid, "idx": idx,
            "night": (gh >= 22) | (gh < 7), "months": (home.end - home.start - 7 * DAY) / MONTH}  # fmt: skip


def ceiling(homes: dict) -> int:  # type: ignore[type-arg]
    return sum(
        int(np.sum((p["len"] >= 24 * HOUR) & (p["acts"] + 24 * HOUR >= p["lo"])))
        for p in homes.values()
    )


def hindsight(homes: dict) -> tuple[float, float, float]:  # type: ignore[type-arg]
    """Fewest false alarms (beside the ceiling's) with half the day incidents detected within
    DAY_GOAL_H and half the night ones within NIGHT_GOAL_H, thresholds per home and hour chosen
    in hindsight."""
    buckets: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    day_mass = night_mass = 0.0
    for name, p in homes.items():
        zero = {
            "fa": np.zeros(len(THETAS)),
            "day": np.zeros(len(THETAS)),
            "night": np.zeros(len(THETAS)),
        }
        for a, n, h in zip(p["acts"], p["len"], p["hours"], strict=True):
            if THETAS[0] < n < 24 * HOUR:
                b = buckets.setdefault((name, int(h)), {k: v.copy() for k, v in zero.items()})
                b["fa"] += (a + THETAS >= p["lo"]) & (n > THETAS)
        w = 1.0 / len(p["grid"])
        for t, i, night in zip(p["grid"], p["idx"], p["night"], strict=True):
            b = buckets.setdefault(
                (name, int(p["hours"][i])), {k: v.copy() for k, v in zero.items()}
            )
            delay = np.maximum(0.0, p["acts"][i] + THETAS - t)
            if night:
                b["night"] += w * (delay <= NIGHT_GOAL_H * HOUR)
                night_mass += w
            else:
                b["day"] += w * (delay <= DAY_GOAL_H * HOUR)
                day_mass += w
    fa_t = np.array([b["fa"] for b in buckets.values()])
    day_t = np.array([b["day"] for b in buckets.values()]) / day_mass
    night_t = np.array([b["night"] for b in buckets.values()]) / night_mass
    # one threshold per bucket (binary choice), as a small integer programme solved exactly
    n_b, n_t = fa_t.shape
    pick_one = np.kron(np.eye(n_b), np.ones(n_t))
    constraints = [
        LinearConstraint(pick_one, 1, 1),
        LinearConstraint(np.vstack([day_t.ravel(), night_t.ravel()]), [0.5, 0.5], [np.inf, np.inf]),
    ]
    res = milp(
        fa_t.ravel(), constraints=constraints, integrality=np.ones(n_b * n_t), bounds=Bounds(0, 1)
    )
    x = np.round(res.x)
    best = (float(fa_t.ravel() @ x), float(day_t.ravel() @ x), float(night_t.ravel() @ x))
    return best


def causal(
    homes: dict, f: float, window_h: float = 2.0, days: float = 56.0
) -> tuple[int, float, float]:  # type: ignore[type-arg]
    """False alarms and day / night median delays of threshold = f × longest past silence."""
    fa, day, night = 0, [], []
    rng = np.random.default_rng(0)
    for p in homes.values():
        acts, length, hours = p["acts"], p["len"], p["hours"]
        ends = acts + length
        long_ = np.flatnonzero(length >= 0.25 * HOUR)
        need = np.unique(np.concatenate([np.flatnonzero(length > HOUR), p["idx"]]))
        theta = np.full(len(acts), np.nan)
        for i in need:
            sel = long_[(acts[long_] >= acts[i] - days * DAY) & (ends[long_] <= acts[i])]
            sel = sel[np.abs((hours[sel] - hours[i] + 12) % 24 - 12) <= window_h]
            theta[i] = (
                24 * HOUR if len(sel) < 5 else min(max(f * length[sel].max(), HOUR), 24 * HOUR)
            )
        fa += int(np.sum(~np.isnan(theta) & (theta < length) & (acts + theta >= p["lo"])))
        delay = np.maximum(0.0, acts[p["idx"]] + theta[p["idx"]] - p["grid"]) / HOUR
        pick = rng.choice(len(delay), 2000)
        day += delay[pick][~p["night"][pick]].tolist()
        night += delay[pick][p["night"][pick]].tolist()
    return fa, float(np.median(day)), float(np.median(night))


def main() -> None:
    ev = load_eval()
    names = ["eco-h2", "uci-a", "uci-b", "vk-a", "vk-b"]
    raw = ev.load_homes([SHARED / "data" / n for n in names])  # type: ignore[attr-defined]
    homes = {n: prepare(ev, raw[n]) for n in sorted(raw)}
    months = sum(p["months"] for p in homes.values())
    ceil = ceiling(homes)
    print(
        f"home-months={months:.2f} silences>=24h={ceil} ceiling_fa_per_home_month={ceil / months:.2f}"
    )
    fa, dh, nh = hindsight(homes)
    print(f"hindsight per home and hour: fa_per_home_month={(fa + ceil) / months:.2f} "
          f"(ceiling {ceil / months:.2f}) day_within_{DAY_GOAL_H:g}h={dh:.2f} "
          f"night_within_{NIGHT_GOAL_H:g}h={nh:.2f}")  # fmt: skip
    for f in (1.0, 1.5, 2.0, 3.0):
        fa_c, d, n = causal(homes, f)
        print(
            f"causal f={f:g}: fa_per_home_month={fa_c / months:.2f} day_median_h={d:.2f} night_median_h={n:.2f}"
        )


if __name__ == "__main__":
    main()
