from pathlib import Path

import pytest

from linewatch.evaluate.secom import evaluate

SECOM = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "secom"


@pytest.mark.parametrize("detector", ["halfspace", "mewma"])
def test_secom_evaluation_accounts_for_every_unit(detector):
    if not (SECOM / "uci-secom.csv.zip").is_file():
        pytest.skip(f"SECOM is not at {SECOM} (the data sets sit beside the project in ../shared/datasets)")
    r = evaluate(SECOM, detector=detector)
    assert r["detector"] == detector and r["rejected"] == 0 and r["failure_rate"]["units"] == 1567
    assert r["units_scored"] == 1567 - 500  # warm-up 300 + calibration 200
    assert 0.0 <= r["roc_auc"] <= 1.0
