"""What an anomaly model says about one reading or a batch, and the constants both model kinds share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

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


PHASES: tuple[Phase, ...] = ("warming_up", "calibrating", "monitoring")
WARMING_UP, CALIBRATING, MONITORING = range(3)


@dataclass
class Verdicts:
    """The model's verdicts on a batch of readings, as arrays (one entry per reading)."""

    score: np.ndarray
    tree_score: np.ndarray
    deviation: np.ndarray
    phase: np.ndarray  # index into PHASES
    outlier: np.ndarray
    anomalous: np.ndarray
    contributions: dict[int, tuple[Contribution, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.score)

    def alerting(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The production alert rule, per reading: whether it raises (or keeps up) the machine's anomaly
        alert (alarm on and the reading itself over the threshold); whether it counts towards clearing
        it (monitoring, alarm off, the reading under the threshold); and whether it is over the threshold
        without raising (the alarm waits for its debounce), which starts the count of quiet readings
        again. The worker and the alert-episode evaluation both use it."""
        raise_ = self.anomalous & self.outlier
        return raise_, (self.phase == MONITORING) & ~self.anomalous & ~self.outlier, self.outlier & ~raise_

    def __getitem__(self, i: int) -> Verdict:
        phase = PHASES[self.phase[i]]
        monitoring = phase == "monitoring"
        return Verdict(float(self.score[i]), 1.0 if monitoring else None, float(self.tree_score[i]),
                       float(self.deviation[i]), phase, bool(self.outlier[i]), bool(self.anomalous[i]),
                       self.contributions.get(i, ()))
