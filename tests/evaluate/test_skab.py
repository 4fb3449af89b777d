from pathlib import Path

import pytest

from linewatch.evaluate.skab import evaluate

SKAB = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "skab"


def test_outlier_metrics_follow_the_protocol():
    if not (SKAB / "valve1").is_dir():
        pytest.skip(f"SKAB is not at {SKAB} (the data sets sit beside the project in ../shared/datasets)")
    import pandas as pd

    from linewatch.evaluate.skab import labelled_runs

    o = evaluate(SKAB)["outlier"]
    assert o["files"] == 34
    test_rows = sum(len(pd.read_csv(p, sep=";")) - 400 for p in labelled_runs(SKAB))
    assert o["tp"] + o["fp"] + o["fn"] + o["tn"] == test_rows
    assert 0 < o["f1"] <= 1 and 0 <= o["far_percent"] <= 100
    assert o["f1"] == pytest.approx(o["tp"] / (o["tp"] + (o["fp"] + o["fn"]) / 2))
