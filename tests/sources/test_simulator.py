import json
from datetime import datetime, timezone

from linewatch.domain import QcResult, Reading
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.simulator import QC_TOPIC, Fault, LineSimulator, SimulatorSettings

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


def test_plain_line_carries_no_ids_and_genealogy_faults_leave_process_values_alone():
    plain = [json.loads(m.message.value) for m in LineSimulator(T0).messages(200)]
    assert not any("batchId" in b or "lot" in b or "id" in b.get("data", {}).get("piece", {}) for b in plain)

    def process(faults):
        sim = LineSimulator(T0, SimulatorSettings(genealogy=True, faults=faults))
        return [m.message.value for m in sim.messages(300) if m.message.topic != QC_TOPIC]

    assert process(()) == process((Fault("failure_rate", "cutter-1", start=0, duration=300, magnitude=0.5),))


def test_genealogy_every_unit_checked_once_every_lot_crush_tested_once(config):
    settings = SimulatorSettings(genealogy=True, faults=(), batch_seconds=60, transit_seconds=10)
    normalizer = Normalizer(config)
    cut: dict[str, str] = {}
    checked: list[str] = []
    crushed: list[str] = []
    lots_run: set[str] = set()
    for sm in LineSimulator(T0, settings).messages(400):
        r = normalizer.normalize(sm.message)
        assert isinstance(r, (Reading, QcResult)), r
        if isinstance(r, Reading) and r.machine == "cutter-1":
            assert r.unit_id not in cut and r.batch_id is not None
            cut[r.unit_id] = r.batch_id
        elif isinstance(r, Reading) and r.machine in ("extruder-1", "dryer-1"):
            assert r.unit_id is None
            lots_run.add(r.batch_id)
        elif isinstance(r, QcResult) and r.test == "crush":
            assert r.unit_id is None
            crushed.append(r.batch_id)
        elif isinstance(r, QcResult):
            assert cut[r.unit_id] == r.batch_id  # checked after it was cut, in the lot it was cut in
            checked.append(r.unit_id)
    assert len(checked) == len(set(checked)) == len(cut) - 10  # the last 10 s are still in transit
    assert crushed == ["L-00001", "L-00002", "L-00003", "L-00004", "L-00005", "L-00006"]
    assert lots_run == set(cut.values()) == {f"L-{i:05d}" for i in range(1, 8)}


def test_a_cutters_failure_fault_fails_only_its_own_units(config):
    vendor_ids = {"extruder-1": "EXT-4471", "cutter-1": "SW-CUT-01", "cutter-2": "SW-CUT-02", "dryer-1": "TF-DRY-7",
                  "checkweigher-1": "CW1"}
    settings = SimulatorSettings(genealogy=True, vendor_ids=vendor_ids,
                                 faults=(Fault("failure_rate", "cutter-2", start=0, duration=4000, magnitude=0.5),))
    made_by: dict[str, str] = {}
    counts = {"cutter-1": [0, 0], "cutter-2": [0, 0]}  # [units, fails]
    for sm in LineSimulator(T0, settings).messages(2000):
        body = json.loads(sm.message.value)
        piece = body.get("data", {}).get("piece", {})
        if "id" in piece:
            made_by[piece["id"]] = sm.message.key.decode()
        elif "bag" in body:
            c = counts[made_by[body["bag"]]]
            c[0] += 1
            c[1] += body["verdict"] == "FAIL"
    (n1, f1), (n2, f2) = counts["cutter-1"], counts["cutter-2"]
    assert n1 > 1900 and n2 > 1900
    assert 0.03 < f1 / n1 < 0.07 and 0.45 < f2 / n2 < 0.55  # ±5 standard errors
