"""SECOM: the unsupervised per-unit score against Pass/Fail, and when the failure-rate monitor alerts.

The data set is replayed exactly as the worker would receive it (``linewatch.sources.replay``, dates
repaired) and normalised with ``configs/datasets/secom``. Each unit's 590-sensor vector is scored online
by the per-machine model (warm-up and calibration on the first units, then scored and learned when it
looks normal); ROC AUC is computed over the units after calibration. The QC verdicts go through the
failure-rate monitor configured in that plant file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

from linewatch.config import AnomalySettings, load_config
from linewatch.detect.failure_rate import FailureRateMonitor
from linewatch.detect.models import make_model
from linewatch.domain import QcResult, Reading
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.replay import replay_secom

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "datasets" / "secom"


def evaluate(path: Path, config_dir: Path = CONFIG_DIR, warmup: int = 300, calibration: int = 200,
             detector: str = "mewma") -> dict[str, Any]:
    """``detector``: ``halfspace`` (Half-Space Trees + deviation) or ``mewma`` (MEWMA / Hotelling T²)."""
    config = load_config(config_dir)
    normalizer = Normalizer(config)
    settings = AnomalySettings(warmup_readings=warmup, calibration_readings=calibration)
    model = make_model("secom-fab", settings, detector)
    monitor = FailureRateMonitor("secom-line", config.detection.failure_rate)
    scores: dict[str, float] = {}
    failed: dict[str, bool] = {}
    alarms: list[dict[str, Any]] = []
    rejected = 0
    for sm in replay_secom(path):
        result = normalizer.normalize(sm.message)
        if isinstance(result, Reading):
            verdict = model.score_one(result.values)
            if verdict.phase == "monitoring" and result.unit_id:
                scores[result.unit_id] = verdict.score
        elif isinstance(result, QcResult):
            failed[str(result.unit_id)] = not result.passed
            v = monitor.observe(result.passed, result.ts, result.unit_id)
            if v.alarm and (not alarms or alarms[-1]["cleared"]):
                alarms.append({"unit": v.units, "ts": result.ts.isoformat(), "rate_since": v.rate_since,
                               "baseline": v.baseline, "since": v.since.isoformat() if v.since else None,
                               "cleared": False})
            elif not v.alarm and alarms and not alarms[-1]["cleared"]:
                alarms[-1]["cleared"] = True
        else:
            rejected += 1
    units = [u for u in scores if u in failed]
    labels = [failed[u] for u in units]
    return {"detector": detector, "units_scored": len(units), "fails_among_scored": sum(labels), "rejected": rejected,
            "roc_auc": roc_auc_score(labels, [scores[u] for u in units]) if any(labels) else None,
            "failure_rate": {"baseline_units": config.detection.failure_rate.baseline_units,
                             "baseline": monitor.baseline, "alarms": alarms, "units": monitor.units}}
