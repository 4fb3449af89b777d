"""A machine's running mean and variance per sensor (river's StandardScaler), for whole batches.

river updates the mean and variance one reading at a time (Welford). Scoring a batch needs the
state before and after every reading of it, so here they come from prefix sums instead, shifted by
the current mean to keep the sums small: the same numbers up to rounding (relative 1e-12 or better
for sensor data), with one numpy call per batch instead of a Python loop per reading.
"""

from __future__ import annotations

import numpy as np


class SensorMoments:
    """Count, mean and population variance of each sensor over the readings learned so far."""

    def __init__(self, n_sensors: int):
        self.count = 0
        self.mean = np.zeros(n_sensors)
        self.var = np.zeros(n_sensors)

    def prefix(self, x: np.ndarray, learned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance after the first k rows of ``x``, for k = 0..len(x), learning only the
        rows marked ``learned`` (all by default).

        Shape (len(x)+1, sensors) each; row 0 is the current state.

        >>> m = SensorMoments(1)
        >>> means, variances = m.prefix(np.array([[1.0], [3.0], [100.0], [5.0]]),
        ...                             np.array([True, True, False, True]))
        >>> means[:, 0].tolist(), variances[:, 0].round(4).tolist()
        ([0.0, 1.0, 2.0, 2.0, 3.0], [0.0, 0.0, 1.0, 1.0, 2.6667])
        """
        n = x.shape[0]
        if learned is None:
            learned = np.ones(n, dtype=bool)
        shift = self.mean if self.count or not learned.any() else x[int(np.argmax(learned))]
        d = (x - shift) * learned[:, None]
        s1 = np.zeros((n + 1, x.shape[1]))
        s2 = np.zeros((n + 1, x.shape[1]))
        np.cumsum(d, axis=0, out=s1[1:])
        np.cumsum(d * d, axis=0, out=s2[1:])
        total = np.empty((n + 1, 1))
        total[0] = self.count
        np.cumsum(learned, out=total[1:, 0])
        total[1:] += self.count
        seen = total > 0
        total[~seen] = 1.0  # nothing learned yet: the state stays as it is
        means = np.where(seen, shift + s1 / total, self.mean)
        m2 = self.count * self.var + s2 - s1 * s1 / total
        variances = np.where(seen, np.maximum(m2, 0.0) / total, self.var)
        means[0], variances[0] = self.mean, self.var
        return means, variances

    def set(self, count: int, mean: np.ndarray, var: np.ndarray) -> None:
        self.count, self.mean, self.var = count, mean.copy(), var.copy()


def scale(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """river's StandardScaler.transform_one, row-wise: (x - mean) / sd, and 0 where the sd is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variances > 0, (x - means) / np.sqrt(variances), 0.0)
