"""SKAB outlier and changepoint detection with its published protocol.

Per run (one CSV, one pump): the first 400 rows are training, the rest are scored. The detector is
one of linewatch's online per-machine models, fed the sensors row by row (single pass, CPU, only
the past): it warms up and calibrates on the training rows and keeps learning what it judges
normal afterwards. Two detectors, as a plant can choose them:

- ``mewma`` (default, as in production): ``linewatch.detect.mewma.MewmaModel``, the multivariate EWMA
  with a Hotelling T² statistic and each reading's own T²; warm-up 250 rows, calibration 150
  (thresholds from rows the fit did not see), all eight sensors with the plant's default knobs.
  Prediction: its alarm (on at debounce_k of the last debounce_n readings over a threshold, off after
  ``off_delay_readings`` quiet readings). ``--exclude-thermal`` repeats the pre-issue-11 comparison
  on six sensors.
- ``halfspace``: ``linewatch.detect.anomaly.MachineModel`` (river's scaler and Half-Space Trees plus
  the per-sensor deviation), warm-up 200, calibration 200, all eight sensors. Prediction: its
  debounced verdict (k of the last n readings).

Metrics, over the test rows of all 34 runs:

- outliers, point by point: F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN) * 100,
  MAR = FN / (FN + TP) * 100 (SKAB's ``chp_score(metric="binary")``);
- changepoints: predicted changepoints are ``|diff|`` of the binary prediction, scored with SKAB's own
  NAB variant (``linewatch.evaluate.skab_nab``: windows [cp, cp + 60 s], tanh reward, no probation),
  the figure on SKAB's leaderboard. For comparison, the same predicted changepoints are also scored
  with linewatch's port of NAB's original scorer (``linewatch.evaluate.nab``: sigmoid reward, FP cost
  decaying after a window) on the same windows made disjoint, no probation, detection = changepoint
  (threshold 0.5 on 0/1): labelled ``linewatch_nab_standard``, not comparable with SKAB's table.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from linewatch.config import AnomalySettings
from linewatch.detect.mewma import MewmaSettings
from linewatch.detect.models import make_model
from linewatch.evaluate import nab, skab_nab

SENSORS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
           "Voltage", "Volume Flow RateRMS"]
TRAIN_ROWS = 400
Detector = Literal["mewma", "halfspace"]
DETECTORS: tuple[Detector, ...] = ("mewma", "halfspace")

# Before issue 11 the MEWMA figures left SKAB's two thermal sensors out; they are kept here only for
# ``--exclude-thermal`` (a comparison with those figures), never for the production default. Temperature (motor body) and Thermocouple
# (circulating water) are slow: they trend upwards through every run, anomalous or not, so a model
# fitted on the first 400 rows finds them "shifted" later in every run and alarms on the trend,
# not on the fault. This choice was made AFTER LOOKING AT THE DATA (the labelled runs themselves),
# not from prior knowledge of the rig, so it is a form of tuning on the test set: say so wherever
# the figures are quoted. The Half-Space Trees figures use all eight sensors.
SKAB_EXCLUDED_SENSORS: tuple[str, ...] = ("Temperature", "Thermocouple")

# Phase lengths inside the 400 training rows. MEWMA: fit on 250, threshold from the next 150 (rows
# the fit did not see), then refit on all 400. Half-Space Trees: 200 + 200, as measured before issue 4.
HALFSPACE_SETTINGS = AnomalySettings(warmup_readings=200, calibration_readings=200)
MEWMA_PHASES = AnomalySettings(warmup_readings=250, calibration_readings=150)
MEWMA_SETTINGS = MewmaSettings()  # the plant's defaults: every sensor
EXCLUDED_THERMAL = MewmaSettings(exclude_sensors=SKAB_EXCLUDED_SENSORS)


@dataclass
class OutlierScore:
    files: int
    tp: int
    fp: int
    fn: int
    tn: int
    f1: float
    far_percent: float
    mar_percent: float


def labelled_runs(root: Path) -> list[Path]:
    root = Path(root)
    runs = sorted(root.glob("valve1/*.csv")) + sorted(root.glob("valve2/*.csv")) + sorted(root.glob("other/*.csv"))
    if not runs:
        raise FileNotFoundError(f"no SKAB runs (valve1/, valve2/, other/) under {root}")
    return runs


def predict_run(frame: pd.DataFrame, settings: AnomalySettings, detector: Detector = "halfspace",
                mewma: MewmaSettings | None = None) -> np.ndarray:
    """The detector's binary prediction for every row of one run (training rows included)."""
    model = make_model("skab", settings, detector, mewma=mewma or MEWMA_SETTINGS)
    readings = [dict(zip(SENSORS, map(float, row))) for row in frame[SENSORS].itertuples(index=False, name=None)]
    # score_batch scores and learns the readings one after the other, exactly as score_one would.
    return np.asarray(model.score_batch(readings).anomalous, dtype=bool)


def _disjoint(windows: list[tuple[pd.Timestamp, pd.Timestamp]], times: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """SKAB's windows may touch; NAB's must not: a window that touches the previous one starts 1 s
    after it ends, and windows left without rows are dropped."""
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for start, end in windows:
        if out and start <= out[-1][1]:
            start = out[-1][1] + pd.Timedelta("1s")
        if end >= start and ((times >= start) & (times <= end)).any():
            out.append((start, end))
    return out


def evaluate(root: Path, settings: AnomalySettings | None = None, detector: Detector = "mewma",
             mewma: MewmaSettings | None = None) -> dict[str, Any]:
    """Outlier F1 / FAR / MAR and changepoint NAB scores of one detector over SKAB's labelled runs."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    settings = settings or (MEWMA_PHASES if detector == "mewma" else HALFSPACE_SETTINGS)
    mewma = mewma or MEWMA_SETTINGS
    started = time.perf_counter()
    tp = fp = fn = tn = 0
    runs = labelled_runs(root)
    run_scores, nab_results, nab_windows = [], {}, {}
    # false alarms on labelled-normal rows before a run's first anomaly, and after it (where the rig may
    # not be back to where it was before, and a monitor rightly keeps its alarm until someone says so)
    fp_after = normal_after = 0
    for path in tqdm(runs, desc="SKAB", unit="run", disable=None):
        frame = pd.read_csv(path, sep=";")
        predicted = predict_run(frame, settings, detector, mewma)[TRAIN_ROWS:]
        actual = frame["anomaly"].to_numpy()[TRAIN_ROWS:].astype(bool)
        tp += int((predicted & actual).sum())
        fp += int((predicted & ~actual).sum())
        fn += int((~predicted & actual).sum())
        tn += int((~predicted & ~actual).sum())
        after = np.arange(len(actual)) >= (int(np.argmax(actual)) if actual.any() else len(actual))
        fp_after += int((predicted & ~actual & after).sum())
        normal_after += int((~actual & after).sum())
        times = pd.DatetimeIndex(pd.to_datetime(frame["datetime"].to_numpy()[TRAIN_ROWS:]))
        true_cp = frame["changepoint"].to_numpy()[TRAIN_ROWS:].astype(int)
        predicted_cp = skab_nab.changepoints_from_alarms(predicted)
        run_scores.append(skab_nab.score_run(times, true_cp, predicted_cp))
        name = f"{path.parent.name}/{path.name}"
        nab_windows[name] = _disjoint(skab_nab.detection_windows(times, true_cp), times)
        nab_results[name] = (times, predicted_cp.astype(float))
    score = OutlierScore(len(runs), tp, fp, fn, tn, tp / (tp + (fp + fn) / 2), 100 * fp / (fp + tn),
                         100 * fn / (fn + tp))
    skab_scores = skab_nab.normalise(run_scores)
    linewatch_nab = nab.score_corpus(nab_results, nab_windows, ["standard"], thresholds={"standard": 0.5},
                                     probationary_percent=0.0)["standard"]
    result: dict[str, Any] = {
        "protocol": "SKAB, first 400 rows of each run for training, the rest scored online in one pass",
        "detector": detector,
        # the MEWMA model uses only the phase lengths of AnomalySettings; its own knobs follow
        "settings": (settings.model_dump(include={"warmup_readings", "calibration_readings"})
                     if detector == "mewma" else settings.model_dump()),
    }
    if detector == "mewma":
        result["mewma"] = mewma.model_dump(mode="json")
        result["note"] = ("sensors " + " and ".join(mewma.exclude_sensors) + " excluded from the model, "
                          "a choice made after looking at the data") if mewma.exclude_sensors else ""
    result["outlier"] = asdict(score) | {
        "far_before_first_anomaly_percent": 100 * (fp - fp_after) / max(1, fp + tn - normal_after),
        "far_after_an_anomaly_percent": 100 * fp_after / max(1, normal_after)}
    result["changepoint"] = {
        "skab_nab": {name: r.score for name, r in skab_scores.items()},
        **skab_nab.counts(run_scores),
        "linewatch_nab_standard": linewatch_nab.score,
    }
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result
