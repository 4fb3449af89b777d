import math
import pickle
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from linewatch.config import AnomalySettings
from linewatch.detect.mewma import MewmaModel, MewmaSettings

# the alarm goes on with the first outlier here (debounce 1 of 1): the tests below are about the chart
# itself; test_the_alarm_goes_on_at_k_of_the_last_n_outliers is about the plant's debounce
SETTINGS = AnomalySettings(warmup_readings=250, calibration_readings=150, debounce_k=1, debounce_n=1)
TRAIN = SETTINGS.warmup_readings + SETTINGS.calibration_readings
FLOW_SD, CURRENT_SD = 2.0, 0.2


def normal_readings(n: int, seed: int = 0) -> list[dict[str, float]]:
    """A pump: pressure follows current closely (correlated pair), flow and vibration independent."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        current = 5 + rng.normal(0, CURRENT_SD)
        out.append({"current": current, "pressure": 3 + 0.5 * (current - 5) + rng.normal(0, 0.03),
                    "flow": 120 + rng.normal(0, FLOW_SD), "vibration": 0.05 + rng.normal(0, 0.004)})
    return out


def trained(settings: AnomalySettings = SETTINGS, mewma: MewmaSettings | None = None, seed: int = 0) -> MewmaModel:
    model = MewmaModel("pump-1", settings, mewma=mewma)
    model.score_batch(normal_readings(settings.warmup_readings + settings.calibration_readings, seed))
    assert model.phase == "monitoring"
    return model


def test_phases_follow_the_settings_and_stay_silent_until_calibrated():
    model = MewmaModel("pump-1", SETTINGS)
    verdicts = [model.score_one(x) for x in normal_readings(TRAIN)]
    phases = [v.phase for v in verdicts]
    assert phases == ["warming_up"] * 250 + ["calibrating"] * 150
    assert not any(v.anomalous or v.outlier for v in verdicts)
    assert all(v.threshold is None and v.score == 0.0 for v in verdicts)
    assert model.phase == "monitoring" and model.threshold is not None
    after = model.score_one(normal_readings(1, seed=9)[0])
    # the larger of the EWMA's T² and the reading's own T², each over its threshold
    assert after.threshold == 1.0 and after.score >= after.tree_score / model.threshold - 1e-12
    ewma_only = MewmaModel("pump-1", SETTINGS, mewma=MewmaSettings(shewhart=False))
    ewma_only.score_batch(normal_readings(TRAIN))
    after = ewma_only.score_one(normal_readings(1, seed=9)[0])
    assert after.score == pytest.approx(after.tree_score / ewma_only.threshold)


def test_normal_operation_stays_quiet():
    # production phase lengths (400 + 300); the threshold is the max of autocorrelated calibration
    # scores, so it varies between machines: judge the average over several
    alarm_time = []
    for seed in range(10):
        model = trained(AnomalySettings(), seed=seed)
        alarm_time.append(model.score_batch(normal_readings(3000, seed=100 + seed)).anomalous.mean())
    assert np.mean(alarm_time) < 0.01


def test_mean_shift_on_one_sensor_is_flagged_and_explained_by_that_sensor():
    model = trained()
    shifted = [dict(r, flow=r["flow"] + 5 * FLOW_SD) for r in normal_readings(20, seed=1)]
    verdicts = model.score_batch(shifted)
    first = int(np.argmax(verdicts.outlier))
    assert verdicts.outlier.any() and first <= 3  # the EWMA needs a reading or two to cross
    assert verdicts.anomalous[first:].all()
    v = verdicts[len(verdicts) - 1]
    assert v.score > 1.0
    top = v.contributions[0]
    assert top.sensor == "flow"
    assert top.normal_low < 120 < top.normal_high < top.value
    assert top.z > 3  # in scales, as the alert sentence reads it
    assert {c.sensor for c in v.contributions} == {"current", "pressure", "flow", "vibration"}


def test_correlated_pair_break_is_flagged_though_each_sensor_is_normal():
    model = trained()
    pressure_sd = float(np.sqrt((0.5 * CURRENT_SD) ** 2 + 0.03 ** 2))
    # current one scale high, pressure one scale low: each well inside its range, the relation broken
    broken = [{"current": 5 + CURRENT_SD, "pressure": 3 - pressure_sd, "flow": 120.0, "vibration": 0.05}] * 10
    verdicts = model.score_batch(broken)
    assert (verdicts.deviation < 3).all()  # no sensor is out of its own normal range
    assert verdicts.outlier[2:].all() and verdicts.anomalous[2:].all()
    top_two = {c.sensor for c in verdicts[9].contributions[:2]}
    assert top_two == {"current", "pressure"}
    # the same move with the relation kept (both up together) is not flagged
    model = trained()
    together = [{"current": 5 + CURRENT_SD, "pressure": 3 + 0.5 * CURRENT_SD, "flow": 120.0, "vibration": 0.05}] * 10
    assert not model.score_batch(together).outlier.any()


def _alarm_from_outliers(outlier: np.ndarray, off_delay: int) -> np.ndarray:
    on, quiet, out = False, 0, []
    for o in outlier.tolist():
        if not on:
            on, quiet = o, 0
        else:
            quiet = quiet + 1 if not o else 0
            on = quiet < off_delay
        out.append(on)
    return np.array(out)


@pytest.mark.parametrize("off_delay", [1, 5, 12])
def test_alarm_clears_only_after_off_delay_quiet_readings(off_delay):
    model = trained(mewma=MewmaSettings(off_delay_readings=off_delay))
    normal = normal_readings(200, seed=2)
    stream = normal[:50] + [dict(r, flow=r["flow"] + 6 * FLOW_SD) for r in normal[50:80]] + normal[80:]
    verdicts = model.score_batch(stream)
    assert verdicts.outlier[50:80].any()
    assert (verdicts.anomalous == _alarm_from_outliers(verdicts.outlier, off_delay)).all()
    # after the fault: the first quiet reading starts the count; the alarm is off on the off_delay-th
    last_outlier = 50 + int(np.flatnonzero(verdicts.outlier[50:120]).max())
    assert not verdicts.outlier[last_outlier + 1:last_outlier + 1 + off_delay].any()
    assert verdicts.anomalous[last_outlier:last_outlier + off_delay].all()
    assert not verdicts.anomalous[last_outlier + off_delay]


def test_anomalous_readings_are_not_learned_but_normal_ones_are():
    model = trained()
    before = model.normal_range()
    verdicts = model.score_batch([dict(r, flow=r["flow"] + 8 * FLOW_SD) for r in normal_readings(60, seed=3)])
    assert verdicts.anomalous[1:].all()
    assert model.normal_range() == before  # 59 readings in alarm: the mean has not moved at all
    model = trained(mewma=MewmaSettings(mean_learning_rate=0.01))
    # a step of half a scale, mostly below the alarm: learned at mean_learning_rate 0.01
    drift = [dict(r, flow=r["flow"] + 0.5 * FLOW_SD) for r in normal_readings(300, seed=4)]
    verdicts = model.score_batch(drift)
    assert verdicts.anomalous.mean() < 0.05
    assert model.normal_range()["flow"][0] > before["flow"][0] + 0.3 * FLOW_SD
    assert model.normal_range()["current"] == pytest.approx(before["current"], abs=0.1 * CURRENT_SD)


def test_mean_learning_rate_zero_freezes_the_mean():
    model = trained(mewma=MewmaSettings(mean_learning_rate=0.0))
    before = model.normal_range()
    model.score_batch(normal_readings(300, seed=5))
    assert model.normal_range() == before


def test_excluded_sensors_are_not_modelled():
    model = trained(mewma=MewmaSettings(exclude_sensors=("vibration",)))
    assert model.sensors == ("current", "flow", "pressure")
    assert "vibration" not in model.normal_range()
    verdicts = model.score_batch([dict(r, vibration=50.0) for r in normal_readings(20, seed=6)])
    assert not verdicts.outlier.any()


def test_pickle_round_trip_continues_identically():
    stream = normal_readings(900, seed=7)
    stream[600:640] = [dict(r, pressure=r["pressure"] + 0.3) for r in stream[600:640]]
    for cut in (100, 300, 500):  # warming up, calibrating, monitoring
        model = MewmaModel("pump-1", SETTINGS)
        model.score_batch(stream[:cut])
        copy = pickle.loads(pickle.dumps(model))
        a, b = model.score_batch(stream[cut:]), copy.score_batch(stream[cut:])
        for field in ("score", "tree_score", "deviation", "phase", "outlier", "anomalous"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert a.contributions == b.contributions
    assert len(pickle.dumps(model)) < 4000  # compact: kilobytes, not the warm-up rows


def test_score_batch_equals_score_one_row_by_row():
    stream = normal_readings(1000, seed=8)
    stream[450:500] = [dict(r, flow=r["flow"] + 4 * FLOW_SD) for r in stream[450:500]]
    stream[700:720] = [dict(r, current=r["current"] + 0.4) for r in stream[700:720]]
    del stream[800]["flow"]  # a missing sensor keeps its last value in both forms
    one = MewmaModel("pump-1", SETTINGS)
    singles = [one.score_one(r) for r in stream]
    batch = MewmaModel("pump-1", SETTINGS)
    rng = np.random.default_rng(0)
    verdicts, pos = [], 0
    while pos < len(stream):  # uneven batches, some crossing the phase boundaries
        size = int(rng.integers(1, 180))
        got = batch.score_batch(stream[pos:pos + size])
        verdicts.extend(got[i] for i in range(len(got)))
        pos += size
    assert sum(v.anomalous for v in singles) > 40
    assert verdicts == singles


def test_start_new_normal_relearns_silently_and_keeps_the_sensors():
    model = trained()
    shifted = [dict(r, flow=r["flow"] + 10 * FLOW_SD) for r in normal_readings(TRAIN + 200, seed=9)]
    assert model.score_batch(shifted[:20]).anomalous.any()
    model.start_new_normal()
    assert model.phase == "warming_up" and model.sensors == ("current", "flow", "pressure", "vibration")
    assert not model.score_batch(shifted[:TRAIN]).anomalous.any()
    assert model.normal_range()["flow"][0] > 120 + 5 * FLOW_SD
    assert model.score_batch(shifted[TRAIN:]).anomalous.mean() < 0.05


def test_knobs_come_from_the_plant_settings_when_they_carry_them():
    # once config.AnomalySettings has a `mewma` field, the pipeline's MewmaModel(machine, settings) uses it
    plant = SimpleNamespace(warmup_readings=250, calibration_readings=150, mewma=MewmaSettings(smoothing=0.1))
    assert MewmaModel("pump-1", plant).mewma.smoothing == 0.1  # type: ignore[arg-type]
    assert MewmaModel("pump-1", SETTINGS).mewma == MewmaSettings()
    with pytest.raises(ValidationError):
        MewmaSettings(smoothing=0.0)
    with pytest.raises(ValidationError):
        MewmaSettings(off_delay_readings=0)


def test_importing_the_model_does_not_import_the_config():
    # the models' settings live in detect/settings.py, below config.py, so no import circle
    # (nor scoring: Verdicts lives in detect/verdict.py, beside Verdict, not in the other model's module)
    code = ("import sys, types, linewatch.detect.mewma as m; "
            "assert 'linewatch.config' not in sys.modules and 'linewatch.detect.anomaly' not in sys.modules; "
            "s = types.SimpleNamespace(warmup_readings=20, calibration_readings=50); "
            "m.MewmaModel('m', s).score_batch([{'a': float(i % 7), 'b': float(i % 5)} for i in range(80)]); "
            "assert 'linewatch.detect.anomaly' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def _debounced(outliers: np.ndarray, k: int, n: int, off_delay: int) -> np.ndarray:
    """The alarm as the plant's settings describe it: on at k of the last n outliers, off after
    off_delay quiet readings."""
    on, quiet, out = False, 0, []
    for i, o in enumerate(outliers):
        if not on:
            on, quiet = outliers[max(0, i - n + 1):i + 1].sum() >= k, 0
        else:
            quiet = quiet + 1 if not o else 0
            on = quiet < off_delay
        out.append(on)
    return np.array(out)


def test_the_alarm_goes_on_at_k_of_the_last_n_outliers():
    settings = AnomalySettings(warmup_readings=250, calibration_readings=150, debounce_k=3, debounce_n=5)
    normal = normal_readings(160, seed=5)
    stream = normal[:40] + [dict(r, flow=r["flow"] + 4 * FLOW_SD) for r in normal[40:80]] + normal[80:]
    verdicts = trained(settings).score_batch(stream)
    assert verdicts.anomalous[40:80].any()
    assert (verdicts.anomalous == _debounced(verdicts.outlier, 3, 5, 5)).all()


def test_a_spike_the_ewma_would_average_away_is_caught_by_the_readings_own_t2():
    spike = normal_readings(60, seed=6)
    spike[30] = dict(spike[30], pressure=spike[30]["pressure"] + 0.6)  # breaks the pressure/current relation
    with_single = trained(SETTINGS).score_batch(spike)
    ewma_only = trained(SETTINGS, MewmaSettings(shewhart=False)).score_batch(spike)
    assert with_single.outlier[30] and with_single.score[30] > 2 * ewma_only.score[30]
    assert with_single.contributions[30][0].sensor in ("pressure", "current")


def test_a_sensor_that_trends_through_warm_up_is_modelled_on_its_changes():
    rng = np.random.default_rng(7)
    rows = [dict(r, temperature=40 + 0.05 * i + rng.normal(0, 0.02)) for i, r in enumerate(normal_readings(900, seed=7))]
    model = MewmaModel("pump-1", SETTINGS)
    verdicts = model.score_batch(rows)
    assert model.increments.tolist() == [s == "temperature" for s in model.sensors]
    # it keeps heating after calibration; modelled on its level it would be "out of range" from then on
    assert verdicts.anomalous[TRAIN:].mean() < 0.02
    low, high = model.normal_range()["temperature"]
    assert low < rows[-1]["temperature"] + 0.05 < high  # the next reading's range, following the trend
    # modelled on its level, its normal range stays where warm-up was, far behind the machine
    levels = MewmaModel("pump-1", SETTINGS, mewma=MewmaSettings(difference_trending=False))
    levels.score_batch(rows)
    assert levels.normal_range()["temperature"][1] < rows[-1]["temperature"]


def test_a_model_checkpointed_before_these_features_comes_back_scoring_as_it_did():
    model = trained(mewma=MewmaSettings(shewhart=False, difference_trending=False))
    state = model.__dict__.copy()
    old = MewmaSettings(shewhart=False, difference_trending=False)
    for name in ("shewhart", "difference_trending", "trend_r2"):
        old.__dict__.pop(name)  # as a pickle of the older class holds it
    state["mewma"] = old
    for name in ("calibration_single", "single_threshold", "increments", "previous", "recent"):
        state.pop(name)
    restored = MewmaModel.__new__(MewmaModel)
    restored.__setstate__(state)
    readings = normal_readings(50, seed=8)
    expected = trained(mewma=MewmaSettings(shewhart=False, difference_trending=False)).score_batch(readings)
    assert np.allclose(restored.score_batch(readings).score, expected.score)


def test_a_sensor_that_gets_noisy_is_caught_by_the_dispersion_chart():
    # flow's noise triples, its mean stays: the EWMA of the readings averages it away and the readings'
    # own T² sees only the odd reading; the chart of their spread sees most of the stretch (three
    # quarters of it right after 150 calibration readings: its threshold allows for how little they say)
    normal = normal_readings(400, seed=11)
    stream = normal[:100] + [dict(r, flow=120 + 3 * (r["flow"] - 120)) for r in normal[100:300]] + normal[300:]
    charted = trained(SETTINGS).score_batch(stream)
    uncharted = trained(SETTINGS, MewmaSettings(dispersion_smoothing=0.0)).score_batch(stream)
    assert charted.outlier[150:300].mean() > 0.7 and uncharted.outlier[150:300].mean() < 0.3
    assert not charted.outlier[:100].any() and not charted.outlier[330:].any()  # quiet before, and soon after
    flagged = np.flatnonzero(charted.outlier[150:300]) + 150
    tops = [charted.contributions[i][0].sensor for i in flagged]
    assert tops.count("flow") / len(tops) > 0.9  # the chart names the sensor that spreads


def test_one_extreme_reading_does_not_hold_the_dispersion_chart_up():
    # a heavy-tailed sensor's odd reading: log(1 + T² / sensors) moves the chart a little, not for long
    spike = normal_readings(80, seed=12)
    spike[20] = dict(spike[20], flow=120 + 50 * FLOW_SD)
    verdicts = trained(SETTINGS).score_batch(spike)
    assert verdicts.outlier[20] and not verdicts.outlier[30:].any()


def test_a_machine_with_one_sensor_has_no_dispersion_chart():
    # its reading's own T² is its squared deviation: a noisy sensor crosses that threshold by itself
    model = MewmaModel("pump-1", SETTINGS)
    model.score_batch([{"flow": r["flow"]} for r in normal_readings(TRAIN + 50)])
    assert model.threshold is not None and model.dispersion_threshold == float("inf")
    assert trained(SETTINGS).dispersion_threshold < float("inf")


def test_a_model_checkpointed_before_the_dispersion_chart_comes_back_without_it():
    model = trained(mewma=MewmaSettings(dispersion_smoothing=0.0))
    state = model.__dict__.copy()
    old = MewmaSettings()
    old.__dict__.pop("dispersion_smoothing")  # as a pickle of the older class holds it
    state["mewma"] = old
    for name in ("calibration_dispersion", "dispersion_threshold", "w"):
        state.pop(name)
    restored = MewmaModel.__new__(MewmaModel)
    restored.__setstate__(state)
    assert restored.mewma.dispersion_smoothing == 0.0
    readings = normal_readings(50, seed=8)
    expected = trained(mewma=MewmaSettings(dispersion_smoothing=0.0)).score_batch(readings)
    assert np.array_equal(restored.score_batch(readings).score, expected.score)
    restored.start_new_normal()  # starting again, it charts the spread like any model made today
    assert restored.mewma == MewmaSettings() and restored.restart_with is None


def _episodes(anomalous: np.ndarray) -> int:
    return int(anomalous[0]) + int((anomalous[1:] & ~anomalous[:-1]).sum())


def test_thresholds_allow_for_a_short_calibration_on_readings_that_wander():
    # the simulated line's machines wander over tens of readings (an extruder's screw speed, a dryer's
    # air temperature), so 700 readings hold a few dozen independent ones; thresholds from the
    # estimates alone (the model before) were too low on some machines. An hour of each, no fault.
    from datetime import datetime, timezone

    from linewatch.sources.simulator import LineSimulator, SimulatorSettings

    settings = AnomalySettings(debounce_k=3, debounce_n=5)  # configs/plant.yaml's debounce
    before = MewmaSettings(threshold_margin=1.25, threshold_confidence=0.5, threshold_update_readings=0)
    now = then = 0
    for seed in range(10):
        sim = LineSimulator(datetime(2026, 1, 5, 6, tzinfo=timezone.utc), SimulatorSettings(seed=seed, faults=()))
        for machine, reading in (("extruder-1", sim._extruder), ("dryer-1", sim._dryer), ("cutter-1", sim._cutter)):
            stream = [reading(machine) for _ in range(3600)]
            now += _episodes(MewmaModel(machine, settings).score_batch(stream).anomalous)
            then += _episodes(MewmaModel(machine, settings, mewma=before).score_batch(stream).anomalous)
    assert then >= 10 and now <= then / 3, (now, then)


def test_thresholds_only_come_down_while_monitoring():
    model = trained(AnomalySettings(), seed=2)
    start = (model.threshold, model.single_threshold, model.dispersion_threshold)
    seen = [start]
    for i in range(10):
        model.score_batch(normal_readings(300, seed=200 + i))
        seen.append((model.threshold, model.single_threshold, model.dispersion_threshold))
    assert all(b[k] <= a[k] for a, b in zip(seen, seen[1:]) for k in range(3))
    assert all(seen[-1][k] < start[k] for k in range(3))  # 3,000 more normal readings narrow every bound
    # a fault that starts below its thresholds does not raise them
    drifting = [dict(r, flow=r["flow"] + FLOW_SD * i / 600) for i, r in enumerate(normal_readings(600, seed=300))]
    model.score_batch(drifting)
    assert model.threshold <= seen[-1][0] and model.dispersion_threshold <= seen[-1][2]


def test_a_fault_that_starts_while_the_model_calibrates_is_still_caught(caplog):
    # production phase lengths; flow steps up 4 sd 200 readings into calibration and stays there
    stream = normal_readings(1500, seed=21)
    stream[600:] = [dict(r, flow=r["flow"] + 4 * FLOW_SD) for r in stream[600:]]
    model = MewmaModel("pump-1", AnomalySettings())
    with caplog.at_level("INFO", logger="linewatch.detect.mewma"):
        verdicts = model.score_batch(stream)
    assert verdicts.outlier[700:].mean() > 0.95 and verdicts.anomalous[710:].all()
    assert verdicts.contributions[800][0].sensor == "flow"
    assert "pump-1: " in caplog.text and "calibration readings left out" in caplog.text
    shown = model.calibration_summary()  # what the machine's page shows
    assert shown["readings"] == 300 and shown["left_out"] >= 100 and 170 <= shown["first_left_out"] <= 200
    # the model before, which learned the fault as normal, never flagged it
    blind = MewmaModel("pump-1", AnomalySettings(), mewma=MewmaSettings(threshold_margin=1.25, threshold_confidence=0.5,
                                                                        threshold_update_readings=0))
    blind._undisturbed = lambda scores: (blind._learn_calibration(scores, np.ones(len(scores), dtype=bool)),
                                         np.ones(len(scores), dtype=bool))[1]
    assert blind.score_batch(stream).outlier[700:].mean() < 0.05


def test_a_clean_calibration_leaves_nothing_out(caplog):
    model = MewmaModel("pump-1", AnomalySettings())
    with caplog.at_level("INFO", logger="linewatch.detect.mewma"):
        model.score_batch(normal_readings(700, seed=22))
    assert model.score_sums is not None and model.score_sums.sums[0, 0] == 300
    assert "left out" not in caplog.text and model.calibration_summary() == {"readings": 300, "left_out": 0}


@pytest.mark.parametrize("calibration", [50, 60])
def test_a_calibration_shorter_than_the_charts_memory_still_calibrates(calibration):
    # shorter than the window a disturbed reading takes with it (2 x 30 + 1 readings)
    settings = AnomalySettings(warmup_readings=250, calibration_readings=calibration, debounce_k=1, debounce_n=1)
    clean = MewmaModel("pump-1", settings)
    clean.score_batch(normal_readings(250 + calibration, seed=23))
    assert clean.phase == "monitoring" and clean.score_sums.sums[0, 0] == calibration
    stream = normal_readings(250 + calibration, seed=24)
    stream[-10:] = [dict(r, flow=r["flow"] + 6 * FLOW_SD) for r in stream[-10:]]
    faulty = MewmaModel("pump-1", settings)  # too few readings would remain: none is left out
    faulty.score_batch(stream)
    assert faulty.phase == "monitoring" and faulty.score_sums.sums[0, 0] == calibration


def test_a_model_checkpointed_before_the_bounds_keeps_its_thresholds_and_restarts_with_todays_knobs():
    # a monitoring model pickled by the code before this change: no sums, the settings without the new
    # knobs, a threshold from the estimates alone (margin 1.25)
    before = MewmaSettings(threshold_margin=1.25, threshold_confidence=0.5, threshold_update_readings=0)
    model = trained(mewma=before)
    state = model.__dict__.copy()
    old = MewmaSettings()
    for name in ("threshold_confidence", "threshold_update_readings"):
        old.__dict__.pop(name)
    old.__dict__["threshold_margin"] = 1.25  # the default then, stored in every pickle
    state["mewma"] = old
    for name in ("score_sums", "calibration_max", "since_update"):
        state.pop(name)
    restored = MewmaModel.__new__(MewmaModel)
    restored.__setstate__(state)
    readings = normal_readings(700, seed=8)  # past two update points: nothing is set again
    assert np.array_equal(restored.score_batch(readings).score, trained(mewma=before).score_batch(readings).score)
    assert restored.threshold == model.threshold
    restored.start_new_normal()
    assert restored.mewma == MewmaSettings()  # not the stored 1.25: the plant never chose it


def test_a_model_checkpointed_mid_calibration_before_the_own_t2_finishes_calibrating():
    model = MewmaModel("pump-1", SETTINGS, mewma=MewmaSettings(shewhart=False, dispersion_smoothing=0.0))
    model.score_batch(normal_readings(300, seed=25))  # 50 readings into calibration
    state = model.__dict__.copy()
    for name in ("calibration_single", "calibration_dispersion"):
        state.pop(name)
    restored = MewmaModel.__new__(MewmaModel)
    restored.__setstate__(state)
    restored.score_batch(normal_readings(200, seed=26))
    assert restored.phase == "monitoring" and math.isfinite(restored.threshold)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the reading overflows on purpose
def test_a_reading_that_overflows_does_not_poison_the_thresholds():
    model = trained(AnomalySettings(), seed=3)
    model.score_batch(normal_readings(250, seed=27))
    model.score_batch([dict(normal_readings(1, seed=28)[0], flow=1e200)])
    assert model.score_sums is not None and np.isfinite(model.score_sums.sums).all()


def test_checkpoints_written_while_the_settings_lived_in_config_and_mewma_still_restore():
    import pickle

    from linewatch.detect.settings import AnomalySettings

    model = MewmaModel("pump-1", AnomalySettings(warmup_readings=60, calibration_readings=60))
    model.score_batch([{"a": float(i % 7), "b": float(i % 5)} for i in range(80)])
    written = pickle.dumps(model, protocol=2)  # names classes as text: "c<module>\n<name>\n"
    for new, old in ((b"clinewatch.detect.settings\nAnomalySettings\n", b"clinewatch.config\nAnomalySettings\n"),
                     (b"clinewatch.detect.settings\nMewmaSettings\n", b"clinewatch.detect.mewma\nMewmaSettings\n")):
        assert new in written
        written = written.replace(new, old)
    restored = pickle.loads(written)
    assert restored.settings == model.settings and restored.mewma == model.mewma and restored.seen == 80
