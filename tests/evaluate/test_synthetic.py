import json

import numpy as np
import pytest

from linewatch.config import AnomalySettings
from linewatch.detect.mewma import MewmaModel
from linewatch.evaluate import nab, synthetic


def test_the_univariate_set_covers_every_base_and_fault_and_is_the_same_for_a_seed():
    first, again = synthetic.univariate_series(seed=3, rows=1000), synthetic.univariate_series(seed=3, rows=1000)
    assert [s.name for s in first] == [s.name for s in again]
    assert all(np.array_equal(a.values, b.values) for a, b in zip(first, again))
    bases = {s.name.split("/")[0] for s in first}
    faults = {f for s in first for _, f in s.anomalies}
    assert bases == set(synthetic.BASES) and faults == set(synthetic.FAULTS)
    for s in first:  # every anomaly after NAB's probation (15 %) and before the end
        assert all(300 <= at < 850 for at, _ in s.anomalies), s.name
        assert np.isfinite(s.values).all()


def test_windows_are_centred_on_each_anomaly_and_share_a_tenth_of_the_rows():
    s = synthetic.Series("x.csv", np.zeros(1000), [(400, "spike"), (700, "level_shift")])
    (a0, a1), (b0, b1) = synthetic.nab_windows(s)
    times = s.timestamps
    assert (a0, a1) == (times[375], times[425]) and (b0, b1) == (times[675], times[725])


def test_the_corpus_is_written_in_nabs_format(tmp_path):
    data, windows = synthetic.write_nab_corpus(tmp_path, seed=1)
    labels = nab.load_windows(windows)
    assert len(labels) == len(synthetic.univariate_series(seed=1))
    rel, limits = next(iter(labels.items()))
    frame = nab.load_data(data / rel)
    assert list(frame.columns) == ["timestamp", "value"] and len(frame) == synthetic.ROWS
    assert all(frame["timestamp"].iloc[0] <= start <= end <= frame["timestamp"].iloc[-1] for start, end in limits)
    json.loads(windows.read_text())


def test_the_windowed_gaussian_reference_scores_a_spike_highest_and_a_constant_not_at_all():
    rng = np.random.default_rng(0)
    x = rng.normal(10, 1, 500)
    x[300] = 30
    scores = synthetic.windowed_gaussian(x)
    assert int(np.argmax(scores)) == 300 and scores[300] > 0.999
    assert not synthetic.windowed_gaussian(np.full(200, 5.0)).any()


def test_a_broken_correlation_keeps_the_sensors_range_but_not_its_relation():
    runs = synthetic.process_runs(seed=2, sensors=8, latent=2, train_rows=200, rows=800, fault_start=100)
    normal, broken = runs.normal[runs.fault_start:], runs.faults["broken_correlation"][runs.fault_start:]
    assert abs(broken[:, 0].std() / normal[:, 0].std() - 1) < 0.25
    corr = lambda x: max(abs(np.corrcoef(x[:, 0], x[:, j])[0, 1]) for j in range(1, x.shape[1]))  # noqa: E731
    assert corr(broken) < 0.2 < corr(normal)


def test_the_process_protocol_measures_detection_and_false_alarms_with_a_real_model():
    runs = synthetic.process_runs(seed=0, sensors=8, latent=2, train_rows=300, rows=700, fault_start=100)
    settings = AnomalySettings(warmup_readings=150, calibration_readings=150)
    result = synthetic.evaluate_process(lambda: MewmaModel("p", settings), runs, train_rows=300)
    assert set(result["detection_rate"]) == set(synthetic.PROCESS_FAULTS)
    assert result["detection_rate"]["step_one_sensor"] > 0.9  # a 3-sigma step on one sensor is found
    assert result["false_alarm_rate"] < 0.1
    assert result["mean_detection_rate"] == pytest.approx(np.mean(list(result["detection_rate"].values())))
