import numpy as np
import pytest

from linewatch.detect.thresholds import ScoreSums, chi2_quantile_for, robust_chi2_quantile, upper_moments


def ar1(n: int, phi: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.normal()
    return x


def test_moments_are_the_series_mean_variance_and_lag_one_autocorrelation():
    x = ar1(20000, 0.9) + 5.0
    sums = ScoreSums(1)
    sums.add(x[:, None], np.ones(len(x), dtype=bool))
    mean, var, n, rho = sums.moments(0)
    assert mean == pytest.approx(x.mean()) and var == pytest.approx(x.var())
    assert rho == pytest.approx(np.corrcoef(x[1:], x[:-1])[0, 1], abs=1e-3)
    assert n == pytest.approx(20000 * (1 - rho) / (1 + rho))  # about 1,050 independent readings of 20,000


def test_readings_left_out_are_neither_counted_nor_paired():
    x = np.arange(10.0)
    normal = np.array([True, True, False, True, True, True, False, False, True, True])
    sums = ScoreSums(1)
    sums.add(x[:, None], normal)
    n, total, squares, pairs, lagged, pair_sum = sums.sums[0]
    assert (n, total, squares) == (7, x[normal].sum(), (x[normal] ** 2).sum())
    assert (pairs, lagged) == (4, 0 * 1 + 3 * 4 + 4 * 5 + 8 * 9)  # (0,1), (3,4), (4,5), (8,9)
    assert pair_sum == 1 + 7 + 9 + 17


def test_readings_added_one_at_a_time_give_the_same_bits_as_in_batches():
    rng = np.random.default_rng(3)
    scores = rng.chisquare(4, (700, 3)) * 1e3 + rng.normal(0, 1e-7, (700, 3))
    normal = rng.random(700) > 0.1
    one, batches = ScoreSums(3), ScoreSums(3)
    for i in range(700):
        one.add(scores[i:i + 1], normal[i:i + 1])
    pos = 0
    while pos < 700:
        size = int(rng.integers(1, 120))
        batches.add(scores[pos:pos + size], normal[pos:pos + size])
        pos += size
    assert np.array_equal(one.sums, batches.sums)


def test_upper_bounds_widen_for_fewer_independent_readings():
    assert upper_moments(10.0, 4.0, 50, 50, 0.5) == (10.0, 4.0)
    few, many = upper_moments(10.0, 4.0, 10, 10, 0.95), upper_moments(10.0, 4.0, 1000, 1000, 0.95)
    assert few[0] > many[0] > 10.0 and few[1] > many[1] > 4.0
    assert many[0] == pytest.approx(10.0 + 1.645 * 2.0 / np.sqrt(1000), rel=1e-3)


def test_the_robust_quantile_fits_chi2_scores_and_ignores_a_fault_on_a_fifth_of_them():
    rng = np.random.default_rng(0)
    scores = rng.chisquare(5, 300)
    exact = 15.086  # χ²_5 at 0.99
    assert robust_chi2_quantile(scores, 0.99) == pytest.approx(exact, rel=0.15)
    faulty = scores.copy()
    faulty[-60:] *= 50  # the last fifth: a fault that started during calibration
    assert robust_chi2_quantile(faulty, 0.99) == pytest.approx(robust_chi2_quantile(scores, 0.99), rel=0.5)
    assert chi2_quantile_for(faulty.mean(), faulty.var(), 0.99) > 10 * exact  # the mean and variance are carried away


def test_the_robust_quantile_of_a_constant_stretch_is_no_limit():
    assert robust_chi2_quantile(np.full(50, 2.0), 0.99) == np.inf
