"""What an anomaly model says about one reading, and the constants both model forms share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Phase = Literal["warming_up", "calibrating", "monitoring"]
HST_LIMIT = 4.0  # scaled sensors beyond +-4 sigma all fall in the outermost half-space
# Slowly wandering (autocorrelated) sensors cross 3 sigma in runs that debouncing cannot break up;
# below this many standard deviations a single sensor never makes a reading anomalous on its own.
MIN_DEVIATION_THRESHOLD = 4.0
N_TREES, TREE_HEIGHT, WINDOW_SIZE = 25, 8, 250


@dataclass(frozen=True, slots=True)
class Contribution:
    """How far one sensor is from normal, for the alert sentence and the details."""

    sensor: str
    value: float
    z: float
    normal_low: float
    normal_high: float


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float  # max(tree score / its threshold, deviation / its threshold); 0 before calibration
    threshold: float | None  # 1.0 once calibrated
    tree_score: float
    deviation: float  # largest |z| over the sensors
    phase: Phase
    outlier: bool  # this reading alone is beyond the threshold
    anomalous: bool  # debounced: k of the last n readings were outliers
    contributions: tuple[Contribution, ...] = field(default=())


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), without numpy for a short list.

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
