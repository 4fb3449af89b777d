"""The line's failure-rate monitor: a Bernoulli CUSUM on pass/fail results.

Phase I learns the baseline failure rate p0 from the first units (or takes it from configuration).
Phase II accumulates the log-likelihood ratio of "the rate has gone up by ``shift_ratio``" against
"the rate is still p0" and signals when it crosses a limit h chosen for the configured in-control
run length (``target_arl0_units``, in units between false alarms). The detector is tuned to a ratio,
never told the actual post-change rate.

The target is met as a median: half of all in-control stretches last at least that many units. A
CUSUM's in-control run length is close to geometric, so its median is only ln 2 ≈ 0.69 of its mean,
and a limit designed for the mean gives a line a false alarm sooner than the target more often than
not (measured: median 8,010 units for a mean of 14,588 with p0 estimated from 1,000 units). The
limit is therefore designed for a mean of target / ln 2.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from river import drift
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from linewatch.config import FailureRateSettings

BACKSTOP_RATIO = 1.5  # ADWIN alarms only on a rise to at least this multiple of the baseline


@dataclass(slots=True)  # not frozen: one is made per QC result, and frozen dataclasses construct 6x slower
class RateVerdict:
    phase: str  # "baseline" | "monitoring"
    units: int
    rate: float  # failure rate of the recent window
    baseline: float | None
    statistic: float
    limit: float | None
    alarm: bool
    since: datetime | None = None  # the CUSUM's estimate of when the rate changed
    rate_since: float | None = None
    first_unit: str | None = None  # first failed unit after the change
    upper_control_limit: float | None = None
    detector: str | None = None  # what raised the alarm: "cusum", or "adwin" (the model-free backstop)
    units_since: int | None = None  # units since the change (what rate_since is measured over)
    window: int = 0  # units in the recent window (what rate is measured over)


def cusum_arl(p: float, a: float, b: float, h: float, resolution: int = 20) -> float:
    """Average run length of a Bernoulli CUSUM (fail: +a, pass: b < 0, limit h) at failure rate p.

    Brook and Evans' Markov chain: the statistic is put on a grid of |b| / resolution, so each pass
    moves it down ``resolution`` steps and each fail up round(a / step) steps; the expected time
    to cross h from 0 solves one linear system.
    """
    step = -b / resolution
    up = max(1, round(a / step))
    states = max(1, math.ceil(h / step))
    i = np.arange(states)
    rising = i + up < states
    # I - Q as a sparse matrix: each state moves up by `up` on a fail, down by `resolution` on a pass
    rows = np.concatenate([i, i[rising], i])
    cols = np.concatenate([i, i[rising] + up, np.maximum(0, i - resolution)])
    vals = np.concatenate([np.ones(states), np.full(rising.sum(), -p), np.full(states, -(1 - p))])
    system = sparse.csc_matrix((vals, (rows, cols)), shape=(states, states))
    run = sparse_linalg.spsolve(system, np.ones(states))
    return float(run[0])


def median_target_as_mean(median_run_length: float) -> float:
    """The average run length whose (near-geometric) run-length distribution has this median.

    >>> round(median_target_as_mean(10_000))
    14427
    """
    return median_run_length / math.log(2)


def cusum_limit(p0: float, p1: float, arl0: float) -> float:
    """Decision limit h giving an in-control average run length of at least ``arl0`` units."""
    a, b = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    lo, hi = 0.0, a
    while cusum_arl(p0, a, b, hi) < arl0:
        lo, hi = hi, hi * 2
    while hi - lo > 0.01:
        mid = (lo + hi) / 2
        if cusum_arl(p0, a, b, mid) < arl0:
            lo = mid
        else:
            hi = mid
    return hi


SUBGROUP_UNITS = 25  # units per point of the p-chart
SUBGROUPS_KEPT = 60  # points kept: the last 1,500 units


class FailureRateMonitor:
    """Tracks one line's failure rate against its baseline."""

    def __init__(self, line: str, settings: FailureRateSettings, window: int = 300):
        self.line = line
        self.settings = settings
        self.units = 0
        self.fails = 0
        self.recent: deque[bool] = deque(maxlen=window)
        self.recent_fails = 0  # failures in ``recent``, kept as it changes rather than summed per unit
        self.baseline: float | None = settings.baseline_rate
        self.s = 0.0
        self.h: float | None = None
        self.llr_fail = self.llr_pass = 0.0
        self.alarm = False
        self.run_start: tuple[datetime, int, int] | None = None  # (ts, units, fails) when S left 0
        self.first_unit: str | None = None
        self.clear_streak = 0
        # model-free backstop: river's ADWIN notices a rise the CUSUM was not tuned for (a slow creep)
        self.backstop = drift.ADWIN()
        self.alarmed_by: str | None = None
        # the p-chart's points: (time of the last unit, units, failures) per subgroup of SUBGROUP_UNITS
        self.subgroups: deque[tuple[datetime, int, int]] = deque(maxlen=SUBGROUPS_KEPT)
        self.subgroup_units = self.subgroup_fails = 0  # the subgroup being filled
        if self.baseline is not None:
            self._arm(self.baseline)

    def __setstate__(self, state: dict) -> None:
        """Checkpoints written before the p-chart's history existed start it empty."""
        state.setdefault("subgroups", deque(maxlen=SUBGROUPS_KEPT))
        state.setdefault("subgroup_units", 0)
        state.setdefault("subgroup_fails", 0)
        self.__dict__.update(state)

    def chart(self) -> list[tuple[datetime, int, int]]:
        """The p-chart's points, oldest first: (time of the subgroup's last unit, units, failures)."""
        return list(self.subgroups)

    def _arm(self, p0: float) -> None:
        p0 = min(max(p0, 1e-4), 0.5)
        p1 = min(p0 * self.settings.shift_ratio, 0.95)
        self.baseline = p0
        self.llr_fail = math.log(p1 / p0)
        self.llr_pass = math.log((1 - p1) / (1 - p0))
        self.h = cusum_limit(p0, p1, median_target_as_mean(self.settings.target_arl0_units))

    def upper_control_limit(self, n: int) -> float | None:
        """p-chart upper 3-sigma limit for a window of ``n`` units, for display and for clearing."""
        if self.baseline is None or n == 0:
            return None
        p = self.baseline
        return p + 3 * math.sqrt(p * (1 - p) / n)

    def observe(self, passed: bool, ts: datetime, unit_id: str | None = None) -> RateVerdict:
        failed = not passed
        self.units += 1
        self.fails += failed
        if len(self.recent) == self.recent.maxlen:
            self.recent_fails -= self.recent[0]
        self.recent.append(failed)
        self.recent_fails += failed
        rate = self.recent_fails / len(self.recent)
        self.subgroup_units += 1
        self.subgroup_fails += failed
        if self.subgroup_units == SUBGROUP_UNITS:
            self.subgroups.append((ts, self.subgroup_units, self.subgroup_fails))
            self.subgroup_units = self.subgroup_fails = 0
        if self.h is None:
            if self.units >= self.settings.baseline_units:
                # a small prior keeps a spotless phase I from giving p0 = 0
                self._arm((self.fails + 0.5) / (self.units + 1))
            return RateVerdict("baseline", self.units, rate, None, 0.0, None, False, window=len(self.recent))

        if self.s == 0.0 and not self.alarm:
            self.run_start = (ts, self.units - 1, self.fails - failed)
            self.first_unit = None
        self.s = max(0.0, self.s + (self.llr_fail if failed else self.llr_pass))
        if failed and self.first_unit is None and not self.alarm:
            self.first_unit = unit_id
        ucl = self.upper_control_limit(len(self.recent))
        assert self.baseline is not None  # armed above
        self.backstop.update(float(failed))
        drifted_up = self.backstop.drift_detected and self.backstop.estimation > BACKSTOP_RATIO * self.baseline
        if not self.alarm and (self.s > self.h or drifted_up):
            # the episode's start (where the CUSUM last left zero) is frozen until it clears
            self.alarm = True
            self.alarmed_by = "cusum" if self.s > self.h else "adwin"
            self.clear_streak = 0
        elif self.alarm:
            # clear when the recent window is back under the p-chart limit for a sustained stretch
            below = ucl is not None and len(self.recent) == self.recent.maxlen and rate <= ucl
            self.clear_streak = self.clear_streak + 1 if below else 0
            if self.clear_streak >= self.settings.clear_after_units:
                self.alarm = False
                self.s = 0.0
                self.backstop = drift.ADWIN()
        since = rate_since = n = None
        if self.alarm and self.run_start is not None:
            since, u0, f0 = self.run_start
            n = self.units - u0
            rate_since = (self.fails - f0) / n if n else None
        return RateVerdict("monitoring", self.units, rate, self.baseline, self.s, self.h, self.alarm, since,
                           rate_since, self.first_unit if self.alarm else None, ucl,
                           self.alarmed_by if self.alarm else None, n if rate_since is not None else None,
                           len(self.recent))
