"""Data-quality checks: is this reading something the process did, or something the sensor did?

Kept apart from process anomalies on purpose: a stuck sensor or a value outside any plausible range
is a maintenance job for the instrument technician, not a process deviation for the line lead.
Checks per reading: out of the catalogue's plausible range (the value is withheld from the anomaly
model), stuck sensor (identical values while the machine runs; an idle machine at night raises
nothing), an expected sensor missing. Per machine: duplicate and out-of-order readings (counted,
not scored twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from linewatch.config import Machine, PlantConfig
from linewatch.domain import EPOCH, ONE_MS, Reading, ReadingBlock
from linewatch.explain import sensor_label, unit_symbol


@dataclass
class _MachineState:
    expected: tuple[str, ...]
    last_ts: datetime | None = None
    last_value: dict[str, float] = field(default_factory=dict)
    same_count: dict[str, int] = field(default_factory=dict)
    missing_count: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Kept:
    """What a clean run of readings leaves in a machine's state: its last time, and per sensor the
    last value and how many identical values in a row ended the run."""

    last_ts: datetime
    sensors: dict[str, tuple[float, int]]


@dataclass(frozen=True, slots=True)
class SensorProblem:
    sensor: str
    check: str  # out_of_range | stuck | missing
    summary: str
    value: float | None = None


class DataQuality:
    """The plant's data-quality checks, with a little state per machine."""

    def __init__(self, config: PlantConfig):
        self.config = config
        self.settings = config.detection.data_quality
        self.ranges = {name: spec.range for name, spec in config.catalogue.sensors.items()}
        self.units = {name: unit_symbol(spec.unit) for name, spec in config.catalogue.sensors.items()}
        self.state: dict[str, _MachineState] = {}

    def _mapped(self, machine: Machine) -> tuple[str, ...]:
        return self._mapped_by(machine.manufacturer)

    def _mapped_by(self, manufacturer: str | None) -> tuple[str, ...]:
        profile = self.config.profiles.get(manufacturer) if manufacturer else None
        return tuple(m.sensor for m in profile.sensors) if profile else ()

    def _state(self, machine: Machine) -> _MachineState:
        st = self.state.get(machine.id)
        if st is None:
            st = self.state[machine.id] = _MachineState(self._mapped(machine))
        return st

    def restore(self, machine_id: str, st: _MachineState) -> None:
        """Adopt a machine's checkpointed state. Which sensors are expected comes from the profile loaded
        now, not from the checkpoint: a sensor removed from the profile since is not reported missing
        for ever, and a sensor added is checked from its first reading."""
        machine = self.config.machines.get(machine_id)
        unknown = self.config.unknown_machines
        if machine is not None:
            expected = self._mapped(machine)
        elif unknown.policy == "accept":  # a machine plant.yaml does not list, read with the default profile
            expected = self._mapped_by(unknown.profile)
        else:
            expected = st.expected  # no longer read at all: nothing to compare with
        if st.expected != expected:
            st.expected = expected
            for counts in (st.last_value, st.same_count, st.missing_count):
                for sensor in [k for k in counts if k not in expected]:
                    del counts[sensor]
        self.state[machine_id] = st

    def order(self, reading: Reading, machine: Machine) -> str | None:
        """None to score the reading, or why not: "duplicate" or "out_of_order"."""
        st = self._state(machine)
        last = st.last_ts
        if last is not None and reading.ts <= last:
            return "duplicate" if reading.ts == last else "out_of_order"
        st.last_ts = reading.ts
        return None

    def expected(self, machine: Machine) -> tuple[str, ...]:
        """The sensors the machine's profile maps: each reading should carry them."""
        return self._state(machine).expected

    def clean_run(self, block: ReadingBlock, machine: Machine) -> _Kept | None:
        """What ``order`` and ``check`` would leave behind for a run of readings of which none is a
        duplicate, out of order or has a problem; None when one is or has (check them one by one).
        Changes nothing: ``keep`` applies the result."""
        st = self._state(machine)
        ts = block.ts_ms
        if st.last_ts is not None and ts[0] <= (st.last_ts - EPOCH) // ONE_MS:
            return None
        if len(ts) > 1 and not (ts[1:] > ts[:-1]).all():
            return None
        column = {s: j for j, s in enumerate(block.sensors)}
        values, n = block.values, len(block)
        running = np.ones(n, dtype=bool)
        gate = machine.running_when
        if gate is not None and gate.sensor in column:
            running = values[:, column[gate.sensor]] > gate.above
        flatline = self.settings.flatline_readings
        same_count = {}
        for sensor in st.expected:
            if sensor not in column:
                return None  # missing: counted reading by reading
            v = values[:, column[sensor]]
            low, high = self.ranges[sensor]
            if not ((v >= low) & (v <= high)).all():
                return None
            same = np.empty(n, dtype=bool)
            same[0] = running[0] and st.last_value.get(sensor) == v[0]
            same[1:] = running[1:] & (v[1:] == v[:-1])
            if same.any():  # how many identical values in a row, each reading (as ``check`` counts)
                i = np.arange(n)
                reset = np.maximum.accumulate(np.where(same, -1, i))
                counts = np.where(reset >= 0, i - reset + 1, st.same_count.get(sensor, 1) + i + 1)
            else:
                counts = np.ones(1, dtype=np.int64)
            if counts.max() >= flatline:
                return None
            same_count[sensor] = (float(v[-1]), int(counts[-1]))
        return _Kept(block.ts(n - 1), same_count)

    def keep(self, machine: Machine, kept: _Kept) -> None:
        st = self._state(machine)
        st.last_ts = kept.last_ts
        for sensor, (value, count) in kept.sensors.items():
            st.missing_count[sensor] = 0
            st.last_value[sensor] = value
            st.same_count[sensor] = count

    def check(self, reading: Reading, machine: Machine) -> tuple[list[SensorProblem], list[str]]:
        """Problems found, and the sensors that passed every check. Out-of-range values are removed
        from ``reading.values`` so the anomaly model never learns them."""
        st = self._state(machine)
        s = self.settings
        values = reading.values
        problems: list[SensorProblem] = []
        fine: list[str] = []
        running = True
        if machine.running_when is not None:
            gate = values.get(machine.running_when.sensor)
            running = gate is None or gate > machine.running_when.above
        for sensor in st.expected:
            v = values.get(sensor)
            if v is None:
                n = st.missing_count.get(sensor, 0) + 1
                st.missing_count[sensor] = n
                if n >= s.missing_readings:
                    problems.append(SensorProblem(sensor, "missing", f"{machine.id}: {sensor_label(sensor)} missing "
                                                                     f"from the last {n} readings"))
                continue
            st.missing_count[sensor] = 0
            low, high = self.ranges[sensor]
            if not low <= v <= high:
                del values[sensor]
                unit = self.units[sensor]
                problems.append(SensorProblem(sensor, "out_of_range",
                                              f"{machine.id}: {sensor_label(sensor)} reads {v:g} {unit}, outside the "
                                              f"plausible {low:g}–{high:g} {unit} (sensor or wiring fault?)", v))
                continue
            if running and st.last_value.get(sensor) == v:
                n = st.same_count.get(sensor, 1) + 1
            else:
                n = 1
            st.same_count[sensor] = n
            st.last_value[sensor] = v
            if n >= s.flatline_readings:
                problems.append(SensorProblem(sensor, "stuck", f"{machine.id}: {sensor_label(sensor)} stuck at {v:g} "
                                                               f"{self.units[sensor]} for {n} readings while running", v))
                continue
            fine.append(sensor)
        return problems, fine
