from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from linewatch.detect.anomaly import CALIBRATING, MONITORING, Verdicts
from linewatch.evaluate.episodes import episodes, fired_rows, score_alerts

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def verdicts(alarm: list[int], outlier: list[int] | None = None, calibrating: int = 0) -> Verdicts:
    n = len(alarm)
    phase = np.full(n, MONITORING, dtype=np.int8)
    phase[:calibrating] = CALIBRATING
    return Verdicts(np.zeros(n), np.zeros(n), np.zeros(n), phase, np.array(outlier or alarm, dtype=bool),
                    np.array(alarm, dtype=bool))


def times(n: int, seconds: float) -> list[datetime]:
    return [T0 + timedelta(seconds=seconds * i) for i in range(n)]


def test_an_alarm_that_stays_on_is_one_episode_until_the_machine_looked_normal_long_enough():
    v = verdicts([0] * 5 + [1] * 50 + [0] * 200)
    found = episodes(v, times(len(v), 1.0), clear_after=timedelta(seconds=120))
    assert found.started == (5,) and found.ended == (54 + 120,)  # the first quiet reading 120 s after the last raise


def test_an_alarm_back_within_clear_after_continues_the_episode_and_one_after_it_is_a_new_one():
    alarm = [1] * 10 + [0] * 60 + [1] * 10 + [0] * 200 + [1] * 5 + [0] * 10
    found = episodes(verdicts(alarm), times(len(alarm), 1.0), clear_after=timedelta(seconds=120))
    assert found.started == (0, 280) and found.ended[0] == 79 + 120 and found.ended[1] is None
    # at a 5-minute cadence the first quiet reading is already past clear_after: three episodes
    slow = episodes(verdicts(alarm), times(len(alarm), 300.0), clear_after=timedelta(seconds=120))
    assert slow.started == (0, 70, 280)
    # unless clearing also asks for readings in a row: a fault back after 20 quiet readings goes on
    flapping = [1] * 10 + [0] * 20 + [1] * 10 + [0] * 100
    slow = episodes(verdicts(flapping), times(len(flapping), 300.0), timedelta(seconds=120))
    counted = episodes(verdicts(flapping), times(len(flapping), 300.0), timedelta(seconds=120), clear_readings=30)
    assert slow.started == (0, 30) and counted.started == (0,) and counted.ended == (39 + 30,)


def test_only_readings_over_the_threshold_raise_and_calibration_never_clears():
    # alarm on but the reading itself under the threshold (the off-delay) neither raises nor clears
    alarm, outlier = [1, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]
    found = episodes(verdicts(alarm, outlier), times(6, 100.0), clear_after=timedelta(seconds=120))
    assert found.started == (1,) and found.ended == (4,)
    assert episodes(verdicts([0, 0, 0], calibrating=3), times(3, 1.0)).started == ()


def test_alerts_are_scored_against_windows_as_nab_detections():
    t = pd.date_range("2026-01-05", periods=1000, freq="5min")
    alert = np.zeros(1000)
    alert[[520, 700, 900]] = 1.0  # one inside the window, two outside
    frames = {"a.csv": pd.DataFrame({"timestamp": t, "value": 0.0, "alert": alert})}
    windows = {"a.csv": [(t[500], t[550])]}
    result = score_alerts(frames, windows)
    assert (result["alerts"], result["alerts_in_windows"], result["false_alerts"]) == (3, 1, 2)
    assert (result["windows"], result["windows_with_alert"]) == (1, 1)
    assert result["false_alerts_per_10k_rows"] == 20.0
    assert 0 < result["nab"]["standard"] < 100  # found, but charged for the two false alerts
    assert fired_rows(episodes(verdicts([1, 1, 0]), times(3, 1.0)), 3).tolist() == [1.0, 0.0, 0.0]


def test_cells_without_a_number_are_readings_the_worker_would_have_rejected():
    from linewatch.config import AnomalySettings
    from linewatch.evaluate.detector import row_scores, verdicts_of

    values = np.random.default_rng(3).normal(10, 1, 600)
    values[450] += 12
    cells = pd.Series(values.tolist()[:300] + [float("nan"), None] + values.tolist()[300:] + ["n/a"])
    settings = AnomalySettings(warmup_readings=100, calibration_readings=100)
    got = verdicts_of(cells, settings, "mewma")
    clean = verdicts_of(pd.Series(values), settings, "mewma")
    assert len(got) == len(cells) and got.phase[[300, 301, len(cells) - 1]].tolist() == [0, 0, 0]
    kept = np.r_[0:300, 302:len(cells) - 1]
    assert np.array_equal(got.score[kept], clean.score) and got.outlier[452]
    assert len(row_scores(got)) == len(cells)
