from pathlib import Path

from linewatch.evaluate.suite import evaluate_all, table


def test_every_benchmark_gets_a_row_and_missing_data_is_said_not_guessed(tmp_path):
    result = evaluate_all(skab=tmp_path / "no-skab", secom=tmp_path / "no-secom", nab_data=tmp_path / "no-nab",
                          nab_windows=tmp_path / "none.json", seeds=20, synthetic=False)
    rows = {(r["benchmark"], r["measure"]): r for r in result["rows"]}
    delay = rows[("failure rate (simulated)", "5 % -> 20 %, median delay (units)")]["linewatch"]
    assert 5 < delay < 200  # measured by the production monitor, not a constant
    for name in ("skab", "secom", "nab"):
        assert rows[(name, "not run")]["note"] == "its data was not found"
    text = table(result)
    assert "not run" in text and "anomaly model: " in text and "<= 45" in text


def test_skab_runs_with_the_plants_own_model(tmp_path):
    skab = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "skab"
    if not skab.is_dir():
        import pytest

        pytest.skip(f"SKAB is not at {skab}")
    result = evaluate_all(skab=skab, secom=tmp_path / "none", seeds=20, synthetic=False)
    assert result["details"]["skab"]["detector"] == result["details"]["anomaly_model"]
    f1 = next(r for r in result["rows"] if r["measure"] == "outlier F1")["linewatch"]
    assert 0.0 < f1 < 1.0
