import math

import numpy as np
import pandas as pd
import pytest

from linewatch.evaluate.skab_nab import (PROFILES, changepoints_from_alarms, detection_windows, normalise, score_run,
                                         score_runs, tanh_reward)

T = pd.date_range("2020-03-09 10:00:00", periods=600, freq="s")  # 1 Hz, as SKAB


def marks(*rows: int) -> np.ndarray:
    out = np.zeros(len(T), dtype=int)
    out[list(rows)] = 1
    return out


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {name: r.score for name, r in score_runs([(T, truth, predicted)]).items()}


def normalised(raw: float, windows: int, a_tp: float, a_fn: float) -> float:
    return 100 * (raw - a_fn * windows) / (a_tp * windows - a_fn * windows)


def test_perfect_detection_scores_100_and_nothing_scores_0():
    truth = marks(100, 300)
    assert scores(truth, marks(100, 300)) == pytest.approx({"standard": 100.0, "low_FP": 100.0, "low_FN": 100.0})
    assert scores(truth, marks()) == pytest.approx({"standard": 0.0, "low_FP": 0.0, "low_FN": 0.0})


def test_detection_at_the_window_end_is_worth_a_false_positive():
    # the window is [cp, cp + 60 s]; SKAB's tanh curve falls from A_tp at its start to A_fp at its end
    got = scores(marks(100), marks(160))
    for name, (a_tp, a_fp, a_fn) in PROFILES.items():
        assert got[name] == pytest.approx(normalised(a_fp, 1, a_tp, a_fn))
    assert got["standard"] == pytest.approx(44.5)  # (-0.11 + 1) / 2


def test_earlier_in_the_window_is_worth_more():
    worth = [scores(marks(100), marks(100 + s))["standard"] for s in (0, 10, 30, 50, 60)]
    assert worth == sorted(worth, reverse=True)
    assert worth[0] == pytest.approx(100.0)
    mid = tanh_reward(0.5, 1.0, -0.11)
    assert mid == pytest.approx((1.0 - 0.11) / 2, abs=0.01)  # the curve's midpoint
    assert worth[2] == pytest.approx(normalised(mid, 1, 1.0, -1.0))


def test_after_the_window_is_a_false_positive_and_the_window_is_missed():
    got = scores(marks(100), marks(161))
    assert got["standard"] == pytest.approx(normalised(-1.0 - 0.11, 1, 1.0, -1.0))  # -5.5
    assert got["low_FN"] == pytest.approx(normalised(-2.0 - 0.11, 1, 1.0, -2.0))


def test_false_positives_outside_windows_cost_a_fp_each_wherever_they_are():
    truth = marks(300)
    base = scores(truth, marks(300))["standard"]
    for fp_row in (5, 250, 361, 599):  # before, just before, just after, far after the window
        assert scores(truth, marks(300, fp_row))["standard"] == pytest.approx(normalised(1 - 0.11, 1, 1.0, -1.0))
    assert base - scores(truth, marks(300, 5, 500))["standard"] == pytest.approx(100 * 2 * 0.11 / 2)
    # no windows at all: every detection is a false positive, but there is nothing to normalise by
    run = score_run(T, marks(), marks(5, 50))
    assert run.false_positives == 2 and run.raw["standard"] == pytest.approx(-0.22)
    assert math.isnan(score_runs([(T, marks(), marks(5, 50))])["standard"].score)


def test_only_the_first_detection_in_a_window_counts():
    once = scores(marks(100), marks(110))
    assert scores(marks(100), marks(110, 120, 150, 160)) == pytest.approx(once)
    run = score_run(T, marks(100), marks(110, 120, 150, 160))
    assert (run.detected, run.false_positives, run.missed) == (1, 0, 0)


def test_overlapping_windows_cut_the_right_one_as_skab_does():
    truth = marks(100, 130)
    assert [((a - T[0]).seconds, (b - T[0]).seconds) for a, b in detection_windows(T, truth)] == \
        [(100, 160), (160, 190)]
    # a detection on the shared instant falls in both windows: the end of one, the start of the next
    run = score_run(T, truth, marks(160))
    assert (run.detected, run.false_positives, run.missed) == (2, 0, 0)
    assert run.raw["standard"] == pytest.approx(-0.11 + 1.0)


def test_runs_are_summed_before_normalising():
    one = score_run(T, marks(100), marks(100))  # 1 window, found at once: raw 1
    three = score_run(T, marks(100, 250, 400), marks())  # 3 windows missed: raw -3
    combined = normalise([one, three])["standard"]
    assert combined.raw == pytest.approx(-2.0) and combined.null == -4.0 and combined.perfect == 4.0
    assert combined.score == pytest.approx(25.0)  # not the mean of 100 and 0


def test_changepoints_are_the_edges_of_the_binary_prediction():
    assert changepoints_from_alarms([0, 1, 1, 0, 0, 1]).tolist() == [0, 1, 0, 1, 0, 1]
    assert changepoints_from_alarms([1, 1, 0]).tolist() == [1, 0, 1]  # alarmed from the first row
    assert changepoints_from_alarms([]).tolist() == []


def test_lengths_must_match():
    with pytest.raises(ValueError, match="one of each per row"):
        score_run(T, marks(100), marks(100)[:-1])
