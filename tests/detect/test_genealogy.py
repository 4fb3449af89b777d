import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from linewatch.config import FailureRateSettings, GenealogySettings, PlantConfig, load_config
from linewatch.detect.genealogy import Attribution, Genealogy, MachineFailureRates
from linewatch.domain import QcResult, Reading, Source
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
SRC = Source("test", "t")


def reading(machine: str, unit: str | None = None, batch: str | None = None) -> Reading:
    return Reading(machine, "line-1", T0, {}, SRC, unit_id=unit, batch_id=batch)


def qc(passed: bool = True, unit: str | None = None, batch: str | None = None, machine: str | None = None,
       ts: datetime = T0) -> QcResult:
    return QcResult(ts, "line-1", passed, "test", SRC, machine=machine, unit_id=unit, batch_id=batch)


@pytest.fixture
def lot() -> Genealogy:
    """Lot L-1 run by extruder-1 and dryer-1; cutter-1 cut U-1, cutter-2 cut U-2."""
    g = Genealogy()
    for r in (reading("extruder-1", batch="L-1"), reading("dryer-1", batch="L-1"),
              reading("cutter-1", "U-1", "L-1"), reading("cutter-2", "U-2", "L-1")):
        g.record(r)
    return g


def test_unit_test_names_its_machines_and_its_batch_machines_but_not_the_other_units(lot):
    found = lot.attribute(qc(False, unit="U-1", machine="checkweigher-1"))
    assert set(found.machines) == {"cutter-1", "extruder-1", "dryer-1", "checkweigher-1"}
    assert found.basis == "unit" and "cutter-2" not in found.machines


def test_batch_test_names_every_machine_of_the_batch_and_its_units(lot):
    found = lot.attribute(qc(False, batch="L-1", machine="checkweigher-1"))
    assert set(found.machines) == {"extruder-1", "dryer-1", "cutter-1", "cutter-2", "checkweigher-1"}
    assert found.basis == "batch"


def test_a_unit_learns_its_batch_from_a_qc_result_and_the_batch_learns_the_units_machines():
    g = Genealogy()
    g.record(reading("extruder-1", batch="L-7"))
    g.record(reading("cutter-1", unit="U-9"))  # the cutter does not know the lot
    assert set(g.attribute(qc(unit="U-9", batch="L-7")).machines) == {"cutter-1", "extruder-1"}
    assert set(g.attribute(qc(batch="L-7")).machines) == {"cutter-1", "extruder-1"}


def test_unknown_ids_are_counted_as_unattributable():
    g = Genealogy()
    g.record(reading("extruder-1", batch="L-1"))
    assert g.attribute(qc(unit="U-404")) == Attribution((), "none", "unknown_unit")
    assert g.attribute(qc(batch="L-404")) == Attribution((), "none", "unknown_batch")
    assert g.attribute(qc()).reason == "no_ids"
    # the station that tested it is still named, but the result counts as unattributable
    assert g.attribute(qc(unit="U-405", machine="checkweigher-1")).machines == ("checkweigher-1",)
    # an unknown unit of a known lot: only the machines that ran the whole lot surely touched it
    assert g.attribute(qc(unit="U-406", batch="L-1")) == Attribution(("extruder-1",), "batch")
    assert g.unattributed == {"no_ids": 1, "unknown_unit": 2, "unknown_batch": 1}
    assert g.unattributed_total == 4


def test_memory_is_bounded_least_recently_used_first():
    g = Genealogy(horizon_units=3, horizon_batches=2)
    for i in range(1, 4):
        g.record(reading("cutter-1", f"U-{i}", f"L-{i}"))
    g.attribute(qc(unit="U-1"))  # asking about U-1 makes it recent again
    g.record(reading("cutter-2", "U-4", "L-4"))
    assert list(g.units) == ["U-3", "U-1", "U-4"] and g.forgotten_units == 1
    assert len(g.batches) == 2 and g.forgotten_batches == 2
    assert g.attribute(qc(unit="U-2")).reason == "unknown_unit"
    assert g.attribute(qc(unit="U-1")).machines == ("cutter-1",)  # its lot L-1 is forgotten, the unit is not
    for i in range(10_000):
        g.record(reading("cutter-1", f"V-{i}", f"M-{i}"))
    assert len(g.units) == 3 and len(g.batches) == 2


def test_machine_on_every_unit_never_alarms_but_the_faulty_one_does():
    """Two cutters, one extruder: at 5% and 20% the extruder's raw monitor alarms too (it touched every
    failed unit), but it is line-wide and so left to the line's monitor."""
    import numpy as np

    rates = MachineFailureRates("line-1", GenealogySettings(), FailureRateSettings(baseline_units=500))
    rng = np.random.default_rng(4)
    alarmed: set[str] = set()
    for i in range(3000):
        cutter = "cutter-2" if i % 2 else "cutter-1"
        rates.record(reading("extruder-1", batch=f"L-{i // 100}"))
        rates.record(reading(cutter, f"U-{i}", f"L-{i // 100}"))
        p = 0.25 if cutter == "cutter-2" and i >= 1500 else 0.05
        for machine, v in rates.observe(qc(rng.random() >= p, unit=f"U-{i}", ts=T0 + timedelta(seconds=i))):
            if v.alarm:
                alarmed.add(machine)
    assert alarmed == {"cutter-2"}
    assert rates.monitors["extruder-1"].alarm  # its own CUSUM did alarm: the share rule is what keeps it quiet
    assert rates.share("extruder-1") == 1.0 and rates.share("cutter-1") == pytest.approx(0.5, abs=0.01)


# ------------------------------------------------------------ a simulated line with two cutters

VENDOR_IDS = {"extruder-1": "EXT-4471", "cutter-1": "SW-CUT-01", "cutter-2": "SW-CUT-02", "dryer-1": "TF-DRY-7",
              "checkweigher-1": "CW1"}
FAULT_AT = 1200.0


@pytest.fixture(scope="module")
def two_cutters(tmp_path_factory, config: PlantConfig) -> PlantConfig:
    target = tmp_path_factory.mktemp("plant") / "configs"
    shutil.copytree(config.directory, target)
    plant = target / "plant.yaml"
    text = plant.read_text()
    cutter = "            vendor_ids: [SW-CUT-01]\n"
    assert cutter in text
    plant.write_text(text.replace(cutter, cutter + "          - id: cutter-2\n            kind: cutter\n"
                                  "            manufacturer: schneidwerk\n            vendor_ids: [SW-CUT-02]\n"))
    return load_config(Path(target))


def simulate(config: PlantConfig, seed: int, attribute=None) -> tuple[MachineFailureRates, dict[str, float]]:
    """Run the simulated line (cutter-2's units fail at 20% from FAULT_AT) through normalisation and the
    per-machine view; return the view and when each machine was first flagged (seconds into the run)."""
    normalizer = Normalizer(config, clock=lambda: T0.timestamp() + 1e6)
    # the line's settings with a short phase I; each machine at the configured in-control run length
    rates = MachineFailureRates("line-1", config.detection.genealogy, FailureRateSettings(baseline_units=800))
    if attribute is not None:
        rates.genealogy.attribute = attribute.__get__(rates.genealogy)
    faults = (Fault("failure_rate", "cutter-2", start=FAULT_AT, duration=3600, magnitude=0.20),)
    settings = SimulatorSettings(seed=seed, genealogy=True, vendor_ids=VENDOR_IDS, faults=faults)
    flagged: dict[str, float] = {}
    for sm in LineSimulator(T0, settings).messages(FAULT_AT + 600):
        result = normalizer.normalize(sm.message)
        if isinstance(result, Reading):
            rates.record(result)
        elif isinstance(result, QcResult):
            for machine, v in rates.observe(result):
                if v.alarm:
                    flagged.setdefault(machine, (result.ts - T0).total_seconds())
        else:
            raise AssertionError(result)
    return rates, flagged


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_fault_is_flagged_on_its_machine_and_no_other(two_cutters, seed):
    """Margins: cutter-2 is flagged on average ~60 units after the step (at most ~170 in 40 seeds
    tried) and has 600 to do it in; cutter-1 watches ~900 in-control units with an in-control run
    length of 100,000 (about 1% of runs would alarm by chance), the line-wide machines never alarm."""
    rates, flagged = simulate(two_cutters, seed)
    assert set(flagged) == {"cutter-2"}, flagged
    assert FAULT_AT <= flagged["cutter-2"] < FAULT_AT + 450
    c1, c2 = rates.monitors["cutter-1"], rates.monitors["cutter-2"]
    assert c1.baseline == pytest.approx(0.05, abs=0.025) and c2.baseline == pytest.approx(0.05, abs=0.025)
    assert c2.recent_fails / len(c2.recent) > 0.12 and c1.recent_fails / len(c1.recent) < 0.10
    assert rates.genealogy.unattributed_total == 0
    assert {m for m in rates.monitors if rates.line_wide(m)} == {"extruder-1", "dryer-1", "checkweigher-1"}


def test_broken_attribution_is_caught(two_cutters):
    """The same run with a batch-wide attribution (every unit blamed on its whole lot, i.e. on both
    cutters): the faulty cutter can no longer be told apart from the good one."""

    def whole_lot(self: Genealogy, result: QcResult) -> Attribution:
        lot = self.units[result.unit_id][1] if result.unit_id in self.units else result.batch_id
        return self.machines_for(None, lot)

    rates, flagged = simulate(two_cutters, 1, attribute=whole_lot)
    assert "cutter-2" not in flagged or "cutter-1" in flagged
    c1, c2 = rates.monitors["cutter-1"], rates.monitors["cutter-2"]
    assert c1.units == c2.units and c1.fails == c2.fails
