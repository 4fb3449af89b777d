"""A second per-machine anomaly model: a multivariate EWMA chart with a Hotelling T² statistic.

Why a second model: Half-Space Trees (``detect/anomaly.py``) see each reading on its own and
dilute a shift on one sensor across every dimension, and the per-sensor deviation only sees one
sensor at a time. A process whose sensors move *together* (a pump's current, pressure and flow)
drifts in ways neither view catches early: a small shift that persists, or two sensors that each
stay in their usual range while the relation between them breaks. The multivariate EWMA (MEWMA)
chart of Lowry, Woodall, Champ and Rigdon (1992, "A multivariate exponentially weighted moving
average control chart", Technometrics 34(1), 46-53) is made for exactly that: it averages the
standardised readings over time, so a persistent shift accumulates while noise averages out, and
scores the average with the inverse covariance, so a broken correlation counts as much as a
sensor out of range. On SKAB (``linewatch evaluate skab``) it reaches issue 4's targets where
the Half-Space Trees model does not; see docs/evaluation.md.

Per reading ``x`` (only the modelled sensors)::

    r = (x - mean) / scale                  standardised against the learned normal
    z = λ r + (1 - λ) z                     the EWMA vector (Lowry et al. 1992, eq. 1)
    s = z' P z / (λ / (2 - λ))              T² of z; λ / (2 - λ) is z's asymptotic variance factor

``P`` is the inverse of the Ledoit-Wolf shrunk covariance of the standardised warm-up rows
(Ledoit & Wolf 2004, "A well-conditioned estimator for large-dimensional covariance matrices",
J. Multivariate Analysis 88(2), 365-411): a few hundred rows of correlated sensors give a sample
covariance whose inverse amplifies noise along its smallest eigen-directions; shrinking it towards
a scaled identity keeps the inverse stable without a tuning knob.

Phases, mapped onto linewatch's warm-up and calibration (``AnomalySettings``):

- **warming up** (``warmup_readings``): readings are kept; at the end the mean, scale and precision
  are fitted on them and the EWMA is run over them (from zero) so it starts in its steady state.
- **calibrating** (``calibration_readings``): readings are scored as in monitoring, but never raise
  the alarm; the mean keeps learning. The threshold is ``threshold_margin`` times the largest score
  seen: a data-driven limit from readings the model did *not* fit on (cross-fitted), so it carries
  the estimation error of the fit, which an analytic χ² limit would ignore. Then the mean, scale
  and precision are fitted again on all warm-up and calibration readings (more data, same
  threshold) and the EWMA is run over them again.
- **monitoring**: ``score = s / threshold`` (1.0 is the line), ``outlier = s > threshold``. The alarm
  (``anomalous``) goes on with the first outlier and off only after ``off_delay_readings``
  consecutive readings at or below the threshold: the EWMA hovers around the threshold at the
  edges of a fault, and flapping alerts would be worse than a few seconds' delay. The mean keeps
  learning (rate ``mean_learning_rate``) only from readings taken while the alarm is off, so a
  slowly drifting normal is followed while a fault is never learned as normal. Scale and
  precision stay as fitted: the correlation structure of a machine is stable; its operating point
  drifts.

Explanations: each sensor's share of the T² is ``z_i (P z)_i`` (the shares sum to ``z' P z``); the
contributions are ordered by share, and each gives the sensor's value, its deviation from the mean
in scales (``z`` of the Contribution: the raw reading's, as an operator reads it), and the normal
range ``mean ± 3 scale``, all in the sensor's unit. A broken correlation can put a sensor whose own
value is in range at the top: its share is large, its deviation small.

The EWMA is a recursion and whether a reading is learned depends on the alarm, so readings are
scored one after the other, on small numpy vectors; the Ledoit-Wolf fit runs twice per (re)start.
Measured for 8 sensors on the 2-core benchmark machine: about 180,000 readings/s through
``score_batch`` (batches of 100 or more), 50,000/s through ``score_one``; a model pickles to under
2 kB once calibrated (``MachineModel``: about 50 kB).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from linewatch.detect.verdict import Contribution, Phase, Verdict
from linewatch.detect.rows import Part, first_sensors, model_rows

if TYPE_CHECKING:  # config.py imports MewmaSettings from here: no runtime import of config or anomaly at load time
    from linewatch.config import AnomalySettings
    from linewatch.detect.anomaly import Verdicts

__all__ = ["MewmaModel", "MewmaSettings"]

# Same phase indices as linewatch.detect.anomaly.PHASES (Verdicts maps them back to names).
WARMING_UP, CALIBRATING, MONITORING = range(3)
# A sensor that did not move during warm-up still gets a non-zero scale (the recipe's 1e-9, plus a
# millionth of its level so that float noise on a large constant value is not an infinite deviation).
SCALE_FLOOR_ABS, SCALE_FLOOR_REL = 1e-9, 1e-6
MIN_THRESHOLD = 1e-9  # calibration on perfectly constant readings gives s = 0; never divide by zero


class MewmaSettings(BaseModel):
    """The MEWMA model's knobs; defaults are the ones that reach issue 4's SKAB targets.

    The phase lengths are ``AnomalySettings.warmup_readings`` and ``calibration_readings``, shared
    with the Half-Space Trees model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # λ of the EWMA: weight of the newest reading. Small λ finds small persistent shifts, large λ
    # reacts to large sudden ones; 0.25 is in the range Lowry et al. recommend (0.1-0.3).
    smoothing: float = Field(0.25, gt=0.0, le=1.0)
    # threshold = margin x the largest T² seen while calibrating
    threshold_margin: float = Field(1.25, ge=1.0)
    # the alarm clears after this many consecutive readings at or below the threshold
    off_delay_readings: int = Field(5, ge=1)
    # how fast the mean follows readings taken while the alarm is off (0 = never)
    mean_learning_rate: float = Field(0.01, ge=0.0, lt=1.0)
    # sensors left out of the model (e.g. slow thermal sensors that trend through every run)
    exclude_sensors: tuple[str, ...] = ()


class MewmaModel:
    """The MEWMA / Hotelling T² anomaly model of one machine (same public surface as ``MachineModel``).

    ``mewma`` gives the model's knobs; without it they come from ``settings.mewma`` when the plant's
    ``AnomalySettings`` has that field, else from ``MewmaSettings()``. ``seed`` is accepted for the
    same constructor as ``MachineModel``; the model is deterministic and does not use it.
    """

    def __init__(self, machine: str, settings: AnomalySettings, seed: int = 42,
                 mewma: MewmaSettings | None = None):
        self.machine = machine
        self.settings = settings
        self.seed = seed
        self.mewma = mewma or getattr(settings, "mewma", None) or MewmaSettings()
        self.sensors: tuple[str, ...] | None = None  # the modelled sensors, sorted
        self.last: dict[str, float] = {}
        self.seen = 0
        # warm-up and calibration readings (row i = the i-th reading seen), dropped once calibrated
        self.kept: np.ndarray | None = None
        self.calibration: list[float] = []  # T² of the calibration readings
        self.threshold: float | None = None
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.precision: np.ndarray | None = None
        self.z: np.ndarray | None = None
        self.alarm = False
        self.quiet = 0  # consecutive readings at or below the threshold while the alarm is on

    @property
    def phase(self) -> Phase:
        if self.seen < self.settings.warmup_readings:
            return "warming_up"
        if self.threshold is None:
            return "calibrating"
        return "monitoring"

    # ------------------------------------------------------------ scoring

    def score_one(self, values: Mapping[str, float]) -> Verdict:
        """Score one reading, learn it if it looks normal, and say how anomalous it is."""
        if self.threshold is None or self.sensors is None:
            return self.score_batch([values])[0]
        # Monitoring: the same computation as score_batch without the batch's arrays (twice as fast).
        row, self.last = model_rows(self.sensors, self.last, [[values]])
        s, score, outlier, alarm, deviation, zs, means = self._monitor(row)
        explained = self._explain(row[0], means[0], zs[0]) if outlier[0] or alarm[0] else ()
        return Verdict(float(score[0]), 1.0, float(s[0]), float(deviation[0]), "monitoring", bool(outlier[0]),
                       bool(alarm[0]), explained)

    def score_batch(self, readings: Sequence[Mapping[str, float]]) -> Verdicts:
        """Score readings in order (each scored, then learned if normal, before the next)."""
        return self.score_parts([readings])

    def score_parts(self, parts: Sequence[Part]) -> Verdicts:
        """Score runs of readings (dicts, or blocks of columns) in order, as one batch."""
        parts = [p for p in parts if len(p[1] if isinstance(p, tuple) else p)]
        if not parts:
            return self.score_array(np.empty((0, len(self.sensors or ()))))
        if self.sensors is None:
            excluded = set(self.mewma.exclude_sensors)
            self.sensors = tuple(sorted(s for s in first_sensors(parts[0]) if s not in excluded))
        x, self.last = model_rows(self.sensors, self.last, parts)
        return self.score_array(x)

    def score_array(self, x: np.ndarray) -> Verdicts:
        """Score rows of sensor values (columns in ``self.sensors`` order; the model must have its sensors)."""
        from linewatch.detect.anomaly import Verdicts  # lazily: see the TYPE_CHECKING import

        n = x.shape[0]
        out = Verdicts(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int8),
                       np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        pos = 0
        while pos < n:
            phase = self.phase
            if phase == "warming_up":
                end = min(n, pos + self.settings.warmup_readings - self.seen)
                self._keep(x[pos:end])
                out.phase[pos:end] = WARMING_UP
                self.seen += end - pos
                if self.seen >= self.settings.warmup_readings:
                    self._fit(self._kept())
            elif phase == "calibrating":
                end = min(n, pos + self.settings.calibration_readings - len(self.calibration))
                rows = x[pos:end]
                self._keep(rows)
                s, _, _, means = self._run(rows, calibrating=True)
                self.calibration.extend(s.tolist())
                out.phase[pos:end] = CALIBRATING
                out.tree_score[pos:end] = s
                out.deviation[pos:end] = self._deviation(rows, means)
                self.seen += end - pos
                if len(self.calibration) >= self.settings.calibration_readings:
                    self._calibrate()
            else:
                end = n
                rows = x[pos:end]
                s, score, outlier, alarm, deviation, zs, means = self._monitor(rows)
                span = slice(pos, end)
                out.phase[span] = MONITORING
                out.tree_score[span] = s
                out.score[span] = score
                out.outlier[span] = outlier
                out.anomalous[span] = alarm
                out.deviation[span] = deviation
                for i in np.flatnonzero(outlier | alarm).tolist():
                    out.contributions[pos + i] = self._explain(rows[i], means[i], zs[i])
            pos = end
        return out

    def _monitor(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Score monitored rows: T², score, outlier, alarm, deviation, EWMA vectors, means scored against."""
        assert self.threshold is not None
        s, alarm, zs, means = self._run(rows, calibrating=False)
        self.seen += len(rows)
        return s, s / self.threshold, s > self.threshold, alarm, self._deviation(rows, means), zs, means

    def _run(self, rows: np.ndarray, calibrating: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The recursion over ``rows``: T², alarm, EWMA vector and the mean each row was scored against.

        While calibrating there is no threshold yet: the alarm stays off and every row is learned.
        """
        assert self.mean is not None and self.scale is not None and self.precision is not None
        assert self.z is not None
        n, d = rows.shape
        lam = self.mewma.smoothing
        keep, alpha = 1.0 - lam, self.mewma.mean_learning_rate
        p = self.precision * ((2.0 - lam) / lam)  # s = z' P z / (λ / (2 - λ))
        weight = lam / self.scale  # z gains λ (x - mean) / scale
        threshold = math.inf if calibrating or self.threshold is None else self.threshold
        off_delay = self.mewma.off_delay_readings
        mean, z, on, quiet = self.mean.copy(), self.z.copy(), self.alarm, self.quiet
        s_out, alarm_out = np.empty(n), np.zeros(n, dtype=bool)
        zs, means = np.empty((n, d)), np.empty((n, d))
        for i in range(n):
            means[i] = mean
            step = rows[i] - mean
            z *= keep
            z += step * weight
            zs[i] = z
            s = float(z @ (p @ z))
            s_out[i] = s
            if not on:
                on, quiet = s > threshold, 0
            else:
                quiet = quiet + 1 if s <= threshold else 0
                if quiet >= off_delay:
                    on = False
            alarm_out[i] = on
            if not on and alpha:
                step *= alpha
                mean += step
        self.mean, self.z, self.alarm, self.quiet = mean, z, on, quiet
        return s_out, alarm_out, zs, means

    def _keep(self, rows: np.ndarray) -> None:
        """Keep warm-up and calibration readings in one array (compact to checkpoint), in arrival order."""
        if self.kept is None:
            total = self.settings.warmup_readings + self.settings.calibration_readings
            self.kept = np.empty((total, rows.shape[1]))
        self.kept[self.seen:self.seen + len(rows)] = rows

    def _kept(self) -> np.ndarray:
        assert self.kept is not None
        return self.kept[:self.seen]

    def _deviation(self, rows: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Largest |deviation from the mean| over the sensors, in scales (0 without sensors)."""
        assert self.scale is not None
        if not rows.shape[1]:
            return np.zeros(len(rows))
        return np.abs((rows - means) / self.scale).max(axis=1)

    # ------------------------------------------------------------ fitting

    def _fit(self, rows: np.ndarray) -> None:
        """Mean, scale and Ledoit-Wolf precision of ``rows``; the EWMA is run over them from zero."""
        from sklearn.covariance import LedoitWolf

        d = rows.shape[1]
        self.mean = rows.mean(axis=0)
        self.scale = np.maximum(rows.std(axis=0), SCALE_FLOOR_REL * np.abs(self.mean)) + SCALE_FLOOR_ABS
        standardised = (rows - self.mean) / self.scale
        self.precision = LedoitWolf().fit(standardised).precision_ if d else np.zeros((0, 0))
        lam = self.mewma.smoothing
        z = np.zeros(d)
        for r in standardised:
            z = lam * r + (1.0 - lam) * z
        self.z = z

    def _calibrate(self) -> None:
        self.threshold = max(self.mewma.threshold_margin * max(self.calibration), MIN_THRESHOLD)
        self._fit(self._kept())
        self.kept, self.calibration = None, []
        self.alarm, self.quiet = False, 0

    # ------------------------------------------------------------ explanations

    def _explain(self, row: np.ndarray, mean: np.ndarray, z: np.ndarray) -> tuple[Contribution, ...]:
        """Sensors ordered by their share of the T², ``z_i (P z)_i``, largest first."""
        assert self.sensors is not None and self.scale is not None and self.precision is not None
        share = z * (self.precision @ z)
        order = np.argsort(-share, kind="stable")
        deviation = (row - mean) / self.scale
        low, high = mean - 3 * self.scale, mean + 3 * self.scale
        return tuple(Contribution(self.sensors[i], float(row[i]), float(deviation[i]), float(low[i]), float(high[i]))
                     for i in order.tolist())

    def normal_range(self) -> dict[str, tuple[float, float]]:
        """Each modelled sensor's mean ± 3 scales (from the warm-up readings so far while warming up;
        empty before two readings)."""
        if self.sensors is None:
            return {}
        if self.mean is None or self.scale is None:
            if self.seen < 2:
                return {}
            rows = self._kept()
            mean, scale = rows.mean(axis=0), rows.std(axis=0)
        else:
            mean, scale = self.mean, self.scale
        return {s: (float(m - 3 * d), float(m + 3 * d)) for s, m, d in zip(self.sensors, mean, scale)}

    # ------------------------------------------------------------ state


    def start_new_normal(self) -> None:
        """Operator feedback: what the machine does now is normal (a new material, a recipe change).

        The alarm would otherwise stay on for the new regime, and the mean learns nothing while it
        is on; so the model starts again: warm-up and calibration on the new regime, silent
        meanwhile, keeping its sensors and knobs.
        """
        sensors, last = self.sensors, self.last
        self.__init__(self.machine, self.settings, self.seed, self.mewma)  # type: ignore[misc]
        self.sensors, self.last = sensors, last
