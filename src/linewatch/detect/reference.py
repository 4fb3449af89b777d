"""The river model, reading by reading: the definition linewatch's batch model reproduces.

linewatch scores with ``linewatch.detect.anomaly.MachineModel``, which computes the same scores as
this class from arrays, a batch at a time (tests/detect/test_anomaly_equivalence.py checks they
agree within 1e-9, and scripts/bench runs both side by side). This one stays as river wrote it so
the comparison is always against river itself.

Two river views of each reading: Half-Space Trees over the standard-scaled sensors (joint behaviour
that no single sensor shows) and the largest per-sensor deviation from the scaler's running mean, in
standard deviations (one sensor far out, which Half-Space Trees dilute across dimensions). The model
learns the machine's normal behaviour during a warm-up, then sets a threshold for each view from the
scores it sees during calibration (a quantile, not a magic number). The machine's score is the larger
of the two scores divided by its threshold, so 1.0 is the line between normal and anomalous on every
machine. A reading only counts as anomalous when k of the last n readings were, so one
noisy sample on a vibrating cutter does not flap an alert, and anomalous readings are not learned as
normal. Explanations come from the scaler's running mean and variance: which sensors are furthest
from their normal range, in the sensor's own unit.
"""

from __future__ import annotations

import math
from collections import deque

from river import anomaly, compose, preprocessing

from linewatch.detect.settings import AnomalySettings
from linewatch.detect.verdict import (HST_LIMIT, MIN_DEVIATION_THRESHOLD, N_TREES, TREE_HEIGHT, WINDOW_SIZE, Contribution,
                                     Phase, Verdict, quantile)


class RiverMachineModel:
    """The anomaly model of one machine, in river, one reading at a time."""

    def __init__(self, machine: str, settings: AnomalySettings, seed: int = 42):
        self.machine = machine
        self.settings = settings
        self.scaler = preprocessing.StandardScaler()
        self.trees = anomaly.HalfSpaceTrees(n_trees=N_TREES, height=TREE_HEIGHT, window_size=WINDOW_SIZE, seed=seed)
        self.model = compose.Pipeline(self.scaler, self.trees)
        self.sensors: tuple[str, ...] | None = None
        self.last: dict[str, float] = {}
        self.seen = 0
        self.calibration: list[tuple[float, float]] = []
        self.tree_threshold: float | None = None
        self.deviation_threshold: float | None = None
        self.recent: deque[bool] = deque(maxlen=settings.debounce_n)

    @property
    def phase(self) -> Phase:
        if self.seen < self.settings.warmup_readings:
            return "warming_up"
        if self.tree_threshold is None:
            return "calibrating"
        return "monitoring"

    def score_one(self, values: dict[str, float]) -> Verdict:
        """Score one reading, learn it if it looks normal, and say how anomalous it is."""
        x = self._features(values)
        if self.sensors is None:
            self.sensors = tuple(sorted(values))
            self.trees.limits.update({s: (-HST_LIMIT, HST_LIMIT) for s in self.sensors})
            x = self._features(values)
        phase = self.phase
        tree = float(self.model.score_one(x)) if self.seen >= self.trees.window_size else 0.0
        deviation = self._deviation(x) if self.seen >= 2 else 0.0
        self.seen += 1
        if phase == "warming_up":
            self.model.learn_one(x)
            return Verdict(0.0, None, tree, deviation, phase, False, False)
        if phase == "calibrating":
            self.model.learn_one(x)
            self.calibration.append((tree, deviation))
            if len(self.calibration) >= self.settings.calibration_readings:
                q, margin = self.settings.threshold_quantile, self.settings.threshold_margin
                self.tree_threshold = quantile([c[0] for c in self.calibration], q) * margin
                self.deviation_threshold = max(quantile([c[1] for c in self.calibration], q) * margin, MIN_DEVIATION_THRESHOLD)
                self.calibration = []
            return Verdict(0.0, None, tree, deviation, phase, False, False)
        assert self.tree_threshold is not None and self.deviation_threshold is not None
        score = max(tree / self.tree_threshold, deviation / self.deviation_threshold)
        outlier = score > 1.0
        self.recent.append(outlier)
        anomalous = sum(self.recent) >= self.settings.debounce_k
        contributions = self.explain(x) if (outlier or anomalous) else ()
        if not outlier:
            self.model.learn_one(x)
        return Verdict(score, 1.0, tree, deviation, phase, outlier, anomalous, contributions)

    def _deviation(self, x: dict[str, float]) -> float:
        means, vars_ = self.scaler.means, self.scaler.vars
        worst = 0.0
        for s, v in x.items():
            var = vars_.get(s, 0.0)
            if var > 0.0:
                z = abs(v - means[s]) / math.sqrt(var)
                if z > worst:
                    worst = z
        return worst

    def _features(self, values: dict[str, float]) -> dict[str, float]:
        """The model's fixed feature set: a sensor missing from one reading keeps its last value."""
        if self.sensors is None:
            return dict(values)
        x = {}
        for s in self.sensors:
            v = values.get(s)
            if v is None:
                v = self.last.get(s, 0.0)
            x[s] = v
        self.last = x
        return x

    def explain(self, x: dict[str, float]) -> tuple[Contribution, ...]:
        """Sensors ordered by how far they are from their learned mean, in standard deviations."""
        out = []
        for s, v in x.items():
            mean = self.scaler.means.get(s, 0.0)
            sd = math.sqrt(self.scaler.vars.get(s, 0.0)) or 1e-9
            out.append(Contribution(s, v, (v - mean) / sd, mean - 3 * sd, mean + 3 * sd))
        out.sort(key=lambda c: abs(c.z), reverse=True)
        return tuple(out)

    def start_new_normal(self) -> None:
        """Operator feedback: what the machine does now is normal (a new material, a recipe change).

        The old notion of normal would flag the new regime forever, and learning it slowly while
        refusing to learn outliers never gets there; so the model starts again: warm-up and
        calibration on the new regime, silent meanwhile, keeping its sensors.
        """
        fresh = RiverMachineModel(self.machine, self.settings, seed=self.trees.seed or 42)
        sensors, last = self.sensors, self.last
        self.__dict__.update(fresh.__dict__)
        self.sensors, self.last = None, last
        if sensors is not None:
            self.sensors = sensors
            self.trees.limits.update({s: (-HST_LIMIT, HST_LIMIT) for s in sensors})
