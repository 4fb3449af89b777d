import numpy as np
import pytest

from linewatch.config import AnomalySettings
from linewatch.detect.anomaly import MachineModel

SETTINGS = AnomalySettings(warmup_readings=300, calibration_readings=200)


def normal_readings(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        speed = 90 + rng.normal(0, 0.8)
        yield {"screw_speed": speed, "die_pressure": 185 + 0.6 * (speed - 90) + rng.normal(0, 1.5),
               "melt_temperature": 205 + rng.normal(0, 0.6)}


def trained(n: int = 600) -> tuple[MachineModel, list]:
    model = MachineModel("extruder-1", SETTINGS)
    verdicts = [model.score_one(x) for x in normal_readings(n)]
    return model, verdicts


def test_no_alert_during_warm_up_and_calibration():
    model, verdicts = trained(SETTINGS.warmup_readings + SETTINGS.calibration_readings)
    assert all(not v.anomalous and v.threshold is None for v in verdicts)
    assert model.phase == "monitoring"


def test_normal_operation_stays_quiet():
    model, _ = trained()
    later = [model.score_one(x) for x in normal_readings(3000, seed=1)]
    assert sum(v.anomalous for v in later) == 0


def test_spike_is_flagged_and_explained_by_the_right_sensor():
    model, _ = trained()
    reading = {"screw_speed": 90.0, "die_pressure": 215.0, "melt_temperature": 205.0}
    verdicts = [model.score_one(reading) for _ in range(SETTINGS.debounce_k)]
    assert verdicts[0].outlier and not verdicts[0].anomalous  # one reading alone is debounced
    assert verdicts[-1].anomalous
    top = verdicts[-1].contributions[0]
    assert top.sensor == "die_pressure"
    assert top.normal_low < 185 < top.normal_high < 215
    assert top.z > 10


def test_anomalous_readings_are_not_learned_as_normal():
    model, _ = trained()
    range_before = model.normal_range()["die_pressure"]
    for _ in range(50):
        model.score_one({"screw_speed": 90.0, "die_pressure": 260.0, "melt_temperature": 205.0})
    assert model.normal_range()["die_pressure"] == pytest.approx(range_before)


def test_missing_sensor_keeps_last_value():
    model, _ = trained()
    verdict = model.score_one({"screw_speed": 90.0, "melt_temperature": 205.0})
    assert not verdict.outlier
