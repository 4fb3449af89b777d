from datetime import datetime, timedelta, timezone

import numpy as np

from linewatch.config import FailureRateSettings
from linewatch.evaluate.failure_rate import _armed, cusum_run_lengths, step_delay

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def test_vectorised_replica_matches_the_monitor():
    settings = FailureRateSettings(baseline_units=500)
    monitor = _armed(settings, 0.05, np.random.default_rng(4))
    # drive both with the same draws: the replica consumes rng.random((chunk, n)) row by row
    draws = np.random.default_rng(7).random((4096, 1)) < 0.12
    expected = next(i for i, fail in enumerate(draws[:, 0], start=1)
                    if monitor.observe(not fail, T0 + timedelta(seconds=i)).alarm)
    run = cusum_run_lengths(np.array([monitor.llr_fail]), np.array([monitor.llr_pass]), np.array([monitor.h]), 0.12,
                            4096, np.random.default_rng(7))
    assert run[0] == expected


def test_a_big_step_is_found_within_the_issue_target():
    result = step_delay(FailureRateSettings(), 0.05, 0.20, seeds=40)
    assert result.median_delay <= 55 and result.missed == 0
