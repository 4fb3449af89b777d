"""The batch model must give river's scores, reading by reading, within 1e-9 (issue 4).

river's own model (``RiverMachineModel``) is run one reading at a time beside ``MachineModel`` fed
the same readings in batches of several sizes; every verdict field is compared. The streams hold
the cases where the batch shortcut could go wrong: outliers (not learned, so the rest of the batch
is rescored), a drift that keeps them coming, a stuck sensor (zero variance), a missing sensor, and
window boundaries of the Half-Space Trees falling inside batches.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from linewatch.config import AnomalySettings
from linewatch.detect.anomaly import MachineModel
from linewatch.detect.reference import RiverMachineModel

SENSORS = [f"sensor_{i}" for i in range(8)]


def line_stream(seed: int, n: int = 2400) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)) * np.arange(1, 9) + 100.0
    x[900:915, 2] += 45.0  # a burst of outliers
    x[1300:, 3] += np.linspace(0.0, 40.0, n - 1300)  # a drift that keeps producing outliers
    x[1700:1800, 5] = x[1699, 5]  # a stuck sensor
    x[[1000, 1001, 1500], 6] += 80.0  # single spikes
    rows = [dict(zip(SENSORS, r)) for r in x.tolist()]
    del rows[1100]["sensor_1"]  # a reading missing one sensor keeps its last value
    return rows


def assert_same(river_verdicts, batch_verdicts) -> None:
    assert len(river_verdicts) == len(batch_verdicts)
    for i, (a, b) in enumerate(zip(river_verdicts, batch_verdicts)):
        where = f"reading {i}"
        assert (a.phase, a.outlier, a.anomalous, a.threshold) == (b.phase, b.outlier, b.anomalous, b.threshold), where
        assert b.score == pytest.approx(a.score, abs=1e-9), where
        assert b.tree_score == pytest.approx(a.tree_score, abs=1e-9), where
        assert b.deviation == pytest.approx(a.deviation, abs=1e-9), where
        assert [c.sensor for c in a.contributions] == [c.sensor for c in b.contributions], where
        for ca, cb in zip(a.contributions, b.contributions):
            assert (cb.z, cb.normal_low, cb.normal_high) == pytest.approx((ca.z, ca.normal_low, ca.normal_high),
                                                                         abs=1e-9), where


@pytest.mark.parametrize("batch", [1, 7, 250, 1000])
def test_batch_scores_equal_rivers_reading_by_reading(batch):
    settings = AnomalySettings()
    rows = line_stream(seed=batch)
    river = RiverMachineModel("extruder-1", settings, seed=5)
    expected = [river.score_one(r) for r in rows]
    model = MachineModel("extruder-1", settings, seed=5)
    got = []
    for start in range(0, len(rows), batch):
        verdicts = model.score_batch(rows[start:start + batch])
        got.extend(verdicts[i] for i in range(len(verdicts)))
    assert sum(v.outlier for v in expected) > 20, "the stream must exercise the outlier path"
    assert any(v.anomalous for v in expected)
    assert_same(expected, got)


def test_equal_after_a_checkpoint_and_new_normal():
    settings = AnomalySettings(warmup_readings=300, calibration_readings=200)
    rows = line_stream(seed=11)
    river = RiverMachineModel("cutter-1", settings, seed=3)
    model = MachineModel("cutter-1", settings, seed=3)
    expected = [river.score_one(r) for r in rows[:1400]]
    river.start_new_normal()
    expected += [river.score_one(r) for r in rows[1400:]]
    first = model.score_batch(rows[:1000])
    model = pickle.loads(pickle.dumps(model))  # a checkpoint taken and restored mid-stream
    second = model.score_batch(rows[1000:1400])
    model.start_new_normal()
    third = model.score_batch(rows[1400:])
    got = [v[i] for v in (first, second, third) for i in range(len(v))]
    assert_same(expected, got)


def test_model_state_is_compact():
    model = MachineModel("dryer-1", AnomalySettings())
    model.score_batch(line_stream(seed=2)[:600])
    assert len(pickle.dumps(model)) < 80_000  # river's objects for the same model: ~420 kB pickled, ~3 MB in memory
