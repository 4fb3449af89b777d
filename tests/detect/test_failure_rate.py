from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from linewatch.config import FailureRateSettings
from linewatch.detect.failure_rate import FailureRateMonitor, cusum_arl, cusum_limit

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def test_limit_meets_the_target_arl():
    h = cusum_limit(0.05, 0.15, 10_000)
    a, b = np.log(3.0), np.log(0.85 / 0.95)
    assert cusum_arl(0.05, a, b, h) >= 10_000
    assert cusum_arl(0.05, a, b, h - 0.1) < 10_000  # and is the smallest such limit (within its step)
    assert cusum_arl(0.20, a, b, h) < 60  # a 5% -> 20% step is found within tens of units on average


def test_markov_chain_arl_agrees_with_simulation():
    p0, a, b, h = 0.05, np.log(3.0), np.log(0.85 / 0.95), 3.0
    rng = np.random.default_rng(3)
    runs, s, t = 4000, np.zeros(4000), np.zeros(4000, dtype=int)
    alive = np.ones(4000, dtype=bool)
    step = 0
    while alive.any():
        step += 1
        fail = rng.random(runs) < p0
        s = np.where(alive, np.maximum(0.0, s + np.where(fail, a, b)), s)
        crossed = alive & (s > h)
        t[crossed] = step
        alive &= ~crossed
    assert cusum_arl(p0, a, b, h) == pytest.approx(t.mean(), rel=0.08)


def feed(monitor: FailureRateMonitor, rates: list[tuple[int, float]], seed: int = 0):
    rng = np.random.default_rng(seed)
    verdicts, n = [], 0
    for units, p in rates:
        for _ in range(units):
            n += 1
            verdicts.append(monitor.observe(rng.random() >= p, T0 + timedelta(seconds=n), f"U-{n}"))
    return verdicts


def test_baseline_is_learned_in_phase_one():
    monitor = FailureRateMonitor("line-1", FailureRateSettings(baseline_units=2000))
    verdicts = feed(monitor, [(2000, 0.05)])
    assert verdicts[0].phase == "baseline" and not any(v.alarm for v in verdicts)
    assert monitor.baseline == pytest.approx(0.05, abs=0.015)


def test_step_from_5_to_20_percent_is_flagged_quickly_and_explained():
    monitor = FailureRateMonitor("line-1", FailureRateSettings(baseline_units=2000))
    verdicts = feed(monitor, [(2000, 0.05), (1000, 0.20)], seed=11)
    first = next(i for i, v in enumerate(verdicts) if v.alarm)
    assert 2000 <= first < 2000 + 150
    v = verdicts[first]
    assert v.rate_since is not None and v.rate_since > 0.1
    assert v.since is not None and v.since >= T0 + timedelta(seconds=1800)
    assert v.first_unit is not None


def test_stable_process_stays_quiet_and_alarm_clears():
    monitor = FailureRateMonitor("line-1", FailureRateSettings(baseline_units=1000, clear_after_units=200))
    quiet = feed(monitor, [(1000, 0.05), (3000, 0.05)], seed=5)
    assert not any(v.alarm for v in quiet)
    after = feed(monitor, [(400, 0.30), (1500, 0.05)], seed=6)
    assert any(v.alarm for v in after[:400])
    assert not after[-1].alarm


def test_a_slow_creep_is_caught_by_the_adwin_backstop_or_the_cusum():
    monitor = FailureRateMonitor("line-1", FailureRateSettings(baseline_units=1000))
    rng = np.random.default_rng(21)
    n = 0
    for _ in range(1000):
        n += 1
        monitor.observe(rng.random() >= 0.05, T0 + timedelta(seconds=n))
    verdicts = []
    for i in range(6000):  # 5 % creeping to 11 % over 6,000 units
        n += 1
        verdicts.append(monitor.observe(rng.random() >= 0.05 + 0.06 * i / 6000, T0 + timedelta(seconds=n), f"U-{n}"))
    alarms = [v for v in verdicts if v.alarm]
    assert alarms and alarms[0].detector in {"cusum", "adwin"}


def test_the_p_chart_keeps_the_last_subgroups_and_old_checkpoints_load():
    import pickle
    from datetime import datetime, timedelta, timezone

    from linewatch.detect.failure_rate import SUBGROUP_UNITS, SUBGROUPS_KEPT

    t0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
    monitor = FailureRateMonitor("line-1", FailureRateSettings(baseline_units=200))
    total = SUBGROUP_UNITS * (SUBGROUPS_KEPT + 3) + 7
    for i in range(total):
        monitor.observe(i % 10 != 0, t0 + timedelta(seconds=i))  # one fail in ten
    chart = monitor.chart()
    assert len(chart) == SUBGROUPS_KEPT  # the oldest subgroups dropped, the unfinished one not shown
    at, n, fails = chart[-1]
    assert n == SUBGROUP_UNITS and at == t0 + timedelta(seconds=total - 8)
    assert sum(f for _, _, f in chart) == sum(1 for i in range(total - 7 - SUBGROUPS_KEPT * SUBGROUP_UNITS, total - 7)
                                              if i % 10 == 0)
    # a monitor checkpointed before the chart existed loads with an empty one and fills it
    state = monitor.__dict__.copy()
    for name in ("subgroups", "subgroup_units", "subgroup_fails"):
        del state[name]
    old = FailureRateMonitor.__new__(FailureRateMonitor)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    assert restored.chart() == []
    for _ in range(SUBGROUP_UNITS):
        restored.observe(True, t0)
    assert len(restored.chart()) == 1
