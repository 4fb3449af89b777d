import numpy as np

from linewatch.detect.likelihood import LEARNING, RED_ZONE, YELLOW_ZONE, exceedance, likelihood, log_likelihood


def test_exceedance_is_zero_below_the_threshold_and_one_at_twice_it():
    assert exceedance(np.array([0.2, 1.0, 1.5, 2.0, 9.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_a_sudden_rise_stands_out_and_a_score_that_stays_high_becomes_usual():
    rng = np.random.default_rng(0)
    raw = np.clip(rng.normal(0.02, 0.02, 3000), 0, 1)
    raw[1500:] = np.clip(rng.normal(0.8, 0.05, 1500), 0, 1)  # a level shift the model keeps flagging
    lik = likelihood(raw)
    assert lik[:LEARNING].tolist() == [0.5] * LEARNING
    assert lik[1500:1505].max() >= RED_ZONE  # the rise
    assert (lik[LEARNING:1500] < RED_ZONE).mean() > 0.99  # before it, rarely red
    assert lik[2800:].max() < RED_ZONE  # long after it: the new usual


def test_only_the_first_of_consecutive_red_rows_keeps_its_likelihood():
    raw = np.zeros(1000)
    raw[600:700] = 1.0
    lik = likelihood(raw)
    red = np.flatnonzero(lik >= RED_ZONE)
    assert len(red) and np.all(np.diff(red) > 1)  # never two red rows in a row
    assert (lik[red[0] + 1:red[0] + 5] == YELLOW_ZONE).all()


def test_rows_the_model_did_not_judge_are_skipped_and_scored_neutral():
    raw = np.concatenate([np.full(200, np.nan), np.zeros(600)])
    raw[700] = 1.0
    lik = likelihood(raw)
    assert (lik[:200 + LEARNING] == 0.5).all() and lik[700] > 0.99


def test_the_log_scale_spreads_the_likelihoods_near_one():
    values = log_likelihood(np.array([0.5, 0.999, RED_ZONE, 1 - 1e-9]))
    assert values[0] < 0.05 < values[1] < values[2] < values[3] <= 1.0
    assert abs(values[2] - 0.5) < 0.01
