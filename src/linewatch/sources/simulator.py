"""A seeded, deterministic simulator of a packing-peanut extrusion line.

Four machines from four manufacturers (extruder, cutter, dryer, checkweigher) publish in four payload
shapes, exactly as the real machines would, so the simulator exercises the same normalisation the
plant's data goes through. Faults are injected on a schedule: spike, slow drift, stuck sensor,
dropout, and a step in the checkweigher's failure rate.

With ``genealogy`` on, the line also says what it made: the extruders and dryers name the lot they run,
each cutter publishes one reading per unit it cuts (unit id and lot), the checkweigher checks every unit
``transit_seconds`` later and relays the lab's destructive crush test of a sample of each finished lot.
A ``failure_rate`` fault then belongs to its machine: a cutter's fault fails that cutter's units, an
extruder's or dryer's the units of the lots it runs, the checkweigher's every result while it lasts.
Machines are the keys of ``vendor_ids``; a machine's kind is its id without the trailing number, so a
second cutter is ``"cutter-2": "SW-CUT-02"``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np

from linewatch.domain import RawMessage

UTC = timezone.utc
QC_TOPIC = "linewatch.qc"
FaultKind = Literal["spike", "drift", "stuck", "dropout", "failure_rate"]


@dataclass(frozen=True)
class Fault:
    """A fault injected ``start`` seconds into the run, lasting ``duration`` seconds.

    ``magnitude`` is in the sensor's canonical unit (spike: offset, drift: offset reached at the end),
    or the failure probability for ``failure_rate``.
    """

    kind: FaultKind
    machine: str
    start: float
    duration: float
    sensor: str | None = None
    magnitude: float = 0.0

    def active(self, t: float) -> bool:
        return self.start <= t < self.start + self.duration

    def describe(self) -> str:
        what = {"spike": f"{self.sensor} {self.magnitude:+g}", "drift": f"{self.sensor} drifting {self.magnitude:+g}",
                "stuck": f"{self.sensor} stuck", "dropout": "no data",
                "failure_rate": f"failure rate {self.magnitude:.0%}"}[self.kind]
        return f"t+{self.start:.0f}s for {self.duration:.0f}s: {self.machine} {what}"


# The demo line's faults, early enough that a newcomer sees alerts within the first two minutes
# of `linewatch demo` (the simulated clock runs at 60x until it catches up with the wall clock).
DEMO_FAULTS: tuple[Fault, ...] = (
    Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),
    Fault("failure_rate", "checkweigher-1", start=1500, duration=1800, magnitude=0.20),
    Fault("drift", "dryer-1", start=2400, duration=900, sensor="dryer_air_temperature", magnitude=8.0),
    Fault("stuck", "cutter-1", start=3600, duration=600, sensor="cutter_vibration"),
    Fault("dropout", "checkweigher-1", start=4500, duration=300),
)


@dataclass
class SimulatorSettings:
    seed: int = 7
    period: float = 1.0  # seconds of line time between readings of one machine
    baseline_failure_rate: float = 0.05
    faults: tuple[Fault, ...] = DEMO_FAULTS
    vendor_ids: dict[str, str] = field(default_factory=lambda: {
        "extruder-1": "EXT-4471", "cutter-1": "SW-CUT-01", "dryer-1": "TF-DRY-7", "checkweigher-1": "CW1"})
    genealogy: bool = False  # readings carry unit and lot ids; QC checks each unit and crush-tests each lot
    batch_seconds: float = 120.0  # line time per lot
    transit_seconds: float = 20.0  # from cutting a unit to its check on the checkweigher


@dataclass(frozen=True, slots=True)
class SimulatedMessage:
    ts: datetime  # line time at which the machine published it
    message: RawMessage


class _AR1:
    """Slowly wandering process noise: x[t] = phi * x[t-1] + e."""

    def __init__(self, rng: np.random.Generator, sigma: float, phi: float = 0.9):
        self.rng, self.phi = rng, phi
        self.scale = sigma * (1 - phi * phi) ** 0.5
        self.x = 0.0

    def step(self) -> float:
        self.x = self.phi * self.x + self.rng.normal(0.0, self.scale)
        return self.x


@dataclass(slots=True)
class _Unit:
    """A unit cut in genealogy mode, waiting for its check."""

    id: str
    lot: int
    made: float  # line time (s) it was cut
    p_fail: float  # its failure probability, decided by the faults active when it was made


def kind_of(machine: str) -> str:
    """``cutter-2`` -> ``cutter``: the simulator models a machine by its kind."""
    head, _, tail = machine.rpartition("-")
    return head if head and tail.isdigit() else machine


class LineSimulator:
    """Yields the line's messages in time order, starting at ``start`` (UTC)."""

    def __init__(self, start: datetime, settings: SimulatorSettings | None = None,
                 raw_prefix: str = "linewatch.raw.", qc_topic: str = QC_TOPIC):
        self.settings = settings or SimulatorSettings()
        self.raw_prefix, self.qc_topic = raw_prefix, qc_topic
        self.start = start.astimezone(UTC)
        self.rng = np.random.default_rng(self.settings.seed)
        r = self.rng
        # each machine wanders on its own (creating these draws nothing: the random stream is unchanged)
        self.wander: dict[str, dict[str, _AR1]] = {}
        for machine in self.settings.vendor_ids:
            kind = kind_of(machine)
            if kind == "extruder":
                self.wander[machine] = {"screw": _AR1(r, 0.8, 0.95), "barrel": _AR1(r, 0.5, 0.9)}
            elif kind == "cutter":
                self.wander[machine] = {"knife": _AR1(r, 5.0, 0.8)}
            elif kind == "dryer":
                self.wander[machine] = {"air": _AR1(r, 0.4, 0.95), "humidity": _AR1(r, 1.0, 0.9)}
        self.stuck: dict[tuple[str, str], float] = {}
        self.bag = 0
        self.berlin = ZoneInfo("Europe/Berlin")
        # genealogy mode's QC draws have their own stream: however many units fail, process values stay put
        self.qc_rng = np.random.default_rng([self.settings.seed, 1])
        self.units_made = 0
        self.waiting: deque[_Unit] = deque()  # cut, not yet checked
        self.lot_units: dict[int, list[_Unit]] = {}  # checked units per lot not yet crush-tested
        self.checked_lot = 0  # the lot of the last unit checked

    # ------------------------------------------------------------ canonical process values

    def _extruder(self, machine: str) -> dict[str, float]:
        r, w = self.rng, self.wander[machine]
        screw = 90.0 + w["screw"].step()
        return {
            "barrel_temperature": 200.0 + w["barrel"].step(),
            "melt_temperature": 205.0 + 0.3 * (screw - 90.0) + r.normal(0, 0.6),
            "die_pressure": 185.0 + 0.6 * (screw - 90.0) + r.normal(0, 1.5),
            "screw_speed": screw,
            "motor_load": 62.0 + 0.4 * (screw - 90.0) + r.normal(0, 1.0),
        }

    def _cutter(self, machine: str) -> dict[str, float]:
        r = self.rng
        return {
            "knife_speed": 1450.0 + self.wander[machine]["knife"].step(),
            # a vibrating cutter: heavy-tailed noise with the odd single-sample burst
            "cutter_vibration": abs(3.0 + 0.35 * r.standard_t(4)),
            "cut_length": 25.0 + r.normal(0, 0.15),
        }

    def _dryer(self, machine: str) -> dict[str, float]:
        r, w = self.rng, self.wander[machine]
        return {
            "dryer_air_temperature": 85.0 + w["air"].step(),
            "dryer_humidity": 35.0 + w["humidity"].step(),
            "dryer_belt_speed": 4.0 + r.normal(0, 0.02),
        }

    def _checkweigher(self, machine: str) -> dict[str, float]:
        r = self.rng
        return {"product_weight": 250.0 + r.normal(0, 2.0), "checkweigher_belt_speed": 42.0 + r.normal(0, 0.1)}

    # ------------------------------------------------------------ vendor payloads

    def _payload(self, machine: str, ts: datetime, v: dict[str, float], lot: str | None = None,
                 unit: str | None = None) -> tuple[str, bytes]:
        vid = self.settings.vendor_ids[machine]
        topic = f"{self.raw_prefix}{machine}"
        kind = kind_of(machine)
        body: dict[str, Any]
        if kind == "extruder":  # Extrutec: flat JSON, epoch ms, imperial units
            body = {"machineId": vid, "tsMs": int(ts.timestamp() * 1000),
                    "barrelTempF": round(v["barrel_temperature"] * 9 / 5 + 32, 2),
                    "meltTempF": round(v["melt_temperature"] * 9 / 5 + 32, 2),
                    "diePressurePsi": round(v["die_pressure"] / 0.0689475729, 1),
                    "screwRpm": round(v["screw_speed"], 2), "motorLoadPct": round(v["motor_load"], 2)}
            if lot is not None:
                body["batchId"] = lot
        elif kind == "cutter":  # Schneidwerk: nested JSON, ISO local time (Europe/Berlin)
            local = ts.astimezone(self.berlin).replace(tzinfo=None)
            body = {"device": {"id": vid}, "time": local.isoformat(timespec="milliseconds"),
                    "data": {"knife": {"speed": round(v["knife_speed"], 1)},
                             "bearing": {"vib_rms": round(v["cutter_vibration"], 3)},
                             "piece": {"length_cm": round(v["cut_length"] / 10.0, 4)}}}
            if unit is not None:
                body["data"]["piece"].update({"id": unit, "lot": lot})
        elif kind == "dryer":  # Thermaflow: tag list with a unit per value, ISO UTC
            body = {"ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "tags": [{"tag": "SupplyAir.T", "value": round(v["dryer_air_temperature"] + 273.15, 2), "unit": "K"},
                             {"tag": "Exhaust.RH", "value": round(v["dryer_humidity"], 2), "unit": "%"},
                             {"tag": "Belt.Speed", "value": round(v["dryer_belt_speed"], 3), "unit": "m/min"}]}
            if lot is not None:
                body["lot"] = lot
        else:  # WeighPro: own names, epoch seconds
            body = {"station": vid, "t": round(ts.timestamp(), 3), "gross_g": round(v["product_weight"], 1),
                    "belt_mpm": round(v["checkweigher_belt_speed"], 2)}
        return topic, json.dumps(body, separators=(",", ":")).encode()

    def _qc(self, ts: datetime, p_fail: float, station: str = "checkweigher-1") -> bytes:
        self.bag += 1
        failed = self.rng.random() < p_fail
        body = {"station": self.settings.vendor_ids[station], "t": round(ts.timestamp(), 3),
                "bag": f"B-{self.bag:07d}", "verdict": "FAIL" if failed else "PASS"}
        if failed:
            body["reason"] = "UNDERWEIGHT" if self.rng.random() < 0.7 else "SEAL"
        return json.dumps(body, separators=(",", ":")).encode()

    # ------------------------------------------------------------ the run

    def messages(self, seconds: float | None = None) -> Iterator[SimulatedMessage]:
        """The line's messages for ``seconds`` of line time (forever when None), in time order."""
        kinds = {"extruder": self._extruder, "cutter": self._cutter, "dryer": self._dryer,
                 "checkweigher": self._checkweigher}
        gens = [(machine, kind_of(machine), kinds[kind_of(machine)]) for machine in self.settings.vendor_ids]
        genealogy = self.settings.genealogy
        period = self.settings.period
        step = 0
        while seconds is None or step * period < seconds:
            t = step * period
            active = [f for f in self.settings.faults if f.active(t)]
            lot = int(t // self.settings.batch_seconds) + 1
            for index, (machine, kind, gen) in enumerate(gens):
                # each machine publishes a little after the tick, as real clocks never agree
                ts = self.start + timedelta(seconds=t + 0.05 * index)
                values = gen(machine)  # draw even when silent so a dropout does not shift the random stream
                unit = self._cut(machine, lot, t, active) if genealogy and kind == "cutter" else None
                if any(f.kind == "dropout" and f.machine == machine for f in active):
                    continue  # a silent machine still works: its units exist, unknown to the genealogy
                self._apply_faults(machine, t, values, active)
                ids = {"lot": _lot_id(lot), "unit": unit} if genealogy and kind != "checkweigher" else {}
                topic, payload = self._payload(machine, ts, values, **ids)
                yield SimulatedMessage(ts, RawMessage(topic=topic, key=machine.encode(), value=payload))
                if kind != "checkweigher":
                    continue
                if genealogy:
                    for body in self._checks(machine, ts, t, active):
                        yield SimulatedMessage(ts, RawMessage(topic=self.qc_topic, key=machine.encode(), value=body))
                else:
                    p = next((f.magnitude for f in active if f.kind == "failure_rate"),
                             self.settings.baseline_failure_rate)
                    yield SimulatedMessage(ts, RawMessage(topic=self.qc_topic, key=machine.encode(),
                                                          value=self._qc(ts, p, machine)))
            step += 1

    # ------------------------------------------------------------ genealogy mode

    def _fault_rate(self, machines: set[str], active: list[Fault]) -> float:
        return max([self.settings.baseline_failure_rate] +
                   [f.magnitude for f in active if f.kind == "failure_rate" and f.machine in machines])

    def _cut(self, cutter: str, lot: int, t: float, active: list[Fault]) -> str:
        """The cutter cuts one unit of ``lot``; the extruders and dryers running the lot share in its fate."""
        self.units_made += 1
        unit_id = f"U-{self.units_made:07d}"
        batch_machines = {m for m in self.settings.vendor_ids if kind_of(m) in ("extruder", "dryer")}
        self.waiting.append(_Unit(unit_id, lot, t, self._fault_rate(batch_machines | {cutter}, active)))
        return unit_id

    def _checks(self, station: str, ts: datetime, t: float, active: list[Fault]) -> Iterator[bytes]:
        """The station checks every unit cut ``transit_seconds`` ago or earlier, and once a lot's last
        unit is checked, relays the lab's crush test of one unit sampled from that lot."""
        rng, vid, at = self.qc_rng, self.settings.vendor_ids[station], round(ts.timestamp(), 3)
        station_rate = self._fault_rate({station}, active)
        while self.waiting and self.waiting[0].made <= t - self.settings.transit_seconds:
            unit = self.waiting.popleft()
            if unit.lot > self.checked_lot:
                yield from self._crush_tests(vid, at, before=unit.lot)
                self.checked_lot = unit.lot
            self.lot_units.setdefault(unit.lot, []).append(unit)
            failed = rng.random() < max(unit.p_fail, station_rate)
            body = {"station": vid, "t": at, "bag": unit.id, "lot": _lot_id(unit.lot),
                    "verdict": "FAIL" if failed else "PASS"}
            if failed:
                body["reason"] = "UNDERWEIGHT" if rng.random() < 0.7 else "SEAL"
            yield json.dumps(body, separators=(",", ":")).encode()

    def _crush_tests(self, vid: str, at: float, before: int) -> Iterator[bytes]:
        for lot in sorted(k for k in self.lot_units if k < before):
            units = self.lot_units.pop(lot)
            sample = units[int(self.qc_rng.integers(len(units)))]
            failed = self.qc_rng.random() < sample.p_fail
            body = {"station": vid, "t": at, "lot": _lot_id(lot), "test": "crush",
                    "verdict": "FAIL" if failed else "PASS"}
            if failed:
                body["reason"] = "BRITTLE"
            yield json.dumps(body, separators=(",", ":")).encode()

    def _apply_faults(self, machine: str, t: float, values: dict[str, float], active: list[Fault]) -> None:
        for f in active:
            if f.machine != machine or f.sensor not in values:
                continue
            if f.kind == "spike":
                values[f.sensor] += f.magnitude
            elif f.kind == "drift":
                values[f.sensor] += f.magnitude * (t - f.start) / f.duration
            elif f.kind == "stuck":
                values[f.sensor] = self.stuck.setdefault((machine, f.sensor), values[f.sensor])


def _lot_id(lot: int) -> str:
    return f"L-{lot:05d}"
