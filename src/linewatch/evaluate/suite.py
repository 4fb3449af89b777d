"""Every benchmark in one run, with the production defaults, beside the published numbers.

``linewatch evaluate all`` runs the failure-rate simulation, SKAB and SECOM (when their directories
are there), any NAB-format corpus given and the synthetic development set (``evaluate/synthetic.py``), and puts one row per figure beside the simple baseline
and the best published result, so what falls short is visible in one table. The anomaly model is the
plant's (``detection.anomaly.model`` in configs/plant.yaml), not chosen per benchmark.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from linewatch.config import load_config


@dataclass
class Row:
    benchmark: str
    measure: str
    linewatch: float | None
    target: str  # what the project has set itself, "" when only reported
    reference: str  # a simple baseline and the best published figure, as found in their papers or leaderboards
    note: str = ""


def _failure_rate(seeds: int) -> tuple[list[Row], dict[str, Any]]:
    from linewatch.evaluate.failure_rate import evaluate

    result = evaluate(seeds=seeds)
    ic = result["in_control"]
    step = next(s for s in result["steps"] if abs(s["p1"] - 0.20) < 1e-9)
    rows = [Row("failure rate (simulated)", "5 % -> 20 %, median delay (units)", step["median_delay"], "<= 45",
                f"river ADWIN {result['adwin_median_delay'].get('5%->20%', float('nan')):.0f}"),
            Row("failure rate (simulated)", "in-control run length, median (units)", ic["arl0_median_units"],
                ">= 10,000", "")]
    return rows, result


def _skab(path: Path, model: str) -> tuple[list[Row], dict[str, Any]]:
    from linewatch.evaluate.skab import evaluate

    result = evaluate(path, detector=model)  # type: ignore[arg-type]
    o, cp = result["outlier"], result["changepoint"]
    rows = [Row("SKAB (34 runs)", "outlier F1", o["f1"], ">= 0.80", "Conv-AE 0.78 (leaderboard best)"),
            Row("SKAB (34 runs)", "false alarm rate (%)", o["far_percent"], "<= 15", "Conv-AE 13.55"),
            Row("SKAB (34 runs)", "… on normal rows before a run's first anomaly", o["far_before_first_anomaly_percent"],
                "", "", "after it the alarm waits for a person"),
            Row("SKAB (34 runs)", "changepoint NAB, standard", cp["skab_nab"]["standard"], ">= 33",
                "MSCRED 32.42 (leaderboard best)")]
    return rows, result


def _secom(path: Path, model: str) -> tuple[list[Row], dict[str, Any]]:
    from linewatch.evaluate.secom import evaluate

    result = evaluate(path, detector=model)
    alarms = len(result["failure_rate"]["alarms"])
    rows = [Row("SECOM (1,567 units)", "ROC AUC of the unit score vs fail", result["roc_auc"], "",
                "0.5 is chance", "unsupervised, scored online"),
            Row("SECOM (1,567 units)", "failure-rate alarms", alarms, "", "",
                f"baseline {result['failure_rate']['baseline']:.3f}" if result["failure_rate"]["baseline"] else "")]
    return rows, result


def _synthetic(model: str) -> tuple[list[Row], dict[str, Any]]:
    from linewatch.evaluate.synthetic import evaluate

    result = evaluate(model)
    uni, proc = result["univariate"], result["process"]
    rows = [Row(f"synthetic NAB ({uni['series']} series)", "NAB standard", uni["linewatch"]["standard"], "",
                f"windowed Gaussian {uni['windowed_gaussian']['standard']:.2f} (same series)", "development set"),
            *_alert_rows(f"synthetic NAB ({uni['series']} series)", uni["alerts"], "development set"),
            Row(f"synthetic process ({proc['sensors']} sensors)", "mean detection rate, 6 faults",
                proc["mean_detection_rate"], "", "", "development set"),
            Row(f"synthetic process ({proc['sensors']} sensors)", "false alarm rate, normal run",
                proc["false_alarm_rate"], "", "", "development set")]
    return rows, result


def _nab(data: Path, windows: Path, model: str) -> tuple[list[Row], dict[str, Any]]:
    from linewatch.evaluate import nab
    from linewatch.evaluate.detector import score_directory
    from linewatch.evaluate.episodes import score_alerts

    with tempfile.TemporaryDirectory(prefix="linewatch-nab-") as out:
        frames = score_directory(data, windows, Path(out), model_kind=model)
    labels = nab.load_windows(windows)
    results = nab.score_corpus(frames, labels)
    published = {"standard": "windowed Gaussian 39.65; ARTime 74.85, HTM 70.10",
                 "reward_low_FP_rate": "windowed Gaussian 20.87", "reward_low_FN_rate": "windowed Gaussian 47.41"}
    alerts = score_alerts(frames, labels)
    rows = [Row(f"NAB ({len(frames)} files)", f"NAB {name}", r.score, ">= 45" if name == "standard" else "",
                published.get(name, "")) for name, r in results.items()]
    rows += _alert_rows(f"NAB ({len(frames)} files)", alerts)
    return rows, {**{name: {"score": r.score, "threshold": r.threshold, "tp": r.tp, "fp": r.fp, "fn": r.fn}
                     for name, r in results.items()}, "alerts": alerts}


def _alert_rows(benchmark: str, alerts: dict[str, Any], note: str = "") -> list[Row]:
    """The alerts the production rule raised on a NAB-format corpus, one per episode (``evaluate/episodes.py``)."""
    return [Row(benchmark, "alerts: NAB standard, each alert one detection", alerts["nab"]["standard"], "", "", note),
            Row(benchmark, "alerts: windows with an alert inside", alerts["windows_with_alert"], "",
                f"of {alerts['windows']}", note),
            Row(benchmark, "alerts: raised outside every window", alerts["false_alerts"], "",
                f"of {alerts['alerts']} alerts", note)]


def evaluate_all(skab: Path | None = None, secom: Path | None = None, nab_data: Path | None = None,
                 nab_windows: Path | None = None, seeds: int = 200, synthetic: bool = True) -> dict[str, Any]:
    """Run what is there; a benchmark whose data is missing gets a row saying so, never a guess."""
    model = load_config().detection.anomaly.model
    rows: list[Row] = []
    details: dict[str, Any] = {"anomaly_model": model}
    timings: dict[str, float] = {}
    parts = [("failure_rate", lambda: _failure_rate(seeds), True)]
    parts.append(("skab", lambda: _skab(skab, model), skab is not None and skab.is_dir()))  # type: ignore[arg-type]
    parts.append(("secom", lambda: _secom(secom, model), secom is not None and secom.is_dir()))  # type: ignore[arg-type]
    if nab_data is not None or nab_windows is not None:
        ok = nab_data is not None and nab_data.is_dir() and nab_windows is not None and nab_windows.is_file()
        parts.append(("nab", lambda: _nab(nab_data, nab_windows, model), ok))  # type: ignore[arg-type]
    if synthetic:
        parts.append(("synthetic", lambda: _synthetic(model), True))
    for name, run, available in parts:
        if not available:
            rows.append(Row(name, "not run", None, "", "", "its data was not found"))
            continue
        started = time.perf_counter()
        part_rows, details[name] = run()
        timings[name] = round(time.perf_counter() - started, 1)
        rows.extend(part_rows)
    return {"rows": [asdict(r) for r in rows], "seconds": timings, "details": details}


def table(result: dict[str, Any]) -> str:
    """The rows as a plain text table for a terminal."""
    head = ("benchmark", "measure", "linewatch", "target", "reference", "note")
    body = [(r["benchmark"], r["measure"], "—" if r["linewatch"] is None else f"{r['linewatch']:,.3f}".rstrip("0").rstrip("."),
             r["target"], r["reference"], r["note"]) for r in result["rows"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + f"\nanomaly model: {result['details']['anomaly_model']} (configs/plant.yaml)"
