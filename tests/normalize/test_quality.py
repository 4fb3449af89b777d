from datetime import datetime, timedelta, timezone

import pytest

from linewatch.domain import Reading, Source
from linewatch.normalize.quality import DataQuality

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
SRC = Source("extrutec", "linewatch.raw.extruder-1")


def reading(i: int, **values) -> Reading:
    base = {"barrel_temperature": 200.0 + i * 0.01, "melt_temperature": 205.0, "die_pressure": 185.0 + i * 0.01,
            "screw_speed": 90.0 + (i % 3) * 0.1, "motor_load": 62.0 + (i % 5) * 0.1}
    base.update(values)
    return Reading("extruder-1", "line-1", T0 + timedelta(seconds=i), {k: v for k, v in base.items() if v is not None}, SRC)


@pytest.fixture
def dq(config):
    return DataQuality(config)


def test_out_of_range_is_reported_and_withheld(dq, config):
    r = reading(1, die_pressure=900.0)
    problems, fine = dq.check(r, config.machines["extruder-1"])
    assert [(p.sensor, p.check) for p in problems] == [("die_pressure", "out_of_range")]
    assert "900 bar, outside the plausible 0–400 bar" in problems[0].summary
    assert "die_pressure" not in r.values and "die_pressure" not in fine


def test_stuck_sensor_while_running_but_not_when_idle(dq, config):
    machine = config.machines["extruder-1"]
    n = config.detection.data_quality.flatline_readings
    found = [dq.check(reading(i, melt_temperature=205.0), machine)[0] for i in range(n)]
    assert not any(found[:-1]) and found[-1][0].check == "stuck" and found[-1][0].sensor == "melt_temperature"


def test_idle_machine_raises_no_stuck_sensor(dq, config):
    import dataclasses

    from linewatch.config import RunningWhen

    machine = dataclasses.replace(config.machines["extruder-1"], running_when=RunningWhen(sensor="screw_speed", above=1.0))
    n = config.detection.data_quality.flatline_readings
    results = [dq.check(reading(i, screw_speed=0.0, motor_load=0.0), machine)[0] for i in range(n * 2)]
    assert not any(results)  # at night the line stands still: flat readings are expected


def test_missing_sensor_after_a_run_of_readings(dq, config):
    machine = config.machines["extruder-1"]
    n = config.detection.data_quality.missing_readings
    results = [dq.check(reading(i, motor_load=None), machine)[0] for i in range(n)]
    assert not any(results[:-1])
    assert results[-1][0].check == "missing" and "motor load missing from the last" in results[-1][0].summary


def test_duplicates_and_out_of_order_are_not_scored(dq, config):
    machine = config.machines["extruder-1"]
    assert dq.order(reading(5), machine) is None
    assert dq.order(reading(5), machine) == "duplicate"
    assert dq.order(reading(3), machine) == "out_of_order"
    assert dq.order(reading(6), machine) is None


def block_of(readings: list[Reading]):
    import numpy as np

    from linewatch.domain import ReadingBlock

    sensors = tuple(readings[0].values)
    return ReadingBlock("extruder-1", "line-1", "extrutec", SRC.topic, 0, list(range(len(readings))),
                        np.array([int(r.ts.timestamp() * 1000) for r in readings], dtype=np.int64), sensors,
                        np.array([[r.values[s] for s in sensors] for r in readings]))


@pytest.mark.parametrize("before,run", [(0, 59), (0, 60), (30, 29), (30, 30), (59, 1)])
def test_a_clean_run_counts_identical_values_as_one_by_one_does(config, before, run):
    """A block is clean only if checking its readings one by one finds nothing, and then leaves the same
    counts behind; a stuck sensor reaching the limit inside the block sends it one by one."""
    machine = config.machines["extruder-1"]
    assert config.detection.data_quality.flatline_readings == 60
    one, whole = DataQuality(config), DataQuality(config)
    history = [reading(i, melt_temperature=205.0) for i in range(before)]
    for r in history:
        one.order(r, machine), one.check(r, machine)
        whole.order(r, machine), whole.check(r, machine)
    readings = [reading(before + i, melt_temperature=205.0) for i in range(run)]
    kept = whole.clean_run(block_of(readings), machine)
    found = [one.order(r, machine) or one.check(r, machine)[0] for r in readings]
    if any(found):
        assert kept is None
    else:
        assert kept is not None
        whole.keep(machine, kept)
        assert whole.state == one.state


def test_a_run_out_of_order_or_out_of_range_is_not_clean(dq, config):
    machine = config.machines["extruder-1"]
    assert dq.clean_run(block_of([reading(i) for i in range(5)] + [reading(3)]), machine) is None
    assert dq.clean_run(block_of([reading(i) for i in range(5)] + [reading(9, die_pressure=900.0)]), machine) is None
    kept = dq.clean_run(block_of([reading(i) for i in range(6)]), machine)
    dq.keep(machine, kept)
    assert dq.clean_run(block_of([reading(5), reading(6)]), machine) is None  # 5 was the last one kept


def test_a_restored_state_expects_the_sensors_mapped_now(config):
    import dataclasses

    from linewatch.config import UnknownMachines
    from linewatch.normalize.quality import _MachineState

    maker = config.machines["extruder-1"].manufacturer
    profile = config.profiles[maker]
    kept = tuple(m.sensor for m in profile.sensors[:-1])
    dropped = profile.sensors[-1].sensor
    fewer = dataclasses.replace(
        config, profiles={**config.profiles, maker: profile.model_copy(update={"sensors": profile.sensors[:-1]})},
        unknown_machines=UnknownMachines(policy="accept", profile=maker, line="line-1"))
    quality = DataQuality(fewer)
    for machine in ("extruder-1", "extruder-9"):  # configured, and accepted under the default profile
        checkpointed = _MachineState(kept + (dropped,), missing_count={dropped: 9, kept[0]: 2})
        quality.restore(machine, checkpointed)
        assert quality.state[machine].expected == kept, machine
        assert quality.state[machine].missing_count == {kept[0]: 2}  # the removed sensor's count is gone
