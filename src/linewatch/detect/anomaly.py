"""One online anomaly model per machine: river's StandardScaler and Half-Space Trees, scored in batches.

Two views of each reading: Half-Space Trees over the standard-scaled sensors (joint behaviour that
no single sensor shows) and the largest per-sensor deviation from the running mean, in standard
deviations (one sensor far out, which Half-Space Trees dilute across dimensions). The model learns
the machine's normal behaviour during a warm-up, then sets a threshold for each view from the scores
it sees during calibration (a quantile, not a magic number). The machine's score is the larger of
the two scores divided by its threshold, so 1.0 is the line between normal and anomalous on every
machine. A reading only counts as anomalous when k of the last n readings were, so one noisy
sample on a vibrating cutter does not flap an alert, and anomalous readings are not learned as
normal. Explanations come from the running mean and variance: which sensors are furthest from
their normal range, in the sensor's own unit.

The model is river's (``linewatch.detect.reference.RiverMachineModel`` is the same model written
with river's objects, one reading at a time); this class computes the same scores for a whole batch
with numpy, several times faster and about 30 times smaller. How: a reading is learned unless it
is an outlier, so the batch is scored as if every reading were learned, which is then true up to
the first outlier; from the reading after it, the rest is scored again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from linewatch.detect.settings import AnomalySettings
from linewatch.detect.halfspace import HalfSpaceForest
from linewatch.detect.moments import SensorMoments, scale
from linewatch.detect.rows import Part, first_sensors, model_rows
from linewatch.detect.verdict import (CALIBRATING, HST_LIMIT, MIN_DEVIATION_THRESHOLD, MONITORING, N_TREES,
                                      TREE_HEIGHT, WARMING_UP, WINDOW_SIZE, Contribution, Phase, Verdict, Verdicts,
                                      quantile)

__all__ = ["CALIBRATING", "MONITORING", "Contribution", "MachineModel", "Phase", "Verdict", "Verdicts"]

# Readings scored together at most, and guesses at which of them are outliers before the exact prefix is kept.
LONGEST_RUN, MAX_GUESSES = 2048, 4


class MachineModel:
    """The anomaly model of one machine."""

    def __init__(self, machine: str, settings: AnomalySettings, seed: int = 42):
        self.machine = machine
        self.settings = settings
        self.seed = seed
        self.sensors: tuple[str, ...] | None = None
        self.last: dict[str, float] = {}
        self.seen = 0
        self.calibration: list[tuple[float, float]] = []
        self.tree_threshold: float | None = None
        self.deviation_threshold: float | None = None
        self.recent: deque[bool] = deque(maxlen=settings.debounce_n)
        self.moments: SensorMoments | None = None
        self.forest: HalfSpaceForest | None = None

    @property
    def phase(self) -> Phase:
        if self.seen < self.settings.warmup_readings:
            return "warming_up"
        if self.tree_threshold is None:
            return "calibrating"
        return "monitoring"

    # ------------------------------------------------------------ scoring

    def score_one(self, values: Mapping[str, float]) -> Verdict:
        """Score one reading, learn it if it looks normal, and say how anomalous it is."""
        return self.score_batch([values])[0]

    def score_batch(self, readings: Sequence[Mapping[str, float]]) -> Verdicts:
        """Score readings in order, exactly as if each were scored and learned one after the other."""
        return self.score_parts([readings])

    def score_parts(self, parts: Sequence[Part]) -> Verdicts:
        """Score runs of readings (dicts, or blocks of columns) in order, as one batch."""
        parts = [p for p in parts if len(p[1] if isinstance(p, tuple) else p)]
        if not parts:
            return self.score_array(np.empty((0, len(self.sensors or ()))))
        if self.sensors is None:
            self._start(tuple(sorted(first_sensors(parts[0]))))
        assert self.sensors is not None
        x, self.last = model_rows(self.sensors, self.last, parts)
        return self.score_array(x)

    def score_array(self, x: np.ndarray) -> Verdicts:
        """Score rows of sensor values (columns in ``self.sensors`` order; the model must have its sensors)."""
        assert self.moments is not None and self.forest is not None, "the model learns its sensors from a reading"
        n = x.shape[0]
        out = Verdicts(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int8),
                       np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        pos, guess = 0, np.zeros(0, dtype=bool)
        while pos < n:
            phase = self.phase
            if phase == "warming_up":
                end = min(n, pos + self.settings.warmup_readings - self.seen)
            elif phase == "calibrating":
                end = min(n, pos + self.settings.calibration_readings - len(self.calibration))
            else:
                end = min(n, pos + LONGEST_RUN)
            rows = x[pos:end]
            if phase != "monitoring":  # everything is learned while warming up and calibrating
                learned = np.ones(len(rows), dtype=bool)
                tree, deviation, means, variances, learn_leaves = self._evaluate(rows, learned)
                taken = len(rows)
                if phase == "calibrating":
                    self.calibration.extend(zip(tree.tolist(), deviation.tolist()))
                    if len(self.calibration) >= self.settings.calibration_readings:
                        self._set_thresholds()
                out.phase[pos:end] = WARMING_UP if phase == "warming_up" else CALIBRATING
            else:
                # Guess which readings are outliers (far out on one sensor, at first), score as if the others were
                # learned, and compare: scores up to the first reading whose verdict differs from
                # the guess are exact. Guessing the verdicts just computed usually agrees at once.
                guess = np.concatenate([guess[:len(rows)], self._cheap_guess(rows[len(guess):])])
                for _ in range(MAX_GUESSES):
                    learned = ~guess
                    tree, deviation, means, variances, learn_leaves = self._evaluate(rows, learned)
                    score = self._score(tree, deviation)
                    outlier = score > 1.0
                    differ = np.flatnonzero(outlier != guess)
                    taken = int(differ[0]) if len(differ) else len(rows)
                    guess = outlier
                    if taken == len(rows):
                        break
                learned[taken:] = False
                guess = guess[taken:]  # the next run starts from what this one found
                span = slice(pos, pos + taken)
                out.phase[span] = MONITORING
                out.score[span] = score[:taken]
                out.outlier[span] = outlier[:taken]
                out.anomalous[span] = self._debounce(outlier[:taken])
                for i in np.flatnonzero(out.outlier[span] | out.anomalous[span]).tolist():
                    out.contributions[pos + i] = self._explain(rows[i], means[i], variances[i])
            out.tree_score[pos:pos + taken] = tree[:taken]
            out.deviation[pos:pos + taken] = deviation[:taken]
            self.moments.set(self.moments.count + int(learned[:taken].sum()), means[taken], variances[taken])
            self.forest.learn(learn_leaves[:, :taken], learned[:taken])
            self.seen += taken
            pos += taken
        return out

    def _evaluate(self, rows: np.ndarray, learned: np.ndarray) -> tuple[np.ndarray, ...]:
        """Tree score and deviation of each row, each scored before it is learned, learning the rows
        marked ``learned``; also the running mean and variance before each row and the rows' leaves as learned."""
        assert self.moments is not None and self.forest is not None
        means, variances = self.moments.prefix(rows, learned)
        before = scale(rows, means[:-1], variances[:-1])  # as scored: the state before each row
        after = scale(rows, means[1:], variances[1:])  # as learned: river updates, then transforms
        learn_leaves = self.forest.leaves(after)
        tree = self.forest.score(self.forest.leaves(before), learn_leaves, learned)
        deviation = np.abs(before).max(axis=1) if rows.shape[1] else np.zeros(len(rows))
        if self.seen < 2:  # river: no deviation before two readings
            deviation[: 2 - self.seen] = 0.0
        return tree, deviation, means, variances, learn_leaves

    def _cheap_guess(self, rows: np.ndarray) -> np.ndarray:
        """Readings far out on one sensor, judged without the trees (a tenth of the work): a first
        guess at the outliers that is right for most of them."""
        assert self.moments is not None and self.deviation_threshold is not None
        if not len(rows):
            return np.zeros(0, dtype=bool)
        means, variances = self.moments.prefix(rows)
        return np.abs(scale(rows, means[:-1], variances[:-1])).max(axis=1) > self.deviation_threshold

    def _score(self, tree: np.ndarray, deviation: np.ndarray) -> np.ndarray:
        assert self.tree_threshold is not None and self.deviation_threshold is not None
        score = deviation / self.deviation_threshold
        if self.tree_threshold > 0:  # 0 when calibration ended before the trees' first window
            score = np.maximum(tree / self.tree_threshold, score)
        return score

    def _debounce(self, outliers: np.ndarray) -> np.ndarray:
        """k of the last n readings (including those of earlier batches) were outliers."""
        history = np.concatenate([np.fromiter(self.recent, dtype=bool, count=len(self.recent)), outliers])
        counts = np.concatenate([[0], np.cumsum(history)])
        n, ends = self.settings.debounce_n, np.arange(len(self.recent) + 1, len(history) + 1)
        self.recent.extend(outliers.tolist())
        return counts[ends] - counts[np.maximum(ends - n, 0)] >= self.settings.debounce_k

    def _set_thresholds(self) -> None:
        q, margin = self.settings.threshold_quantile, self.settings.threshold_margin
        self.tree_threshold = quantile([c[0] for c in self.calibration], q) * margin
        self.deviation_threshold = max(quantile([c[1] for c in self.calibration], q) * margin,
                                       MIN_DEVIATION_THRESHOLD)
        self.calibration = []

    # ------------------------------------------------------------ explanations

    def _explain(self, row: np.ndarray, means: np.ndarray, variances: np.ndarray) -> tuple[Contribution, ...]:
        """Sensors ordered by how far they are from their learned mean, in standard deviations."""
        assert self.sensors is not None
        out = []
        for s, v, mean, var in zip(self.sensors, row.tolist(), means.tolist(), variances.tolist()):
            sd = math.sqrt(var) or 1e-9
            out.append(Contribution(s, v, (v - mean) / sd, mean - 3 * sd, mean + 3 * sd))
        out.sort(key=lambda c: abs(c.z), reverse=True)
        return tuple(out)

    def calibration_summary(self) -> dict[str, int] | None:
        """How the thresholds were calibrated: this model learns from every calibration reading."""
        if self.phase != "monitoring":
            return None
        return {"readings": self.settings.calibration_readings, "left_out": 0}

    def normal_range(self) -> dict[str, tuple[float, float]]:
        """Each sensor's learned mean +- 3 standard deviations (empty before the first reading)."""
        if self.sensors is None or self.moments is None:
            return {}
        sd = np.sqrt(self.moments.var)
        return {s: (float(m - 3 * d), float(m + 3 * d)) for s, m, d in zip(self.sensors, self.moments.mean, sd)}

    # ------------------------------------------------------------ state

    def _start(self, sensors: tuple[str, ...]) -> None:
        self.sensors = sensors
        self.moments = SensorMoments(len(sensors))
        self.forest = HalfSpaceForest(len(sensors), N_TREES, TREE_HEIGHT, WINDOW_SIZE, HST_LIMIT, self.seed)


    def start_new_normal(self) -> None:
        """Operator feedback: what the machine does now is normal (a new material, a recipe change).

        The old notion of normal would flag the new regime forever, and learning it slowly while
        refusing to learn outliers never gets there; so the model starts again: warm-up and
        calibration on the new regime, silent meanwhile, keeping its sensors.
        """
        sensors, last = self.sensors, self.last
        self.__init__(self.machine, self.settings, self.seed)  # type: ignore[misc]
        self.last = last
        if sensors is not None:
            self._start(sensors)
