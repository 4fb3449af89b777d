"""How fast the failure-rate monitor sees a step, and how rarely it cries wolf.

Per seed: phase I learns the baseline from ``baseline_units`` at p0 (the monitor is never told p0),
then ``pre_change_units`` more in control, then the rate steps to p1. Detection delay is counted in
units from the step to the alarm, with the production ``FailureRateMonitor`` doing the work.
In-control average run length (ARL0) is measured per seed after its own phase I, so the error of
estimating p0 from a finite baseline is part of the figure, as it is on a real line; the long
in-control runs use the armed monitor's own constants in a vectorised replica of its CUSUM
(``tests/evaluate`` checks the replica against the monitor).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from linewatch.config import FailureRateSettings
from linewatch.detect.failure_rate import FailureRateMonitor

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


@dataclass
class StepResult:
    p0: float
    p1: float
    seeds: int
    median_delay: float
    mean_delay: float
    p90_delay: float
    false_alarms_before_step: int  # seeds that alarmed in control before the step (excluded from delays)
    missed: int  # seeds with no alarm within max_delay units after the step


def _armed(settings: FailureRateSettings, p0: float, rng: np.random.Generator) -> FailureRateMonitor:
    monitor = FailureRateMonitor("eval", settings)
    for i, fail in enumerate(rng.random(settings.baseline_units) < p0):
        monitor.observe(not fail, T0 + timedelta(seconds=i))
    return monitor


def step_delay(settings: FailureRateSettings, p0: float, p1: float, seeds: int = 200, pre_change_units: int = 500,
               max_delay: int = 5000) -> StepResult:
    delays: list[int] = []
    false_alarms = missed = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        monitor = _armed(settings, p0, rng)
        t = settings.baseline_units
        alarmed_early = False
        for fail in rng.random(pre_change_units) < p0:
            t += 1
            if monitor.observe(not fail, T0 + timedelta(seconds=t)).alarm:
                alarmed_early = True
                break
        if alarmed_early:
            false_alarms += 1
            continue
        for n, fail in enumerate(rng.random(max_delay) < p1, start=1):
            t += 1
            if monitor.observe(not fail, T0 + timedelta(seconds=t)).alarm:
                delays.append(n)
                break
        else:
            missed += 1
    arr = np.array(delays, dtype=float)
    return StepResult(p0, p1, seeds, float(np.median(arr)), float(arr.mean()), float(np.percentile(arr, 90)),
                      false_alarms, missed)


def cusum_run_lengths(llr_fail: np.ndarray, llr_pass: np.ndarray, h: np.ndarray, p: float, cap: int,
                      rng: np.random.Generator, chunk: int = 4096) -> np.ndarray:
    """Units until each of len(h) independent CUSUMs (one per seed) crosses its limit at rate p.

    A vectorised replica of FailureRateMonitor's phase II (max(0, S + llr) > h); censored at ``cap``.
    """
    n = len(h)
    s = np.zeros(n)
    run = np.full(n, cap, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    done = 0
    while done < cap and alive.any():
        fails = rng.random((min(chunk, cap - done), n)) < p
        for i, row in enumerate(fails):
            s = np.maximum(0.0, s + np.where(row, llr_fail, llr_pass))
            crossed = alive & (s > h)
            if crossed.any():
                run[crossed] = done + i + 1
                alive &= ~crossed
                s[crossed] = -np.inf  # keep it below the limit for good
        done += len(fails)
    return run


def in_control_arl(settings: FailureRateSettings, p0: float, seeds: int = 200, cap: int = 200_000) -> dict[str, Any]:
    monitors = [_armed(settings, p0, np.random.default_rng(10_000 + s)) for s in range(seeds)]
    run = cusum_run_lengths(np.array([m.llr_fail for m in monitors]), np.array([m.llr_pass for m in monitors]),
                            np.array([m.h for m in monitors]), p0, cap, np.random.default_rng(99))
    censored = int((run >= cap).sum())
    return {"p0": p0, "seeds": seeds, "cap_units": cap, "arl0_mean_units": float(run.mean()),
            "arl0_median_units": float(np.median(run)), "censored_runs": censored,
            "baseline_estimate_median": statistics.median(m.baseline or 0.0 for m in monitors),  # all armed
            "note": "mean run length is a lower bound when runs are censored at the cap"}


def adwin_delay(p0: float, p1: float, seeds: int = 200, warmup: int = 1500, max_delay: int = 5000) -> float:
    """river's ADWIN with default settings on the same streams, as a model-free reference."""
    from river import drift

    delays = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        adwin = drift.ADWIN()
        for x in rng.random(warmup) < p0:
            adwin.update(float(x))
        for n, x in enumerate(rng.random(max_delay) < p1, start=1):
            adwin.update(float(x))
            if adwin.drift_detected:
                delays.append(n)
                break
    return float(np.median(delays)) if delays else float("nan")


def backstop_false_alarms(p0: float, seeds: int = 200, units: int = 10_000) -> float:
    """Upward alarms of the monitor's ADWIN backstop per 10,000 in-control units (the CUSUM's ARL0 above
    does not include it)."""
    from river import drift

    from linewatch.detect.failure_rate import BACKSTOP_RATIO

    alarms = 0
    for seed in range(seeds):
        adwin = drift.ADWIN()
        for x in np.random.default_rng(20_000 + seed).random(units) < p0:
            adwin.update(float(x))
            if adwin.drift_detected and adwin.estimation > BACKSTOP_RATIO * p0:
                alarms += 1
    return alarms / seeds * 10_000 / units


def evaluate(settings: FailureRateSettings | None = None, seeds: int = 200, p0: float = 0.05,
             steps: tuple[float, ...] = (0.20, 0.10, 0.08), arl_cap: int = 200_000) -> dict[str, Any]:
    settings = settings or FailureRateSettings()
    started = time.perf_counter()
    out: dict[str, Any] = {"settings": settings.model_dump(), "seeds": seeds}
    out["in_control"] = in_control_arl(settings, p0, seeds, arl_cap)
    out["steps"] = [asdict(step_delay(settings, p0, p1, seeds)) for p1 in steps]
    out["backstop_false_alarms_per_10k_units"] = backstop_false_alarms(p0, seeds)
    out["adwin_median_delay"] = {f"{p0:.0%}->{p1:.0%}": adwin_delay(p0, p1, seeds) for p1 in steps[:1]}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out
