"""SKAB outlier detection with its published protocol.

Per run (one CSV, one pump): the first 400 rows are training, the rest are scored. The detector
is linewatch's online per-machine model fed the eight sensors row by row (single pass, CPU): it
warms up and calibrates on the training rows and keeps learning what it judges normal afterwards.
Predictions are its debounced verdict per row. Metrics, point by point over the test rows of all
runs: F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN) * 100, MAR = FN / (FN + TP) * 100.
(The changepoint NAB score of the protocol is not computed yet.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from linewatch.config import AnomalySettings
from linewatch.detect.anomaly import MachineModel

SENSORS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
           "Voltage", "Volume Flow RateRMS"]
TRAIN_ROWS = 400


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


def predict_run(frame: pd.DataFrame, settings: AnomalySettings) -> np.ndarray:
    model = MachineModel("skab", settings)
    out = np.zeros(len(frame), dtype=bool)
    for i, row in enumerate(frame[SENSORS].itertuples(index=False, name=None)):
        out[i] = model.score_one(dict(zip(SENSORS, map(float, row)))).anomalous
    return out


def evaluate(root: Path, settings: AnomalySettings | None = None) -> dict[str, Any]:
    settings = settings or AnomalySettings(warmup_readings=200, calibration_readings=200)
    tp = fp = fn = tn = 0
    runs = labelled_runs(root)
    for path in tqdm(runs, desc="SKAB", unit="run", disable=None):
        frame = pd.read_csv(path, sep=";")
        predicted = predict_run(frame, settings)[TRAIN_ROWS:]
        actual = frame["anomaly"].to_numpy()[TRAIN_ROWS:].astype(bool)
        tp += int((predicted & actual).sum())
        fp += int((predicted & ~actual).sum())
        fn += int((~predicted & actual).sum())
        tn += int((~predicted & ~actual).sum())
    score = OutlierScore(len(runs), tp, fp, fn, tn, tp / (tp + (fp + fn) / 2), 100 * fp / (fp + tn),
                         100 * fn / (fn + tp))
    return {"protocol": "SKAB outlier detection, first 400 rows of each run for training",
            "settings": settings.model_dump(), "outlier": asdict(score)}
