import json
from datetime import datetime, timezone

from linewatch.domain import QcResult, Reading
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def test_same_seed_same_bytes():
    a = [m.message.value for m in LineSimulator(T0).messages(300)]
    b = [m.message.value for m in LineSimulator(T0).messages(300)]
    c = [m.message.value for m in LineSimulator(T0, SimulatorSettings(seed=8)).messages(300)]
    assert a == b and a != c


def test_four_manufacturers_four_shapes_all_normalise(config):
    normalizer = Normalizer(config)
    seen = {}
    for sm in LineSimulator(T0).messages(120):
        result = normalizer.normalize(sm.message)
        assert isinstance(result, (Reading, QcResult)), result
        if isinstance(result, Reading):
            seen[result.source.manufacturer] = json.loads(sm.message.value)
            assert abs((result.ts - sm.ts).total_seconds()) < 0.002  # every vendor clock lands on the same UTC time
    assert set(seen) == {"extrutec", "schneidwerk", "thermaflow", "weighpro"}
    assert "tags" in seen["thermaflow"] and "device" in seen["schneidwerk"] and "tsMs" in seen["extrutec"]


def test_faults_are_injected(config):
    faults = (Fault("failure_rate", "checkweigher-1", start=0, duration=2000, magnitude=0.5),
              Fault("dropout", "dryer-1", start=100, duration=50),
              Fault("stuck", "cutter-1", start=0, duration=2000, sensor="cutter_vibration"))
    normalizer = Normalizer(config)
    fails = units = dryer_in_dropout = 0
    vibration = set()
    for sm in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(2000):
        r = normalizer.normalize(sm.message)
        t = (sm.ts - T0).total_seconds()
        if isinstance(r, QcResult):
            units += 1
            fails += not r.passed
        elif r.machine == "dryer-1" and 100 <= t < 150:
            dryer_in_dropout += 1
        elif r.machine == "cutter-1":
            vibration.add(r.values["cutter_vibration"])
    assert 0.45 < fails / units < 0.55
    assert dryer_in_dropout == 0
    assert len(vibration) == 1
