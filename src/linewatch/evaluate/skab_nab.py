"""SKAB's own changepoint score: the NAB-style metric of the SKAB leaderboard, ported.

Source: ``core/metrics.py`` of github.com/waico/SKAB (from the tsad library, github.com/waico/tsad),
functions ``single_detecting_boundaries``, ``extract_cp_confusion_matrix``, ``my_scale``,
``single_evaluate_nab`` and ``chp_score(metric="nab")``, called as SKAB's notebooks and scripts
call it: ``chp_score(true_cp, predicted_cp, metric="nab", window_width="60s",
anomaly_window_destination="righter")`` with the defaults ``intersection_mode="cut right window"``,
``clear_anomalies_mode=True``, ``scale_func="improved"``, ``scale_koef=1``, on the test rows of each
run. Predicted changepoints are ``|diff|`` of the binary outlier prediction, the first row being
the prediction itself (``changepoints_from_alarms``).

What it computes, per run:

1. **Windows.** Each labelled changepoint ``cp`` opens the window ``[cp, cp + 60 s]`` (both ends
   included). Where a window reaches into the next one, the next one starts where this one ends
   (so a detection exactly on that instant falls in both, as in SKAB).
2. **Detections.** Every predicted changepoint before the first window, between windows or after
   the last is a false positive, worth ``A_fp`` each. In a window only the *first* detection counts;
   it is worth ``my_scale``: ``(A_tp - A_fp)/2 * -tanh(x)/tanh(π/2) + (A_tp - A_fp)/2 + A_fp`` on
   1,000 points ``x`` from ``-π/2`` to ``π/2``, taken at ``int((t - start) / (end - start) * 1000)``
   (capped at the last point): ``A_tp`` at the window's start, ``A_fp`` at its end, the midpoint of
   the two in the middle. Later detections in the same window cost nothing. A window without a
   detection costs ``A_fn``.
3. **Normalisation.** Raw scores, null scores (``A_fn`` per window) and perfect scores (``A_tp`` per
   window) are summed over all runs, then ``100 * (S - S_null) / (S_perfect - S_null)`` per profile.

Profiles (``A_tp``, ``A_fp``, ``A_fn``): standard (1, -0.11, -1), low FP (1, -0.22, -1), low FN
(1, -0.11, -2), SKAB's ``table_of_coef``.

How it differs from NAB's original scorer (``linewatch.evaluate.nab``, numenta/NAB v1):

- **Reward curve.** NAB rewards a detection at relative position ``y`` in ``[-1, 0]`` of its window
  with the scaled sigmoid ``2 / (1 + exp(5 y)) - 1`` (about ``A_tp`` at the start, 0 at the end);
  SKAB uses the tanh curve above, which falls from ``A_tp`` to ``A_fp`` (a detection on the last
  instant of a window is worth as much as a false positive), on a 1,000-step grid of the window's
  *time* span rather than its rows.
- **Windows.** NAB's windows are labelled per anomaly, centred on it, their width 10 % of the file
  divided by the number of anomalies, and disjoint; SKAB's start *at* the changepoint and last a
  fixed 60 s, and may touch.
- **False positives.** NAB's cost of a false positive shrinks the closer it follows a window (sigmoid
  of the distance); SKAB charges every one the flat ``A_fp``.
- **No probation, no threshold sweep.** NAB ignores the first 15 % of each file and picks the
  corpus threshold that maximises the score; SKAB scores binary predictions as given, every row.
- SKAB rounds the final figures to 2 decimals; this port does not (the caller may).

Examples
--------
>>> import pandas as pd
>>> t = pd.date_range("2020-03-09 10:00:00", periods=300, freq="s")
>>> truth = [0] * 300
>>> truth[100] = 1
>>> found = [0] * 300
>>> found[100] = 1  # on the changepoint itself: a perfect score
>>> round(score_runs([(t, truth, found)])["standard"].score, 6)
100.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PROFILES", "WINDOW", "RunScore", "SkabNabResult", "changepoints_from_alarms", "counts", "detection_windows",
           "normalise", "score_run", "score_runs", "tanh_reward"]

# name -> (A_tp, A_fp, A_fn), SKAB's table_of_coef (its A_tn column is never used).
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, -0.11, -1.0),
    "low_FP": (1.0, -0.22, -1.0),
    "low_FN": (1.0, -0.11, -2.0),
}
WINDOW = pd.Timedelta("60s")
DETAIL = 1000  # SKAB's ``detalization``: points of the reward curve


def tanh_reward(position: float, a_tp: float, a_fp: float) -> float:
    """SKAB's ``my_scale``: the worth of a window's first detection at ``position`` (0 = start, 1 = end).

    >>> [round(tanh_reward(p, 1.0, -0.11), 4) for p in (0.0, 1.0)]
    [1.0, -0.11]
    """
    x = np.linspace(-np.pi / 2, np.pi / 2, DETAIL)
    y = (a_tp - a_fp) / 2 * -np.tanh(x) / np.tanh(np.pi / 2) + (a_tp - a_fp) / 2 + a_fp
    return float(y[min(int(position * DETAIL), DETAIL - 1)])


def changepoints_from_alarms(alarms: Sequence[bool] | np.ndarray) -> np.ndarray:
    """SKAB's predicted changepoints: 1 where the binary prediction changes, and on the first row if set.

    >>> changepoints_from_alarms([1, 1, 0, 0, 1, 1]).tolist()
    [1, 0, 1, 0, 1, 0]
    """
    p = np.asarray(alarms).astype(int)
    if not len(p):
        return p
    cp = np.abs(np.diff(p, prepend=p[0]))
    cp[0] = p[0]
    return cp


def detection_windows(timestamps: Iterable[Any], changepoints: Sequence[int] | np.ndarray,
                      width: pd.Timedelta = WINDOW) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """``[cp, cp + width]`` for each labelled changepoint ("righter"), overlaps cut from the right window.

    >>> t = pd.date_range("2020-01-01", periods=100, freq="s")
    >>> cp = [0] * 100
    >>> cp[10] = cp[40] = 1
    >>> [((a - t[0]).seconds, (b - t[0]).seconds) for a, b in detection_windows(t, cp)]
    [(10, 70), (70, 100)]
    """
    times = pd.DatetimeIndex(pd.to_datetime(list(timestamps) if not isinstance(timestamps, pd.Index) else timestamps))
    bounds = [[t, t + width] for t in times[np.asarray(changepoints).astype(bool)]]
    for i in range(len(bounds) - 1):
        if bounds[i][1] >= bounds[i + 1][0]:
            bounds[i + 1][0] = bounds[i][1]
    return [(a, b) for a, b in bounds]


@dataclass(frozen=True, slots=True)
class RunScore:
    """One run's raw SKAB NAB scores (per profile) and changepoint counts."""

    raw: dict[str, float]
    null: dict[str, float]
    perfect: dict[str, float]
    windows: int
    detected: int  # windows with a detection (changepoint TPs)
    false_positives: int
    missed: int


@dataclass(frozen=True, slots=True)
class SkabNabResult:
    """A profile's normalised score over runs (100 perfect, 0 = detecting nothing) and its parts."""

    profile: str
    score: float
    raw: float
    null: float
    perfect: float


def score_run(timestamps: Iterable[Any], true_changepoints: Sequence[int] | np.ndarray,
              predicted_changepoints: Sequence[int] | np.ndarray, width: pd.Timedelta = WINDOW) -> RunScore:
    """Raw SKAB NAB score of one run (``extract_cp_confusion_matrix`` + ``single_evaluate_nab``)."""
    times = pd.DatetimeIndex(pd.to_datetime(list(timestamps) if not isinstance(timestamps, pd.Index) else timestamps))
    if len(times) != len(true_changepoints) or len(times) != len(predicted_changepoints):
        raise ValueError(f"{len(times)} timestamps, {len(true_changepoints)} labels, "
                         f"{len(predicted_changepoints)} predictions: one of each per row")
    bounds = detection_windows(times, true_changepoints, width)
    predicted = times[np.asarray(predicted_changepoints).astype(bool)].sort_values()
    false_positives, missed = 0, 0
    first_detections: list[tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]] = []
    if bounds:
        false_positives += int((predicted < bounds[0][0]).sum())
        for i, (start, end) in enumerate(bounds):
            inside = predicted[(predicted >= start) & (predicted <= end)]
            if len(inside):
                first_detections.append((start, inside[0], end))
            else:
                missed += 1
            after = predicted > end
            if i + 1 < len(bounds):
                after &= predicted < bounds[i + 1][0]
            false_positives += int(after.sum())
    else:
        false_positives += len(predicted)
    raw, null, perfect = {}, {}, {}
    for name, (a_tp, a_fp, a_fn) in PROFILES.items():
        rewards = 0.0
        for start, t, end in first_detections:
            # SKAB divides by the window's span; a window cut to nothing (two changepoints 60 s apart
            # on the same instant) would divide by zero there: it counts as found at its start.
            position = (t - start) / (end - start) if end > start else 0.0
            rewards += tanh_reward(position, a_tp, a_fp)
        raw[name] = a_fp * false_positives + a_fn * missed + rewards
        null[name] = a_fn * len(bounds)
        perfect[name] = a_tp * len(bounds)
    return RunScore(raw, null, perfect, len(bounds), len(first_detections), false_positives, missed)


def score_runs(runs: Iterable[tuple[Iterable[Any], Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]],
               width: pd.Timedelta = WINDOW) -> dict[str, SkabNabResult]:
    """Normalised SKAB NAB score per profile over runs of ``(timestamps, true_cp, predicted_cp)``.

    Raw, null and perfect scores are summed over the runs before normalising (``chp_score``).
    """
    return normalise([score_run(t, truth, predicted, width) for t, truth, predicted in runs])


def normalise(scores: Iterable[RunScore]) -> dict[str, SkabNabResult]:
    """Sum raw, null and perfect scores over runs, then ``100 * (S - S_null) / (S_perfect - S_null)``."""
    scores = list(scores)
    out = {}
    for name in PROFILES:
        raw = sum(s.raw[name] for s in scores)
        null = sum(s.null[name] for s in scores)
        perfect = sum(s.perfect[name] for s in scores)
        normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
        out[name] = SkabNabResult(name, normalised, raw, null, perfect)
    return out


def counts(runs: Iterable[RunScore]) -> dict[str, int]:
    """Changepoint windows, detected windows, false positives and missed windows over runs."""
    runs = list(runs)
    return {"windows": sum(r.windows for r in runs), "detected": sum(r.detected for r in runs),
            "false_positives": sum(r.false_positives for r in runs), "missed": sum(r.missed for r in runs)}
