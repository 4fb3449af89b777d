"""Thresholds from the scores a machine showed while normal, set for what those scores can tell.

A control limit for "exceeded once in 100,000 readings" is a far tail extrapolated from a few hundred
calibration scores. Two things make that extrapolation worse than it looks:

- **Process readings are autocorrelated.** A machine's readings wander slowly (a screw speed, an air
  temperature) and an EWMA statistic is autocorrelated by construction, so 300 calibration scores can
  hold as few as ten independent ones. Their mean and variance are then uncertain by tens of percent,
  and a limit from the estimates themselves is too low about half the time. On the simulated line
  (four machines, 20 seeds of four hours, no fault) that gave 135 false alarm episodes.
- **The estimates improve with time,** but a limit fixed at the end of calibration never learns that.

So each limit here is the tail quantile of a scaled χ² (Box 1954) whose mean and variance are the
upper ``confidence`` bounds of their estimates, given the scores' *effective* number of independent
readings, ``n (1 - ρ) / (1 + ρ)`` with ρ their lag-1 autocorrelation (the AR(1) approximation of the
variance of a mean of correlated values). The model keeps the running sums of every normal reading's
scores (``ScoreSums``) and sets its limits again from all of them every so many readings: a limit
starts cautious and tightens as the machine shows what its normal is, the way a self-starting chart
does. It is the same reasoning the failure-rate monitor's limit follows for a baseline estimated from a
thousand units: account for the estimate's error, do not ignore it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["ScoreSums", "chi2_quantile_for", "robust_chi2_quantile", "upper_mean", "upper_moments", "upper_variance"]

# columns of a ScoreSums row
N, SUM, SQUARES, PAIRS, LAGGED, PAIR_SUM = range(6)


class ScoreSums:
    """Running sums of several score series over the readings judged normal, in arrival order: enough
    for each series' mean, variance and lag-1 autocorrelation, in a few floats per series (checkpointed
    with the model)."""

    def __init__(self, series: int):
        self.sums = np.zeros((series, 6))
        self.last: np.ndarray | None = None  # the last reading's scores, if it was normal

    def add(self, scores: np.ndarray, normal: np.ndarray) -> None:
        """Add the rows of ``scores`` (readings x series) where ``normal``; consecutive normal readings
        make the pairs the autocorrelation is measured on, across calls too. The sums are accumulated
        in arrival order, one reading after the other (``np.add.accumulate``, not the pairwise ``sum``),
        so readings added one at a time give the same bits as in one batch: a replay in other batches
        sets the same thresholds."""
        if not len(scores):
            return
        if len(scores) == 1:  # one reading (score_one): the same additions, without building the terms
            self._add_one(scores[0], bool(normal[0]))
            return
        before = np.vstack([self.last if self.last is not None else scores[0], scores[:-1]])
        paired = normal & np.concatenate([[self.last is not None], normal[:-1]])
        s, keep, pair = self.sums, normal[:, None], paired[:, None]
        s[:, N] += float(normal.sum())  # counts are exact in any order
        s[:, PAIRS] += float(paired.sum())
        for column, terms in ((SUM, np.where(keep, scores, 0.0)), (SQUARES, np.where(keep, scores * scores, 0.0)),
                              (LAGGED, np.where(pair, scores * before, 0.0)),
                              (PAIR_SUM, np.where(pair, scores + before, 0.0))):
            s[:, column] = np.add.accumulate(np.vstack([s[:, column], terms]), axis=0)[-1]
        self.last = scores[-1].copy() if normal[-1] else None

    def _add_one(self, x: np.ndarray, normal: bool) -> None:
        if not normal:
            self.last = None
            return
        s = self.sums
        s[:, N] += 1.0
        s[:, SUM] += x
        s[:, SQUARES] += x * x
        if self.last is not None:
            s[:, PAIRS] += 1.0
            s[:, LAGGED] += x * self.last
            s[:, PAIR_SUM] += x + self.last
        self.last = x.copy()

    def moments(self, series: int) -> tuple[float, float, float, float]:
        """Mean, variance, effective number of independent readings and lag-1 autocorrelation (clipped
        to [0, 0.999]) of one series."""
        n, total, squares, pairs, lagged, pair_sum = self.sums[series].tolist()
        if n < 2:
            return (total / n if n else 0.0), 0.0, max(n, 1.0), 0.0
        mean = total / n
        var = max(squares / n - mean * mean, 0.0)
        rho = 0.0
        if pairs >= 2 and var > 0:
            rho = (lagged - mean * pair_sum + pairs * mean * mean) / (pairs * var)
        rho = min(max(rho, 0.0), 0.999)
        return mean, var, max(2.0, n * (1.0 - rho) / (1.0 + rho)), rho


def upper_mean(mean: float, var: float, n: float, confidence: float) -> float:
    """The one-sided upper ``confidence`` bound of a mean of ``n`` independent values with this variance
    (normal theory: ``mean + z sd / sqrt(n)``); ``confidence`` 0.5 gives the mean itself."""
    if confidence <= 0.5:
        return mean
    return mean + NormalDist().inv_cdf(confidence) * math.sqrt(max(var, 0.0) / n)


def upper_variance(var: float, n: float, confidence: float) -> float:
    """The one-sided upper ``confidence`` bound of a variance from ``n`` independent values (normal
    theory: ``var (n - 1) / χ²_{n-1}``); ``confidence`` 0.5 gives the variance itself. The model passes
    the mean's effective count here, which errs on the cautious side: for an AR(1) series a variance
    rests on n (1 - ρ²) / (1 + ρ²) readings, more than the mean's n (1 - ρ) / (1 + ρ)."""
    if confidence <= 0.5:
        return var
    from scipy.special import chdtri  # χ² inverse survival function: scipy.stats' chi2.ppf without its overhead

    return var * (n - 1.0) / float(chdtri(n - 1.0, confidence))


def upper_moments(mean: float, var: float, n_mean: float, n_var: float, confidence: float) -> tuple[float, float]:
    """Both bounds at once: ``upper_mean`` from ``n_mean`` values, ``upper_variance`` from ``n_var``."""
    return upper_mean(mean, var, n_mean, confidence), upper_variance(var, n_var, confidence)


def chi2_quantile_for(mean: float, var: float, p: float) -> float:
    """The ``p`` quantile of ``g χ²_h`` with this mean and variance (Box 1954, "Some theorems on quadratic
    forms", Ann. Math. Statist. 25(2): g = var / (2 mean), h = 2 mean² / var), the χ² quantile by Wilson
    and Hilferty's cube-root approximation; 0 without spread.

    >>> x = np.random.default_rng(0).chisquare(5, 20000)
    >>> round(chi2_quantile_for(float(x.mean()), float(x.var()), 0.99), 1)  # exact χ²_5: 15.09
    15.2
    """
    if not (math.isfinite(mean) and math.isfinite(var)):
        return math.inf  # nothing to fit: no limit rather than a wrong one
    if mean <= 0 or var <= 0:
        return 0.0
    g, h = var / (2.0 * mean), 2.0 * mean * mean / var
    z = NormalDist().inv_cdf(p)
    c = 2.0 / (9.0 * h)
    return g * h * max(1.0 - c + z * math.sqrt(c), 0.0) ** 3


def robust_chi2_quantile(scores: np.ndarray, p: float) -> float:
    """The ``p`` quantile of the scaled χ² ``g χ²_h`` whose lower quartile and median are those of
    ``scores``: unlike the mean and variance (or the upper quantiles), they move only a little when a
    minority of the scores come from a fault. ``inf`` when the scores give no such fit (a constant
    stretch)."""
    from scipy.optimize import brentq
    from scipy.stats import chi2

    lower, median = (float(q) for q in np.quantile(scores, [0.25, 0.5]))
    if lower <= 0 or median <= lower:
        return math.inf

    def ratio(h: float) -> float:
        return float(chi2.ppf(0.5, h) / chi2.ppf(0.25, h))

    low, high = 0.05, 1e4
    target = median / lower
    h = low if target >= ratio(low) else high if target <= ratio(high) else \
        brentq(lambda v: ratio(v) - target, low, high, xtol=1e-6)
    return median / float(chi2.ppf(0.5, h)) * float(chi2.ppf(p, h))
