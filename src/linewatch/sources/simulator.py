"""A seeded, deterministic simulator of a packing-peanut extrusion line.

Four machines from four manufacturers (extruder, cutter, dryer, checkweigher) publish in four payload
shapes, exactly as the real machines would, so the simulator exercises the same normalisation the
plant's data goes through. Faults are injected on a schedule: spike, slow drift, stuck sensor,
dropout, and a step in the checkweigher's failure rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal
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


class LineSimulator:
    """Yields the line's messages in time order, starting at ``start`` (UTC)."""

    def __init__(self, start: datetime, settings: SimulatorSettings | None = None,
                 raw_prefix: str = "linewatch.raw.", qc_topic: str = QC_TOPIC):
        self.settings = settings or SimulatorSettings()
        self.raw_prefix, self.qc_topic = raw_prefix, qc_topic
        self.start = start.astimezone(UTC)
        self.rng = np.random.default_rng(self.settings.seed)
        r = self.rng
        self.screw = _AR1(r, 0.8, 0.95)
        self.barrel = _AR1(r, 0.5, 0.9)
        self.knife = _AR1(r, 5.0, 0.8)
        self.air = _AR1(r, 0.4, 0.95)
        self.humidity = _AR1(r, 1.0, 0.9)
        self.stuck: dict[tuple[str, str], float] = {}
        self.bag = 0
        self.berlin = ZoneInfo("Europe/Berlin")

    # ------------------------------------------------------------ canonical process values

    def _extruder(self) -> dict[str, float]:
        r = self.rng
        screw = 90.0 + self.screw.step()
        return {
            "barrel_temperature": 200.0 + self.barrel.step(),
            "melt_temperature": 205.0 + 0.3 * (screw - 90.0) + r.normal(0, 0.6),
            "die_pressure": 185.0 + 0.6 * (screw - 90.0) + r.normal(0, 1.5),
            "screw_speed": screw,
            "motor_load": 62.0 + 0.4 * (screw - 90.0) + r.normal(0, 1.0),
        }

    def _cutter(self) -> dict[str, float]:
        r = self.rng
        return {
            "knife_speed": 1450.0 + self.knife.step(),
            # a vibrating cutter: heavy-tailed noise with the odd single-sample burst
            "cutter_vibration": abs(3.0 + 0.35 * r.standard_t(4)),
            "cut_length": 25.0 + r.normal(0, 0.15),
        }

    def _dryer(self) -> dict[str, float]:
        r = self.rng
        return {
            "dryer_air_temperature": 85.0 + self.air.step(),
            "dryer_humidity": 35.0 + self.humidity.step(),
            "dryer_belt_speed": 4.0 + r.normal(0, 0.02),
        }

    def _checkweigher(self) -> dict[str, float]:
        r = self.rng
        return {"product_weight": 250.0 + r.normal(0, 2.0), "checkweigher_belt_speed": 42.0 + r.normal(0, 0.1)}

    # ------------------------------------------------------------ vendor payloads

    def _payload(self, machine: str, ts: datetime, v: dict[str, float]) -> tuple[str, bytes]:
        vid = self.settings.vendor_ids[machine]
        topic = f"{self.raw_prefix}{machine}"
        if machine == "extruder-1":  # Extrutec: flat JSON, epoch ms, imperial units
            body = {"machineId": vid, "tsMs": int(ts.timestamp() * 1000),
                    "barrelTempF": round(v["barrel_temperature"] * 9 / 5 + 32, 2),
                    "meltTempF": round(v["melt_temperature"] * 9 / 5 + 32, 2),
                    "diePressurePsi": round(v["die_pressure"] / 0.0689475729, 1),
                    "screwRpm": round(v["screw_speed"], 2), "motorLoadPct": round(v["motor_load"], 2)}
        elif machine == "cutter-1":  # Schneidwerk: nested JSON, ISO local time (Europe/Berlin)
            local = ts.astimezone(self.berlin).replace(tzinfo=None)
            body = {"device": {"id": vid}, "time": local.isoformat(timespec="milliseconds"),
                    "data": {"knife": {"speed": round(v["knife_speed"], 1)},
                             "bearing": {"vib_rms": round(v["cutter_vibration"], 3)},
                             "piece": {"length_cm": round(v["cut_length"] / 10.0, 4)}}}
        elif machine == "dryer-1":  # Thermaflow: tag list with a unit per value, ISO UTC
            body = {"ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "tags": [{"tag": "SupplyAir.T", "value": round(v["dryer_air_temperature"] + 273.15, 2), "unit": "K"},
                             {"tag": "Exhaust.RH", "value": round(v["dryer_humidity"], 2), "unit": "%"},
                             {"tag": "Belt.Speed", "value": round(v["dryer_belt_speed"], 3), "unit": "m/min"}]}
        else:  # WeighPro: own names, epoch seconds
            body = {"station": vid, "t": round(ts.timestamp(), 3), "gross_g": round(v["product_weight"], 1),
                    "belt_mpm": round(v["checkweigher_belt_speed"], 2)}
        return topic, json.dumps(body, separators=(",", ":")).encode()

    def _qc(self, ts: datetime, p_fail: float) -> bytes:
        self.bag += 1
        failed = self.rng.random() < p_fail
        body = {"station": self.settings.vendor_ids["checkweigher-1"], "t": round(ts.timestamp(), 3),
                "bag": f"B-{self.bag:07d}", "verdict": "FAIL" if failed else "PASS"}
        if failed:
            body["reason"] = "UNDERWEIGHT" if self.rng.random() < 0.7 else "SEAL"
        return json.dumps(body, separators=(",", ":")).encode()

    # ------------------------------------------------------------ the run

    def messages(self, seconds: float | None = None) -> Iterator[SimulatedMessage]:
        """The line's messages for ``seconds`` of line time (forever when None), in time order."""
        gens = {"extruder-1": self._extruder, "cutter-1": self._cutter, "dryer-1": self._dryer,
                "checkweigher-1": self._checkweigher}
        period = self.settings.period
        step = 0
        while seconds is None or step * period < seconds:
            t = step * period
            active = [f for f in self.settings.faults if f.active(t)]
            for machine, gen in gens.items():
                # each machine publishes a little after the tick, as real clocks never agree
                ts = self.start + timedelta(seconds=t + 0.05 * list(gens).index(machine))
                values = gen()  # draw even when silent so a dropout does not shift the random stream
                if any(f.kind == "dropout" and f.machine == machine for f in active):
                    continue
                self._apply_faults(machine, t, values, active)
                topic, payload = self._payload(machine, ts, values)
                yield SimulatedMessage(ts, RawMessage(topic=topic, key=machine.encode(), value=payload))
                if machine == "checkweigher-1":
                    p = next((f.magnitude for f in active if f.kind == "failure_rate"),
                             self.settings.baseline_failure_rate)
                    yield SimulatedMessage(ts, RawMessage(topic=self.qc_topic, key=machine.encode(), value=self._qc(ts, p)))
            step += 1

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
