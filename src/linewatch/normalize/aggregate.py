"""Fold a fast stream into one canonical reading per period.

A vibration sensor sampled at 10 Hz says little per sample and floods the anomaly model; one reading
per second with the RMS (or mean, max, min, last, as the profile says) carries what matters. A
period's reading is emitted when the first reading of a later period arrives.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from linewatch.config import AggregateSpec
from linewatch.domain import Reading

UTC = timezone.utc


class _Accumulator:
    __slots__ = ("n", "total", "squares", "high", "low", "last")

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0
        self.high, self.low, self.last = -math.inf, math.inf, 0.0

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v
        self.squares += v * v
        self.high = v if v > self.high else self.high
        self.low = v if v < self.low else self.low
        self.last = v

    def value(self, how: str) -> float:
        if how == "mean":
            return self.total / self.n
        if how == "rms":
            return math.sqrt(self.squares / self.n)
        if how == "max":
            return self.high
        if how == "min":
            return self.low
        return self.last


class Aggregator:
    """One machine's period buckets."""

    def __init__(self, spec: AggregateSpec):
        self.period = spec.period_seconds
        self.default = spec.default
        self.how = dict(spec.sensors)
        self.bucket: int | None = None
        self.acc: dict[str, _Accumulator] = {}
        self.first: Reading | None = None
        self.late = 0  # readings for a period already emitted: counted, dropped

    def add(self, reading: Reading) -> Reading | None:
        """Take one fast reading; return the previous period's reading when this one starts a new period."""
        bucket = math.floor(reading.ts.timestamp() / self.period)
        out = None
        if self.bucket is not None and bucket < self.bucket:
            self.late += 1
            return None
        if self.bucket is not None and bucket > self.bucket:
            out = self.flush()
        if self.bucket is None:
            self.bucket, self.first, self.acc = bucket, reading, {}
        for sensor, v in reading.values.items():
            acc = self.acc.get(sensor)
            if acc is None:
                acc = self.acc[sensor] = _Accumulator()
            acc.add(v)
        return out

    def flush(self) -> Reading | None:
        """The current period's reading (stamped with the period's start), and start afresh."""
        if self.bucket is None or self.first is None:
            return None
        first = self.first
        values = {s: a.value(self.how.get(s, self.default)) for s, a in self.acc.items()}
        ts = datetime.fromtimestamp(self.bucket * self.period, tz=UTC)
        self.bucket, self.first, self.acc = None, None, {}
        return Reading(machine=first.machine, line=first.line, ts=ts, values=values, source=first.source,
                       unit_id=first.unit_id, batch_id=first.batch_id, recipe=first.recipe)
