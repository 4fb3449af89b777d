"""linewatch's anomaly detector over NAB-format series (``timestamp,value`` CSVs).

Each file is one machine with one sensor, scored online in a single pass like the worker scores
readings: the model warms up on the start of the series, calibrates its threshold, then scores.
Scores are written as NAB expects them (``timestamp,value,anomaly_score`` with scores in [0, 1]),
so linewatch is compared with other detectors on the same scorer. The per-row score is the anomaly
likelihood of the model's own score, as NAB's HTM entry reports its likelihood: NAB counts every
flagged row outside a window, and a model whose alarm rightly stays on through a level shift would
otherwise be charged for each row of it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from linewatch.config import AnomalySettings, load_config
from linewatch.detect.likelihood import exceedance, likelihood, log_likelihood
from linewatch.detect.models import make_model
from linewatch.detect.verdict import MONITORING, Verdicts
from linewatch.evaluate.episodes import episodes, fired_rows
from linewatch.evaluate.nab import load_data, load_windows


def score_series(values: pd.Series, settings: AnomalySettings, model_kind: str = "halfspace") -> list[float]:
    """Online per-row scores in [0, 1]: the anomaly likelihood (``detect/likelihood.py``) of the model's
    exceedance of its own threshold, on a log scale. The model scores and learns the rows one after
    the other, exactly as the worker does; rows before it is calibrated get 0.5."""
    return row_scores(verdicts_of(values, settings, model_kind))


def verdicts_of(values: pd.Series, settings: AnomalySettings, model_kind: str = "halfspace") -> Verdicts:
    """The model's verdicts on the series, scored and learned row after row as the worker does.

    A row without a finite value (an empty or NaN cell) is a reading the worker would have rejected: it
    is not scored, and its verdict is "not judging" (no score, no alarm), as a row before calibration."""
    model = make_model("series", settings, model_kind)
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(x)
    scored = model.score_batch([{"value": v} for v in x[finite].tolist()])
    if finite.all():
        return scored
    n = len(x)
    out = Verdicts(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool),
                   np.zeros(n, dtype=bool))
    for name in ("score", "tree_score", "deviation", "phase", "outlier", "anomalous"):
        getattr(out, name)[finite] = getattr(scored, name)
    rows = np.flatnonzero(finite)
    out.contributions = {int(rows[i]): c for i, c in scored.contributions.items()}
    return out


def row_scores(verdicts: Verdicts) -> list[float]:
    raw = np.where(verdicts.phase == MONITORING, exceedance(verdicts.score), np.nan)
    return log_likelihood(likelihood(raw)).tolist()


def score_directory(data_dir: Path, windows_path: Path, out_dir: Path,
                    settings: AnomalySettings | None = None, model_kind: str | None = None,
                    clear_after: timedelta | None = None, clear_readings: int | None = None) -> dict[str, pd.DataFrame]:
    """Score every labelled file under ``data_dir``; write and return the score frames.

    ``model_kind``, ``clear_after`` and ``clear_readings`` default to the plant's (``detection.anomaly``'s
    ``model``, ``clear_after_seconds`` and ``clear_after_readings`` in configs/plant.yaml), so a corpus
    is judged with the production defaults.
    Each frame also has ``alert``: 1 on the rows where the production alert rule raised a new anomaly
    alert (``evaluate/episodes.py``)."""
    if model_kind is None or clear_after is None or clear_readings is None:
        plant = load_config().detection.anomaly
        model_kind = model_kind or plant.model
        clear_after = clear_after or timedelta(seconds=plant.clear_after_seconds)
        clear_readings = clear_readings or plant.clear_after_readings
    windows = load_windows(windows_path)
    out: dict[str, pd.DataFrame] = {}
    for relpath in tqdm(sorted(windows), desc="linewatch over NAB data", unit="file", disable=None):
        frame = load_data(data_dir / relpath)
        n = len(frame)
        # warm up within NAB's probation (15% of the file) so the model is judged on what it sees after
        probation = max(100, int(0.15 * n))
        s = settings or AnomalySettings(warmup_readings=max(50, probation // 2),
                                        calibration_readings=max(50, probation - probation // 2))
        verdicts = verdicts_of(frame["value"], s, model_kind)
        alerts = fired_rows(episodes(verdicts, frame["timestamp"], clear_after, clear_readings), n)
        frame = frame.assign(anomaly_score=row_scores(verdicts), alert=alerts)
        target = out_dir / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target, index=False)
        out[relpath] = frame
    return out
