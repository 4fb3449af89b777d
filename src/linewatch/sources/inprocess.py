"""The in-process source: the line simulator feeding the pipeline directly, paced in time.

The simulated clock starts ``backfill`` seconds in the past and runs ``speed`` times faster than the
wall clock until it catches up with now, then keeps pace with real time. So the demo shows hours of
line behaviour in a minute or two, and never produces readings from the future.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from linewatch.domain import RawMessage
from linewatch.sources.simulator import LineSimulator, SimulatedMessage, SimulatorSettings

UTC = timezone.utc


class PacedSimulation:
    """Messages of the simulated line, released no faster than the paced clock allows."""

    def __init__(self, settings: SimulatorSettings | None = None, backfill: float = 7200.0, speed: float = 60.0,
                 now: datetime | None = None, raw_prefix: str = "linewatch.raw.", qc_topic: str = "linewatch.qc"):
        self.wall_start = time.monotonic()
        now = now or datetime.now(UTC)
        self.sim_start = now - timedelta(seconds=backfill)
        self.speed = speed
        self.catch_up = backfill / speed if speed > 0 else 0.0  # wall seconds until line time reaches now
        self.simulator = LineSimulator(self.sim_start, settings, raw_prefix, qc_topic)
        self._messages: Iterator[SimulatedMessage] = self.simulator.messages()
        self._pending: SimulatedMessage | None = None

    def line_time_now(self) -> datetime:
        """The simulated line time the wall clock allows so far."""
        elapsed = time.monotonic() - self.wall_start
        if self.speed <= 0:
            return datetime.max.replace(tzinfo=UTC)
        if elapsed <= self.catch_up:
            return self.sim_start + timedelta(seconds=elapsed * self.speed)
        return self.sim_start + timedelta(seconds=self.catch_up * self.speed + (elapsed - self.catch_up))

    def next_batch(self, max_wait: float = 0.2, max_messages: int = 2000) -> list[RawMessage]:
        """Messages whose line time has come, waiting at most ``max_wait`` seconds for the first."""
        deadline = time.monotonic() + max_wait
        batch: list[RawMessage] = []
        while len(batch) < max_messages:
            if self._pending is None:
                self._pending = next(self._messages)
            if self._pending.ts <= self.line_time_now():
                m = self._pending.message
                batch.append(RawMessage(m.topic, m.value, m.key, timestamp_ms=int(time.time() * 1000)))
                self._pending = None
                continue
            if batch or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return batch

    def commit(self) -> None:
        """Nothing to commit: the simulator is replayed from its seed."""
