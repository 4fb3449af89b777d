import json
import subprocess
import sys

import numpy as np
import pandas as pd


def test_linewatch_over_nab_data_then_scored_like_any_detector(tmp_path):
    t = pd.date_range("2024-01-01", periods=2000, freq="5min")
    values = np.random.default_rng(1).normal(10, 1, 2000)
    values[1500:1515] += 9
    (tmp_path / "data" / "demo").mkdir(parents=True)
    pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
        tmp_path / "data" / "demo" / "a.csv", index=False)
    (tmp_path / "windows.json").write_text(json.dumps({"demo/a.csv": [[str(t[1490]), str(t[1560])]]}))
    run = [sys.executable, "-m", "linewatch.cli", "evaluate", "nab", "--windows", str(tmp_path / "windows.json"), "--json"]
    ours = subprocess.run(run + ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "scores")],
                          capture_output=True, text=True, timeout=300)
    assert ours.returncode == 0, ours.stderr
    again = subprocess.run(run + ["--scores", str(tmp_path / "scores")], capture_output=True, text=True, timeout=300)
    got = json.loads(ours.stdout)
    alerts = got.pop("alerts")  # only linewatch's own run has the alerts its production rule raised
    assert got == json.loads(again.stdout)
    assert got["standard"]["score"] > 90  # a clean spike is found early in its window
    assert (alerts["alerts"], alerts["windows_with_alert"], alerts["false_alerts"]) == (1, 1, 0)
