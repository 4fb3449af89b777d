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

- **warming up** (``warmup_readings``): readings are kept; at the end the sensors that trend through
  them (``difference_trending``: a straight line explains more than ``trend_r2`` of a sensor's
  variance, as when a machine heats up) are chosen to be modelled on their change from one reading to
  the next, and the mean, scale and precision are fitted on what the model sees of the readings; the
  EWMA is run over them (from zero) so it starts in its steady state.
- **calibrating** (``calibration_readings``): readings are scored as in monitoring, but never raise
  the alarm; the mean keeps learning. Readings a fault would explain are then left out (a machine can
  start to go wrong while it calibrates; ``_undisturbed``), and each threshold is set from the rest
  (``detect/thresholds.py``): the tail at ``false_alarm_per_reading`` of a scaled χ² whose mean and
  variance are the upper ``threshold_confidence`` bounds of their estimates, given how many
  independent readings the autocorrelated scores hold. These readings are ones the model did *not*
  fit on (cross-fitted), so the threshold carries the fit's estimation error. Then the mean, scale
  and precision are fitted again on the warm-up and the calibration readings kept (more data, same
  threshold) and the EWMA is run over them again.
- **monitoring**: ``score = max(s / threshold, t / single threshold, w / dispersion threshold)`` (1.0
  is the line), where ``t`` is the reading's own Hotelling T² (``shewhart``: the EWMA averages a spike
  away) and ``w`` the dispersion chart, an EWMA of ``log(1 + t / sensors)`` (``dispersion_smoothing``:
  a sensor that gets noisy, or leaves its relation with the others, while the average stays put; the
  logarithm keeps one extreme reading from holding it up; machines with two sensors or more), each
  threshold calibrated like the EWMA's; ``outlier = score > 1``. The alarm (``anomalous``) goes on at
  ``debounce_k`` of the last ``debounce_n`` outliers (the plant's debounce) and off only after ``off_delay_readings``
  consecutive readings at or below the threshold: the EWMA hovers around the threshold at the
  edges of a fault, and flapping alerts would be worse than a few seconds' delay. The mean keeps
  learning (rate ``mean_learning_rate``) only from readings taken while the alarm is off, so a
  slowly drifting normal is followed while a fault is never learned as normal. Every
  ``threshold_update_readings`` readings the thresholds are set again from every normal reading so
  far; they only ever come down (a fault that starts below its threshold must not raise it). Scale and
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
``score_batch`` (batches of 100 or more), 50,000/s through ``score_one`` before issue 11 (the
reading's own T² costs a matrix-vector product more: see docs/benchmarks.md); a model pickles to under
3 kB once calibrated (``MachineModel``: about 50 kB).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from linewatch.detect.verdict import CALIBRATING, MONITORING, WARMING_UP, Contribution, Phase, Verdict, Verdicts
from linewatch.detect.rows import Part, first_sensors, model_rows
from linewatch.detect.thresholds import ScoreSums, chi2_quantile_for, robust_chi2_quantile, upper_mean, upper_variance

from linewatch.detect.settings import AnomalySettings, MewmaSettings

__all__ = ["MewmaModel", "MewmaSettings"]

log = logging.getLogger(__name__)

# A sensor that did not move during warm-up still gets a non-zero scale (the recipe's 1e-9, plus a
# millionth of its level so that float noise on a large constant value is not an infinite deviation).
SCALE_FLOOR_ABS, SCALE_FLOOR_REL = 1e-9, 1e-6
MIN_THRESHOLD = 1e-9  # calibration on perfectly constant readings gives s = 0; never divide by zero


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
        self.calibration: list[float] = []  # T² of the EWMA over the calibration readings
        self.calibration_single: list[float] = []  # each calibration reading's own T²
        self.threshold: float | None = None
        self.single_threshold = math.inf  # for the readings' own T² (inf: not scored)
        self.calibration_dispersion: list[float] = []  # the dispersion chart over the calibration readings
        self.dispersion_threshold = math.inf  # inf: not charted
        self.w = 0.0  # the dispersion chart: EWMA of log(1 + T² / sensors) of each reading
        self.spread_shares: np.ndarray | None = None  # per sensor, EWMA of its share of each reading's T²
        # the normal readings' scores so far, which the thresholds are set from: the EWMA's and the
        # readings' own T², the readings' log(1 + T² / sensors) and the dispersion chart
        self.score_sums: ScoreSums | None = None
        self.calibration_max = np.zeros(3)  # largest EWMA, own and dispersion score while calibrating
        self.since_update = 0  # monitored readings since the thresholds were last set
        self.left_out: tuple[int, int, int] | None = None  # calibration readings, left out, first left out (1-based)
        self.restart_with: MewmaSettings | None = None  # restored from an older checkpoint: the knobs to start again with
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.precision: np.ndarray | None = None
        self.z: np.ndarray | None = None
        self.increments: np.ndarray | None = None  # per sensor: modelled on its change since the last reading
        self.previous: np.ndarray | None = None  # the last reading seen (what a change is measured from)
        self.alarm = False
        self.quiet = 0  # consecutive readings at or below the threshold while the alarm is on
        # whether each of the last debounce_n readings was an outlier: the alarm goes on at debounce_k of them
        self.recent: deque[bool] = deque(maxlen=getattr(settings, "debounce_n", 1))

    def __setstate__(self, state: dict) -> None:
        """Checkpoints of models saved before the readings' own T², the trend rule, the dispersion
        chart or the thresholds' bounds existed come back scoring as they did once calibrated (a model
        saved while still calibrating finishes its calibration by today's rules: it had no threshold to
        keep); when the model starts again ("new normal", a changed sensor set) it starts with today's
        defaults for every knob the plant did not set (``restart_with``)."""
        old = state.get("mewma")
        if isinstance(old, MewmaSettings) and state.get("restart_with") is None \
                and not all(name in old.__dict__ for name in MewmaSettings.model_fields):
            chosen = getattr(old, "__pydantic_fields_set__", None)
            chosen = set(old.__dict__) if chosen is None else chosen
            state["restart_with"] = MewmaSettings(**{k: v for k, v in old.__dict__.items() if k in chosen})
        if isinstance(old, MewmaSettings) and "shewhart" not in old.__dict__:
            old = MewmaSettings(**{**old.__dict__, "shewhart": False, "difference_trending": False})
        if isinstance(old, MewmaSettings) and "dispersion_smoothing" not in old.__dict__:
            old = MewmaSettings(**{**old.__dict__, "dispersion_smoothing": 0.0})
        if isinstance(old, MewmaSettings) and "threshold_confidence" not in old.__dict__:
            old = MewmaSettings(**{**old.__dict__, "threshold_confidence": 0.5, "threshold_update_readings": 0})
        state["mewma"] = old
        state.setdefault("calibration_single", [])
        state.setdefault("single_threshold", math.inf)
        state.setdefault("calibration_dispersion", [])
        state.setdefault("dispersion_threshold", math.inf)
        state.setdefault("w", 0.0)
        state.setdefault("spread_shares", None)
        state.setdefault("restart_with", None)
        state.setdefault("score_sums", None)
        state.setdefault("calibration_max", np.zeros(3))
        state.setdefault("since_update", 0)
        state.setdefault("left_out", None)
        state.setdefault("increments", None)
        state.setdefault("previous", None)
        state.setdefault("recent", deque(maxlen=getattr(state["settings"], "debounce_n", 1)))
        self.__dict__.update(state)

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
        s, score, outlier, alarm, deviation, share_of, means, steps, before = self._monitor(row)
        explained = self._explain(row[0], steps[0], before[0], means[0], share_of(0)) if outlier[0] or alarm[0] else ()
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
        n = x.shape[0]
        out = Verdicts(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int8),
                       np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        pos = 0
        while pos < n:
            phase = self.phase
            if phase == "warming_up":
                end = min(n, pos + self.settings.warmup_readings - self.seen)
                self._keep(x[pos:end])
                self.previous = x[end - 1].copy()
                out.phase[pos:end] = WARMING_UP
                self.seen += end - pos
                if self.seen >= self.settings.warmup_readings:
                    self._fit(self._kept(), decide=True)
            elif phase == "calibrating":
                end = min(n, pos + self.settings.calibration_readings - len(self.calibration))
                rows = x[pos:end]
                self._keep(rows)
                steps, _ = self._steps(rows)
                s, single, spread, _, _, means, _ = self._run(steps, calibrating=True)
                self.calibration.extend(s.tolist())
                self.calibration_single.extend(single.tolist())
                self.calibration_dispersion.extend(spread.tolist())
                out.phase[pos:end] = CALIBRATING
                out.tree_score[pos:end] = s
                out.deviation[pos:end] = self._deviation(steps, means)
                self.seen += end - pos
                if len(self.calibration) >= self.settings.calibration_readings:
                    self._calibrate()
            else:  # up to the next time the thresholds are set again
                update = self.mewma.threshold_update_readings if self.score_sums is not None else 0
                end = min(n, pos + update - self.since_update) if update else n
                rows = x[pos:end]
                s, score, outlier, alarm, deviation, share_of, means, steps, before = self._monitor(rows)
                span = slice(pos, end)
                out.phase[span] = MONITORING
                out.tree_score[span] = s
                out.score[span] = score
                out.outlier[span] = outlier
                out.anomalous[span] = alarm
                out.deviation[span] = deviation
                for i in np.flatnonzero(outlier | alarm).tolist():
                    out.contributions[pos + i] = self._explain(rows[i], steps[i], before[i], means[i], share_of(i))
            pos = end
        return out

    def _steps(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the model sees of ``rows`` (a differenced sensor's change since the reading before,
        the others' values) and the reading before each row; moves ``previous`` on."""
        first = rows[:1] if self.previous is None else self.previous[None, :]  # None: a model checkpointed before
        before = np.vstack([first, rows[:-1]]) if len(rows) else rows
        self.previous = rows[-1].copy() if len(rows) else self.previous
        if self.increments is None or not self.increments.any():
            return rows, before
        steps = rows.copy()
        steps[:, self.increments] = rows[:, self.increments] - before[:, self.increments]
        return steps, before

    def _monitor(self, rows: np.ndarray) -> tuple[Any, ...]:
        """Score monitored rows: EWMA T², score, outlier, alarm, deviation, each row's sensor shares (a
        function of the row: what explains it), means scored against, what the model saw of each row and
        the reading before it."""
        assert self.threshold is not None and self.precision is not None
        steps, before = self._steps(rows)
        s, single, spread, alarm, zs, means, spreads = self._run(steps, calibrating=False)
        self.seen += len(rows)
        mean_or_single = np.maximum(s / self.threshold, single / self.single_threshold)
        by_spread = spread / self.dispersion_threshold
        score = np.maximum(mean_or_single, by_spread)
        precision = self.precision

        def share_of(i: int) -> np.ndarray:
            """Each sensor's share of the statistic that scores row i highest: of the EWMA's T²,
            ``z_i (P z)_i``, or, where the dispersion chart leads, of the readings' recent T²s."""
            if spreads is not None and by_spread[i] > mean_or_single[i]:
                return spreads[i]
            return zs[i] * (precision @ zs[i])

        if self.score_sums is not None and self.mewma.threshold_update_readings:
            self._learn_scores(s, single, spread, np.isfinite(score) & (score <= 1.0) & ~alarm)
        return s, score, score > 1.0, alarm, self._deviation(steps, means), share_of, means, steps, before

    def _learn_scores(self, s: np.ndarray, single: np.ndarray, spread: np.ndarray, normal: np.ndarray) -> None:
        """Add normal readings' scores to the sums the thresholds come from; set them again when due."""
        assert self.score_sums is not None
        self.score_sums.add(self._score_columns(s, single, spread), normal)
        self.since_update += len(s)
        if self.since_update >= self.mewma.threshold_update_readings:
            self._set_thresholds(tighten_only=True)
            self.since_update = 0

    def _run(self, rows: np.ndarray, calibrating: bool) -> tuple[Any, ...]:
        """The recursion over ``rows`` (as the model sees them): the EWMA's T², each row's own T²,
        alarm, EWMA vector and the mean each row was scored against.

        While calibrating there is no threshold yet: the alarm stays off and every row is learned.
        """
        assert self.mean is not None and self.scale is not None and self.precision is not None
        assert self.z is not None
        n, d = rows.shape
        lam = self.mewma.smoothing
        keep, alpha = 1.0 - lam, self.mewma.mean_learning_rate
        p = self.precision * ((2.0 - lam) / lam)  # s = z' P z / (λ / (2 - λ))
        weight = lam / self.scale  # z gains λ (x - mean) / scale
        single = self.mewma.shewhart
        inverse_scale, precision = 1.0 / self.scale, self.precision
        threshold = math.inf if calibrating or self.threshold is None else self.threshold
        single_threshold = math.inf if calibrating else self.single_threshold
        spread_threshold = math.inf if calibrating else self.dispersion_threshold
        mu = self.mewma.dispersion_smoothing if self._charts_dispersion() else 0.0
        w, inverse_d = self.w, 1.0 / max(d, 1)
        off_delay = self.mewma.off_delay_readings
        k, recent = getattr(self.settings, "debounce_k", 1), self.recent
        flagged = sum(recent)
        mean, z, on, quiet = self.mean.copy(), self.z.copy(), self.alarm, self.quiet
        s_out, single_out, spread_out, alarm_out = np.empty(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
        zs, means = np.empty((n, d)), np.empty((n, d))
        for i in range(n):
            means[i] = mean
            step = rows[i] - mean
            z *= keep
            z += step * weight
            zs[i] = z
            s = float(z @ (p @ z))
            s_out[i] = s
            out = s > threshold
            if single:
                r = step * inverse_scale
                t = float(r @ (precision @ r))
                single_out[i] = t
                out = out or t > single_threshold
                if mu:
                    w += mu * (math.log1p(t * inverse_d) - w)
                    spread_out[i] = w
                    out = out or w > spread_threshold
            if len(recent) == recent.maxlen:
                flagged -= recent[0]
            recent.append(out)
            flagged += out
            if not on:
                on, quiet = flagged >= k, 0
            else:
                quiet = quiet + 1 if not out else 0
                if quiet >= off_delay:
                    on = False
            alarm_out[i] = on
            if not on and alpha:
                step *= alpha
                mean += step
        self.mean, self.z, self.alarm, self.quiet, self.w = mean, z, on, quiet, w
        # the shares only explain monitored readings; _fit sets them afresh when calibration ends
        spreads = self._spread_shares(rows, means) if mu and not calibrating else None
        return s_out, single_out, spread_out, alarm_out, zs, means, spreads

    def _spread_shares(self, rows: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Per row and sensor, the EWMA of the sensor's share of each reading's own T², ``r_i (P r)_i``:
        what a reading the dispersion chart flags is explained by. Outside the recursion (it decides
        nothing), as one filter over the rows."""
        assert self.scale is not None and self.precision is not None
        before = np.zeros(rows.shape[1]) if self.spread_shares is None else self.spread_shares
        shares = ewma(t2_shares((rows - means) / self.scale, self.precision), self.mewma.dispersion_smoothing, before)
        if len(shares):
            self.spread_shares = shares[-1].copy()
        return shares

    def _keep(self, rows: np.ndarray) -> None:
        """Keep warm-up and calibration readings in one array (compact to checkpoint), in arrival order."""
        if self.kept is None:
            total = self.settings.warmup_readings + self.settings.calibration_readings
            self.kept = np.zeros((total, rows.shape[1]))  # not empty(): a checkpoint is the same in every worker
        self.kept[self.seen:self.seen + len(rows)] = rows

    def _kept(self) -> np.ndarray:
        assert self.kept is not None
        return self.kept[:self.seen]

    def _deviation(self, steps: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Largest |deviation from the mean| over the sensors, in scales (0 without sensors)."""
        assert self.scale is not None
        if not steps.shape[1]:
            return np.zeros(len(steps))
        return np.abs((steps - means) / self.scale).max(axis=1)

    # ------------------------------------------------------------ fitting

    def _fit(self, rows: np.ndarray, decide: bool = False, use: np.ndarray | None = None) -> None:
        """Mean, scale and Ledoit-Wolf precision of ``rows`` (raw readings, in arrival order) as the model
        sees them; the EWMA is run over them from zero. ``decide``: first decide which sensors trend;
        ``use``: only these rows (a differenced sensor's change is still taken from the row before)."""
        from sklearn.covariance import LedoitWolf

        d = rows.shape[1]
        if decide or self.increments is None:
            self.increments = trending(rows, self.mewma.trend_r2) if self.mewma.difference_trending \
                else np.zeros(d, dtype=bool)
        seen = rows.copy()
        if self.increments.any() and len(rows):
            seen[:, self.increments] = np.diff(rows[:, self.increments], axis=0, prepend=rows[:1, self.increments])
        if use is not None:
            seen = seen[use]
        self.mean = seen.mean(axis=0)
        self.scale = np.maximum(seen.std(axis=0), SCALE_FLOOR_REL * np.abs(self.mean)) + SCALE_FLOOR_ABS
        standardised = (seen - self.mean) / self.scale
        self.precision = LedoitWolf().fit(standardised).precision_ if d else np.zeros((0, 0))
        lam = self.mewma.smoothing
        z = np.zeros(d)
        for r in standardised:
            z = lam * r + (1.0 - lam) * z
        self.z = z
        if len(standardised):  # the dispersion chart and its sensor shares, run over them from their mean
            mu, shares = self.mewma.dispersion_smoothing, t2_shares(standardised, self.precision)
            values = spread_values(shares.sum(axis=1), d)
            self.w = float(ewma(values[:, None], mu, values.mean(keepdims=True))[-1, 0])
            self.spread_shares = ewma(shares, mu, shares.mean(axis=0))[-1].copy()

    def _calibrate(self) -> None:
        n = len(self.calibration)  # a checkpoint from before the own T² or the chart lacks their lists
        scores = np.column_stack([self.calibration] + [values if len(values) == n else np.zeros(n)
                                                       for values in (self.calibration_single, self.calibration_dispersion)])
        self.since_update = 0
        clean = self._undisturbed(scores)
        left_out = int((~clean).sum())
        self.left_out = (n, left_out, int(np.argmin(clean)) + 1 if left_out else 0)
        if left_out:
            log.info("%s: %d of %d calibration readings left out as disturbed (the first is calibration reading "
                     "%d); thresholds set from the other %d", self.machine, left_out, n, self.left_out[2], n - left_out)
        self._fit(self._kept(), use=np.concatenate([np.ones(self.settings.warmup_readings, dtype=bool), clean]))
        self.kept, self.calibration, self.calibration_single, self.calibration_dispersion = None, [], [], []
        self.alarm, self.quiet = False, 0
        self.recent.clear()

    def _learn_calibration(self, scores: np.ndarray, clean: np.ndarray) -> None:
        """The thresholds from the ``clean`` calibration readings' scores (EWMA, own T², dispersion)."""
        self.score_sums = ScoreSums(4)
        self.score_sums.add(self._score_columns(scores[:, 0], scores[:, 1], scores[:, 2]), clean)
        self.calibration_max = scores[clean].max(axis=0)
        self._set_thresholds()

    def _score_columns(self, s: np.ndarray, single: np.ndarray, chart: np.ndarray) -> np.ndarray:
        """The series ``score_sums`` keeps, per reading: EWMA T², own T², log(1 + own T² / sensors), chart."""
        return np.column_stack([s, single, spread_values(single, len(self.sensors or ())), chart])

    def _undisturbed(self, scores: np.ndarray) -> np.ndarray:
        """Which calibration readings the thresholds and the refit learn from (and sets the thresholds
        from them): all but those near a reading that a fault would explain. A machine can start to go
        wrong while it calibrates (it was already degrading, or the fault came soon after a "new
        normal"); learned as normal, the fault would raise the thresholds past itself and the model
        would never see it.

        First screen: a reading is disturbed when one of its scores exceeds the tail at
        ``false_alarm_per_reading`` of a scaled χ² fitted to that score's lower quartile and median
        over calibration, which a fault on a minority of the readings moves only a little. Then, a
        few times over, the thresholds are set from the readings left and a reading is disturbed when
        it exceeds them: an odd reading of a heavy-tailed normal comes back, a fault's stay out. The
        readings within the charts' memory (``3 / λ``: the EWMA's weight under 5 %) of a disturbed one
        go with it. A reading whose scores are not finite is always disturbed. If fewer than a third of
        the readings (or fewer than 30) would remain, none is left out: a fault cannot be told from a
        normal the model has seen too little of."""
        n = len(scores)
        everything = np.ones(n, dtype=bool)
        p = 1.0 - self.mewma.false_alarm_per_reading
        charts = [0] + ([1] if self.mewma.shewhart else []) + ([2] if self._charts_dispersion() else [])
        smoothing = min([self.mewma.smoothing] + ([self.mewma.dispersion_smoothing] if 2 in charts else []))
        memory = math.ceil(3.0 / smoothing)
        broken = ~np.isfinite(scores).all(axis=1)

        def clean_of(disturbed: Any) -> np.ndarray:
            near = np.convolve((disturbed | broken).astype(float), np.ones(2 * memory + 1))[memory:memory + n] > 0
            return ~near if (~near).sum() >= max(30, n / 3) else everything

        finite = scores[~broken] if broken.any() else scores
        limits = np.array([robust_chi2_quantile(finite[:, c], p) for c in charts]) if len(finite) else np.full(len(charts), np.inf)
        clean = clean_of((scores[:, charts] > limits).any(axis=1))
        for _ in range(5):
            self._learn_calibration(scores, clean)
            if clean.all():
                return clean
            limits = np.array([self.threshold, self.single_threshold, self.dispersion_threshold])[charts]
            again = clean_of((scores[:, charts] > limits).any(axis=1))
            if (again == clean).all():
                return clean
            clean = again
        self._learn_calibration(scores, clean)
        return clean

    def _charts_dispersion(self) -> bool:
        """Whether the dispersion chart runs: it needs the readings' own T², and at least two sensors. With
        one sensor the reading's own T² is its squared deviation, and a sensor that gets noisy already
        crosses its threshold within a few readings; with many, one noisy sensor's share of the T² is
        diluted by the others, which is what the chart's averaging recovers."""
        return bool(self.mewma.shewhart and self.mewma.dispersion_smoothing and len(self.sensors or ()) >= 2)

    def _set_thresholds(self, tighten_only: bool = False) -> None:
        """Each chart's threshold from the normal readings' scores so far (see ``threshold_confidence``).

        ``tighten_only`` (the updates while monitoring): a threshold only comes down. More readings
        narrow the bounds; but a fault that starts below its threshold (a slow drift, a sensor getting
        noisier) also adds its readings to the sums, and a threshold that rose with them would let the
        fault hide itself.

        The dispersion chart is an EWMA (weight μ) of the readings' log(1 + T² / sensors), ``v``; its
        variance is the larger of the chart's own and that of an EWMA of an AR(1) series with v's variance
        and lag-1 autocorrelation ρ, ``var(v) μ / (2 - μ) (1 + (1 - μ) ρ) / (1 - (1 - μ) ρ)``. Its
        uncertainty is counted with the readings: their number divided by how much more the chart varies
        than independent readings would make it (memory longer than one reading), and at most v's
        effective number; the bound on its mean is the bound on v's mean, from v's spread and effective
        number. Not with the chart's own lag-1 count: the chart is a fixed filter of the
        readings, autocorrelated by construction, and that count would leave 150 independent readings
        worth eight (a sensor three times noisier was then flagged on 14 % of its rows, not 80 %)."""
        assert self.score_sums is not None
        sums, knobs = self.score_sums, self.mewma
        p, margin = 1.0 - knobs.false_alarm_per_reading, knobs.threshold_margin

        def limit(mean: float, var: float, n: float, top: float, now: float,
                  of_mean: tuple[float, float] | None = None) -> float:
            """``of_mean``: the variance and count the mean's own bound rests on, where they are not the
            statistic's (the dispersion chart's mean is the readings' mean of v: v's spread and count)."""
            mean_var, n_mean = of_mean or (var, n)
            confidence = knobs.threshold_confidence
            bound = chi2_quantile_for(upper_mean(mean, mean_var, n_mean, confidence),
                                      upper_variance(var, n, confidence), p)
            new = max(margin * top, bound, MIN_THRESHOLD)
            return min(new, now) if tighten_only else new

        mean, var, n, _ = sums.moments(0)
        self.threshold = limit(mean, var, n, float(self.calibration_max[0]), self.threshold or math.inf)
        if knobs.shewhart:
            mean, var, n, _ = sums.moments(1)
            self.single_threshold = limit(mean, var, n, float(self.calibration_max[1]), self.single_threshold)
        if self._charts_dispersion():
            mu = knobs.dispersion_smoothing
            mean, var, n_values, rho = sums.moments(2)
            a, independent = (1.0 - mu) * rho, var * mu / (2.0 - mu)
            own = sums.moments(3)[1]
            chart_var, n = max(independent * (1.0 + a) / (1.0 - a), own), n_values
            if independent > 0:  # memory beyond one reading shows as the chart varying more than that
                n = min(n, max(2.0, float(sums.sums[2, 0]) / max(own / independent, 1.0)))
            self.dispersion_threshold = limit(mean, chart_var, n, float(self.calibration_max[2]),
                                              self.dispersion_threshold, of_mean=(var, n_values))

    # ------------------------------------------------------------ explanations

    def _explain(self, row: np.ndarray, step: np.ndarray, before: np.ndarray, mean: np.ndarray,
                 share: np.ndarray) -> tuple[Contribution, ...]:
        """Sensors ordered by their share of the statistic that flagged the reading, largest first. A
        differenced sensor's normal range is where this reading was expected, given the one before it."""
        assert self.sensors is not None and self.scale is not None and self.precision is not None
        order = np.argsort(-share, kind="stable")
        deviation = (step - mean) / self.scale
        centre = mean if self.increments is None or not self.increments.any() \
            else np.where(self.increments, before + mean, mean)
        low, high = centre - 3 * self.scale, centre + 3 * self.scale
        return tuple(Contribution(self.sensors[i], float(row[i]), float(deviation[i]), float(low[i]), float(high[i]))
                     for i in order.tolist())

    def calibration_summary(self) -> dict[str, int] | None:
        """How the thresholds were calibrated, for the machine's page: readings, how many were left out
        as disturbed and the first of them (None until calibrated, or restored from older code)."""
        if self.left_out is None:
            return None
        readings, left_out, first = self.left_out
        return {"readings": readings, "left_out": left_out} | ({"first_left_out": first} if left_out else {})

    def normal_range(self) -> dict[str, tuple[float, float]]:
        """Each modelled sensor's mean ± 3 scales (from the warm-up readings so far while warming up;
        empty before two readings); for a differenced sensor, the range of its next reading given the last."""
        if self.sensors is None:
            return {}
        if self.mean is None or self.scale is None:
            if self.seen < 2:
                return {}
            rows = self._kept()
            mean, scale = rows.mean(axis=0), rows.std(axis=0)
        else:
            mean, scale = self.mean, self.scale
            if self.increments is not None and self.increments.any() and self.previous is not None:
                mean = np.where(self.increments, self.previous + mean, mean)
        return {s: (float(m - 3 * d), float(m + 3 * d)) for s, m, d in zip(self.sensors, mean, scale)}

    # ------------------------------------------------------------ state


    def start_new_normal(self) -> None:
        """Operator feedback: what the machine does now is normal (a new material, a recipe change).

        The alarm would otherwise stay on for the new regime, and the mean learns nothing while it
        is on; so the model starts again: warm-up and calibration on the new regime, silent
        meanwhile, keeping its sensors and knobs.
        """
        sensors, last = self.sensors, self.last
        knobs = self.restart_with or self.mewma  # a model from an older checkpoint starts with today's knobs
        self.__init__(self.machine, self.settings, self.seed, knobs)  # type: ignore[misc]
        self.sensors, self.last = sensors, last


def spread_values(t2: np.ndarray, sensors: int) -> np.ndarray:
    """What the dispersion chart averages for each reading's own T²: log(1 + T² / sensors)."""
    return np.log1p(np.maximum(t2, 0.0) / max(sensors, 1))


def t2_shares(standardised: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Each sensor's share ``r_i (P r)_i`` of each standardised row's own T² (a row sums to its T²).
    einsum, not @: the same bits for a row whether it comes alone or in a batch."""
    return standardised * np.einsum("ij,jk->ik", standardised, precision)


def ewma(rows: np.ndarray, weight: float, start: np.ndarray) -> np.ndarray:
    """The EWMA of ``rows`` (along axis 0) from ``start``: each row ``weight x + (1 - weight) previous``."""
    from scipy.signal import lfilter

    if len(rows) == 1:  # one reading (score_one): what the filter computes, without its overhead
        return (weight * rows[0] + (1.0 - weight) * start)[None, :]
    return lfilter([weight], [1.0, weight - 1.0], rows, axis=0, zi=((1.0 - weight) * start)[None, :])[0]


def trending(rows: np.ndarray, r2: float) -> np.ndarray:
    """Per sensor, whether a straight line over time explains more than ``r2`` of its readings' variance.

    >>> t = np.arange(100.0)
    >>> trending(np.column_stack([t, np.sin(t), np.full(100, 3.0)]), 0.5).tolist()
    [True, False, False]
    """
    n = len(rows)
    if n < 3:
        return np.zeros(rows.shape[1], dtype=bool)
    t = np.arange(n) - (n - 1) / 2.0
    centred = rows - rows.mean(axis=0)
    spread = (t @ t) * (centred * centred).sum(axis=0)
    explained = np.divide((t @ centred) ** 2, spread, out=np.zeros(rows.shape[1]), where=spread > 0)
    return explained > r2
