"""NAB scorer: NAB's own worked numbers, the scoring rules, the sweep against brute force, file I/O."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from linewatch.evaluate.nab import (
    NO_DETECTION_THRESHOLD,
    PROFILES,
    Profile,
    _sweep_rows,
    dump_windows,
    load_data,
    load_profiles,
    load_scores,
    load_windows,
    probationary_length,
    scaled_sigmoid,
    score_corpus,
    score_directory,
    score_file,
    threshold_curve,
)

ALL_PROFILES = list(PROFILES)


def timestamps(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2015-03-01", periods=n, freq="5min")


def limits(ts: pd.DatetimeIndex, rows: list[tuple[int, int]]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Windows given as (first row, last row), turned into timestamp limits."""
    return [(ts[lo], ts[hi]) for lo, hi in rows]


def fire_at(n: int, rows, value: float = 1.0) -> np.ndarray:
    scores = np.zeros(n)
    scores[list(rows)] = value
    return scores


# A small corpus: 400 rows a file, so the first 60 rows are probation.
CORPUS_ROWS = 400
CORPUS_WINDOWS = {
    "realTraffic/a.csv": [(100, 139), (250, 289)],
    "realTraffic/b.csv": [(200, 239)],
    "artificialNoAnomaly/c.csv": [],
}


def corpus_windows() -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    ts = timestamps(CORPUS_ROWS)
    return {path: limits(ts, rows) for path, rows in CORPUS_WINDOWS.items()}


def corpus_results(scores_for) -> dict[str, tuple[pd.DatetimeIndex, np.ndarray]]:
    """Results of a detector whose scores per file are ``scores_for(window rows)``."""
    ts = timestamps(CORPUS_ROWS)
    return {path: (ts, scores_for(rows)) for path, rows in CORPUS_WINDOWS.items()}


def perfect(rows):
    return fire_at(CORPUS_ROWS, [lo for lo, _ in rows])


def late(rows):
    return fire_at(CORPUS_ROWS, [hi for _, hi in rows])


# --- NAB's constants and worked numbers ----------------------------------------------------------


def test_profiles_match_nab_profiles_json(tmp_path):
    # config/profiles.json of numenta/NAB, verbatim in content.
    nab_profiles = {
        "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
        "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}},
        "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}},
    }
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(nab_profiles))
    assert load_profiles(path) == PROFILES


@pytest.mark.parametrize(
    ("n_rows", "percent", "expected"),
    # NAB tests/integration/sweeper_test.py::testGetProbationaryLength, plus the 0.15 default's cap.
    [(100, 0.0, 0), (100, 1.0, 100), (100, 0.1, 10), (100, 0.15, 15), (5000, 0.1, 500), (6000, 0.1, 500),
     (4000, 0.15, 600), (5000, 0.15, 750), (20000, 0.15, 750)],
)
def test_probationary_length_as_nab(n_rows, percent, expected):
    assert probationary_length(n_rows, percent) == expected


def test_scaled_sigmoid_known_values():
    # Values quoted in NAB's scaledSigmoid docstring and tests/unit/scorer_test.py.
    assert scaled_sigmoid(-1.0) == pytest.approx(0.9866142981514305, abs=1e-15)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131, abs=1e-15)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.9866142981514305, abs=1e-15)
    assert scaled_sigmoid(3.01) == -1.0


NAB_UNIT_COSTS = Profile("nab_unit_test", tp_weight=1.1, fp_weight=0.11, fn_weight=1.2)


@pytest.mark.parametrize(
    ("predictions", "window_rows", "expected"),
    # NAB tests/unit/scorer_test.py (7 rows, no probation, tp 1.1 / fp 0.11 / fn 1.2).
    [
        ([0, 1, 0, 1, 0, 0, 0], [], -2.0 * 0.11),  # testFalsePositives
        ([0] * 7, [(1, 2), (4, 5)], -2.0 * 1.2),  # testFalseNegatives
        ([0, 0, 1, 0, 0, 0, 0], [(1, 2)], 0.8482836399575131 * 1.1 / 0.9866142981514305),  # TP1
        ([0, 0, 1, 0, 0, 0, 0], [(1, 2), (4, 5)], 0.8482836399575131 * 1.1 / 0.9866142981514305 - 1.2),
        ([0, 0, 0, 0, 1, 0, 0], [(4, 5)], 1.1),  # testTruePositives2
        ([0, 0, 0, 0, 1, 1, 0], [(4, 5)], 1.1),  # testTruePositives3: only the earliest counts
        ([0, 0, 1, 0, 1, 0, 0], [(1, 2), (4, 5)], 0.8482836399575131 * 1.1 / 0.9866142981514305 + 1.1),
    ],
)
def test_nab_unit_test_numbers(predictions, window_rows, expected):
    ts = timestamps(7)
    result = score_file(
        ts, predictions, limits(ts, window_rows), NAB_UNIT_COSTS, threshold=0.5, probationary_percent=0.0
    )
    assert result.raw_score == pytest.approx(expected, abs=1e-12)


def test_nab_sweeper_example():
    # NAB tests/integration/sweeper_test.py::testCalcScoreByThresholdReturnsExpectedScores,
    # with the two probationary rows already removed. fnWeight 5; window ids A=0, B=1.
    scores = np.array([0.0, 0.2, 0.3, 0.5, 0.5])
    weights = np.array([-3.0, 20.0, 10.0, 5.0, -3.0])
    window_ids = np.array([-1, 0, 0, 1, -1])
    curve = _sweep_rows(scores, weights, window_ids, fn_weight=5.0)
    assert curve["threshold"].tolist() == [1.1, 0.5, 0.3, 0.2, 0.0]
    assert curve["score"].tolist() == pytest.approx([-10, 5 - 3 - 5, 5 - 3 + 10, 5 - 3 + 20, 5 - 3 + 20 - 3])
    assert curve["tp"].tolist() == [0, 1, 2, 3, 3]
    assert curve["tn"].tolist() == [2, 1, 1, 1, 0]
    assert curve["fp"].tolist() == [0, 1, 1, 1, 2]
    assert curve["fn"].tolist() == [3, 2, 1, 0, 0]


def test_one_false_positive_without_windows_costs_the_fp_weight():
    # NAB tests/integration/false_positive_test.py::testOneFalsePositiveNoWindow.
    ts = timestamps(1000)
    result = score_file(ts, fire_at(1000, [0]), [], "standard", threshold=0.5, probationary_percent=0.0)
    assert result.raw_score == pytest.approx(-PROFILES["standard"].fp_weight)
    assert (result.tp, result.fp, result.fn, result.tn) == (0, 1, 0, 999)
    assert math.isnan(result.score)  # no windows: perfect == null, nothing to normalise by


# --- The scoring rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_perfect_detector_scores_100(profile):
    result = score_corpus(corpus_results(perfect), corpus_windows(), [profile])[profile]
    assert result.score == pytest.approx(100.0)
    assert result.raw_score == pytest.approx(result.perfect_score)
    assert (result.tp, result.fp, result.fn) == (3, 0, 117)  # tp/fn count rows, as NAB does


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("constant", [0.0, 0.5])  # NAB's null detector outputs a constant 0.5
def test_null_detector_scores_0(profile, constant):
    results = corpus_results(lambda rows: np.full(CORPUS_ROWS, constant))
    result = score_corpus(results, corpus_windows(), [profile])[profile]
    assert result.score == pytest.approx(0.0)
    assert result.threshold == NO_DETECTION_THRESHOLD
    assert result.null_score == -3 * PROFILES[profile].fn_weight


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_early_detection_beats_late_detection(profile):
    windows = corpus_windows()
    early = score_corpus(corpus_results(perfect), windows, [profile])[profile]
    at_end = score_corpus(corpus_results(late), windows, [profile])[profile]
    assert early.score > at_end.score > 0.0


def test_only_the_earliest_detection_in_a_window_counts():
    windows = corpus_windows()
    first_only = score_corpus(corpus_results(perfect), windows, ["standard"])["standard"]
    many = score_corpus(
        corpus_results(lambda rows: fire_at(CORPUS_ROWS, [r for lo, hi in rows for r in range(lo, hi + 1, 3)])),
        windows,
        ["standard"],
    )["standard"]
    assert many.raw_score == pytest.approx(first_only.raw_score)
    assert many.tp > first_only.tp


def test_false_positive_far_from_a_window_costs_more_than_one_just_after():
    ts = timestamps(1000)
    windows = limits(ts, [(300, 339)])

    def raw(extra_row: int) -> float:
        return score_file(ts, fire_at(1000, [300, extra_row]), windows, threshold=0.5).raw_score

    detected = score_file(ts, fire_at(1000, [300]), windows, threshold=0.5).raw_score
    just_after, a_bit_later, far_after, before_any = raw(340), raw(360), raw(900), raw(200)
    assert detected > just_after > a_bit_later > far_after
    assert far_after == pytest.approx(detected - 0.11)  # more than 3 window widths on: full cost
    assert before_any == pytest.approx(detected - 0.11)  # no window before it: full cost
    assert detected - just_after == pytest.approx(-0.11 * scaled_sigmoid(1 / 39))


def test_detections_in_probation_are_ignored():
    windows = corpus_windows()
    n_probation = probationary_length(CORPUS_ROWS)
    clean = score_corpus(corpus_results(perfect), windows)
    noisy = score_corpus(
        corpus_results(lambda rows: np.maximum(perfect(rows), fire_at(CORPUS_ROWS, range(n_probation)))), windows
    )
    for profile in ALL_PROFILES:
        assert noisy[profile].score == pytest.approx(100.0)
        assert noisy[profile].fp == 0
        counted = noisy[profile].tp + noisy[profile].fp + noisy[profile].fn + noisy[profile].tn
        assert counted == len(CORPUS_WINDOWS) * (CORPUS_ROWS - n_probation)
        assert noisy[profile] == clean[profile]
    # One row later, the same detection is a false positive.
    late_noise = score_corpus(
        corpus_results(lambda rows: np.maximum(perfect(rows), fire_at(CORPUS_ROWS, [n_probation]))), windows
    )
    assert late_noise["standard"].fp == len(CORPUS_WINDOWS)


def test_window_starting_in_probation_warns():
    ts = timestamps(1000)
    with pytest.warns(UserWarning, match="probationary"):
        score_file(ts, fire_at(1000, [100]), limits(ts, [(100, 139)]))


def test_reward_low_fp_penalises_false_positives_more():
    far_from_windows = [70, 80, 90, 340, 360]
    results = corpus_results(lambda rows: np.maximum(perfect(rows), fire_at(CORPUS_ROWS, far_from_windows)))
    scored = score_corpus(results, corpus_windows())
    standard, low_fp = scored["standard"], scored["reward_low_FP_rate"]
    assert standard.fp == low_fp.fp == 15
    assert low_fp.score < standard.score < 100.0
    fp_cost_standard = standard.perfect_score - standard.raw_score
    fp_cost_low_fp = low_fp.perfect_score - low_fp.raw_score
    assert fp_cost_low_fp == pytest.approx(2 * fp_cost_standard)


def test_reward_low_fn_penalises_misses_more():
    # Detects only one of the three windows.
    results = corpus_results(lambda rows: fire_at(CORPUS_ROWS, [lo for lo, _ in rows[:1]] if len(rows) == 2 else []))
    scored = score_corpus(results, corpus_windows())
    assert scored["reward_low_FN_rate"].raw_score < scored["standard"].raw_score


def test_fixed_threshold_is_used_when_given():
    results = corpus_results(lambda rows: np.where(perfect(rows) > 0, 0.9, 0.3))
    swept = score_corpus(results, corpus_windows(), ["standard"])["standard"]
    fixed = score_corpus(results, corpus_windows(), ["standard"], thresholds={"standard": 0.95})["standard"]
    assert swept.threshold == 0.9 and swept.score == pytest.approx(100.0)
    assert fixed.threshold == 0.95 and fixed.score == pytest.approx(0.0)


# --- The sweep against brute force ---------------------------------------------------------------


def reference_raw_score(scores, window_rows, threshold, profile: Profile, percent: float) -> float:
    """NAB's rules row by row, written as plainly as possible."""

    def sigmoid(x: float) -> float:
        return -1.0 if x > 3.0 else 2 * (1 / (1 + math.exp(5 * x))) - 1

    n = len(scores)
    limit = min(math.floor(percent * n), percent * 5000)
    owner = {i: k for k, (lo, hi) in enumerate(window_rows) for i in range(lo, hi + 1)}
    total = 0.0
    for lo, hi in window_rows:
        scorable = [i for i in range(lo, hi + 1) if i >= limit]
        if not scorable:
            continue
        hits = [i for i in scorable if scores[i] >= threshold]
        if not hits:
            total -= profile.fn_weight
        else:
            total += sigmoid(-(hi - min(hits) + 1) / (hi - lo + 1)) * profile.tp_weight / sigmoid(-1.0)
    for i in range(n):
        if i < limit or i in owner or scores[i] < threshold:
            continue
        before = [(lo, hi) for lo, hi in window_rows if hi < i]
        if not before:
            total -= profile.fp_weight
        else:
            lo, hi = before[-1]
            total += sigmoid((i - hi) / (hi - lo)) * profile.fp_weight
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_sweep_matches_brute_force(seed, profile):
    rng = np.random.default_rng(seed)
    n, percent = 80, 0.15
    ts = timestamps(n)
    window_rows = {"x/a.csv": [(20, 29), (50, 61)], "x/b.csv": [(40, 44)], "x/c.csv": []}
    scores = {path: rng.integers(0, 11, n) / 10 for path in window_rows}  # ties on purpose
    for path, rows in window_rows.items():  # make early detection worth finding
        scores[path][[lo + 1 for lo, _ in rows]] = 0.85
    results = {path: (ts, scores[path]) for path in window_rows}
    windows = {path: limits(ts, rows) for path, rows in window_rows.items()}
    costs = PROFILES[profile]
    first_scorable = probationary_length(n, percent)

    def brute(threshold: float) -> float:
        return sum(reference_raw_score(scores[p], window_rows[p], threshold, costs, percent) for p in window_rows)

    candidates = [NO_DETECTION_THRESHOLD] + sorted(
        {float(v) for s in scores.values() for v in s[first_scorable:]}, reverse=True
    )
    brute_scores = [brute(t) for t in candidates]

    curve = threshold_curve(results, windows, profile, probationary_percent=percent)
    assert curve["threshold"].tolist() == candidates
    assert curve["score"].to_numpy() == pytest.approx(brute_scores, abs=1e-9)

    best = int(np.argmax(brute_scores))  # first maximum: the highest threshold among ties
    result = score_corpus(results, windows, [profile], probationary_percent=percent)[profile]
    assert result.threshold == candidates[best]
    assert result.raw_score == pytest.approx(brute_scores[best], abs=1e-9)
    row = curve.iloc[best]
    assert (result.tp, result.fp, result.fn, result.tn) == (row.tp, row.fp, row.fn, row.tn)


def test_corpus_of_a_million_rows_scores_in_seconds():
    rng = np.random.default_rng(7)
    n = 20_000
    ts = timestamps(n)
    windows = {f"big/file_{i:02d}.csv": limits(ts, [(5_000, 6_999), (14_000, 15_999)]) for i in range(50)}
    results = {path: (ts, rng.random(n)) for path in windows}
    started = time.perf_counter()
    scored = score_corpus(results, windows)
    elapsed = time.perf_counter() - started
    assert set(scored) == set(ALL_PROFILES)
    assert elapsed < 20.0, f"scoring 50 x 20,000 rows took {elapsed:.1f}s"


# --- Input validation ----------------------------------------------------------------------------


def test_invalid_inputs_are_rejected():
    ts = timestamps(100)
    scores = np.zeros(100)
    with pytest.raises(ValueError, match="overlap"):
        score_file(ts, scores, limits(ts, [(20, 40), (40, 60)]))
    with pytest.raises(ValueError, match="covers no rows"):
        score_file(ts, scores, [(ts[-1] + pd.Timedelta("1h"), ts[-1] + pd.Timedelta("2h"))])
    with pytest.raises(ValueError, match="row 3 has no timestamp"):
        score_file(list(ts[:2]) + [None] + list(ts[3:]), scores, [])
    with pytest.raises(ValueError, match="anomaly scores"):
        score_file(ts, scores[:50], [])
    with pytest.raises(KeyError, match="no windows"):
        score_corpus({"unlabelled.csv": (ts, scores)}, {})
    with pytest.raises(KeyError, match="unknown NAB profile"):
        score_file(ts, scores, [], "strict")


def test_a_clock_that_steps_back_is_scored_in_file_order_as_nab_does():
    # one row 55 minutes early, as the real corpus has: a warning naming the row, and the same score
    # as the same rows with that one row's time put right (its place in the file is what counts)
    ts = timestamps(400)
    right = ts.copy()
    stepped = ts.to_series().reset_index(drop=True)
    stepped[250] = stepped[250] - pd.Timedelta("55min")
    scores = np.zeros(400)
    scores[[120, 300]] = 1.0
    windows = limits(ts, [(110, 140), (280, 320)])
    with pytest.warns(UserWarning, match="row 251 .* is earlier than the row before it"):
        result = score_file(stepped, scores, windows, threshold=0.5)
    assert result.score == pytest.approx(score_file(right, scores, windows, threshold=0.5).score)
    # a step back inside a window keeps the window's rows together
    stepped[300] = stepped[300] - pd.Timedelta("55min")
    with pytest.warns(UserWarning):
        inside = score_file(stepped, scores, windows, threshold=0.5)
    assert inside.tp == 2 and inside.fp == 0


# --- Files ---------------------------------------------------------------------------------------


def write_corpus(root, scores_for, detector: str | None = None):
    """NAB layout: data/<category>/<file>.csv, results/.../<file>.csv, labels/combined_windows.json."""
    ts = timestamps(CORPUS_ROWS)
    labels = {
        path: [[ts[lo].strftime("%Y-%m-%d %H:%M:%S.%f"), ts[hi].strftime("%Y-%m-%d %H:%M:%S.%f")] for lo, hi in rows]
        for path, rows in CORPUS_WINDOWS.items()
    }
    windows_path = root / "labels" / "combined_windows.json"
    windows_path.parent.mkdir(parents=True)
    windows_path.write_text(json.dumps(labels, indent=4))
    for path, rows in CORPUS_WINDOWS.items():
        values = np.sin(np.arange(CORPUS_ROWS) / 10)
        data = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": values})
        (root / "data" / path).parent.mkdir(parents=True, exist_ok=True)
        data.to_csv(root / "data" / path, index=False)
        category, name = path.split("/")
        out = root / "results" / category / (f"{detector}_{name}" if detector else name)
        out.parent.mkdir(parents=True, exist_ok=True)
        data.assign(anomaly_score=scores_for(rows)).to_csv(out, index=False)
    return windows_path


def test_windows_load_from_nab_format_and_round_trip(tmp_path):
    windows_path = write_corpus(tmp_path, perfect)
    loaded = load_windows(windows_path)
    assert loaded == corpus_windows()
    assert all(isinstance(t, pd.Timestamp) for ws in loaded.values() for w in ws for t in w)
    dump_windows(loaded, tmp_path / "again.json")
    assert load_windows(tmp_path / "again.json") == loaded
    assert json.loads((tmp_path / "again.json").read_text())["realTraffic/b.csv"] == [
        ["2015-03-01 16:40:00.000000", "2015-03-01 19:55:00.000000"]
    ]


def test_data_and_scores_csvs_load(tmp_path):
    write_corpus(tmp_path, late)
    data = load_data(tmp_path / "data" / "realTraffic" / "a.csv")
    scores = load_scores(tmp_path / "results" / "realTraffic" / "a.csv")
    assert list(data.columns) == ["timestamp", "value"]
    assert list(scores.columns) == ["timestamp", "value", "anomaly_score"]
    assert (scores["timestamp"] == timestamps(CORPUS_ROWS)).all()
    assert scores["anomaly_score"].to_numpy() == pytest.approx(late(CORPUS_WINDOWS["realTraffic/a.csv"]))
    with pytest.raises(ValueError, match="anomaly_score"):
        load_scores(tmp_path / "data" / "realTraffic" / "a.csv")


@pytest.mark.parametrize("detector", [None, "mydetector"])
def test_score_directory_matches_in_memory_scoring(tmp_path, detector):
    def noisy(rows):
        return np.maximum(late(rows), fire_at(CORPUS_ROWS, [75, 150, 300], value=0.7))

    windows_path = write_corpus(tmp_path, noisy, detector)
    from_files = score_directory(tmp_path / "results", windows_path, detector=detector)
    in_memory = score_corpus(corpus_results(noisy), corpus_windows())
    assert from_files.keys() == in_memory.keys()
    for profile in ALL_PROFILES:
        assert from_files[profile].score == pytest.approx(in_memory[profile].score)
        assert from_files[profile].threshold == in_memory[profile].threshold
        assert from_files[profile].files.keys() == set(CORPUS_WINDOWS)


def test_score_directory_requires_every_labelled_file(tmp_path):
    windows_path = write_corpus(tmp_path, perfect)
    (tmp_path / "results" / "realTraffic" / "b.csv").unlink()
    with pytest.raises(FileNotFoundError, match="b.csv"):
        score_directory(tmp_path / "results", windows_path)
