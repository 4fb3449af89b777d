"""The consumer loop: take a batch, run it through the pipeline, make its results durable, commit.

Order matters for at-least-once: alerts are stored and DLQ/alert records acknowledged before the
source's offsets are committed, and offsets are committed only together with a checkpoint of the
detectors' state (every few seconds, when idle, and on stop), so the committed position never runs
ahead of what the models have learned. If making a batch durable fails, the loop retries that step
(the writes are idempotent) rather than moving on, so nothing a batch produced is ever skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from linewatch.alerts.silences import Silencer
from linewatch.alerts.store import AlertStore
from linewatch.detect.state import StateStore
from linewatch.domain import AlertEvent, AlertEventType, RawMessage, Rejection
from linewatch.pipeline import BatchOutcome, Pipeline

log = logging.getLogger(__name__)


class Source(Protocol):
    def next_batch(self) -> list[RawMessage]: ...

    def commit(self) -> None: ...


class Sink(Protocol):
    def write(self, rejections: Sequence[Rejection], events: Sequence[AlertEvent]) -> None: ...


@dataclass
class RunStats:
    messages: int = 0
    readings: int = 0
    qc_results: int = 0
    rejected: int = 0
    skipped: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    alerts_fired_by_kind: Counter = field(default_factory=Counter)
    batches: int = 0
    started: float = field(default_factory=time.monotonic)


class Runner:
    def __init__(self, source: Source, pipeline: Pipeline, store: AlertStore, sinks: Sequence[Sink] = (),
                 on_events: Callable[[Sequence[AlertEvent]], None] | None = None, silencer: Silencer | None = None,
                 state: StateStore | None = None, checkpoint_seconds: float = 5.0):
        self.source = source
        self.pipeline = pipeline
        self.store = store
        self.sinks = list(sinks)
        self.on_events = on_events
        self.silencer = silencer
        self.state = state
        self.checkpoint_seconds = checkpoint_seconds
        self.uncommitted = False
        self.last_checkpoint = time.monotonic()
        self._lag_labels: set[tuple[str, str]] = set()
        self.stop_requested = threading.Event()
        self.ready = threading.Event()
        self.stats = RunStats()

    def run(self, duration: float | None = None) -> RunStats:
        """Process batches until stopped (or for ``duration`` seconds)."""
        deadline = None if duration is None else time.monotonic() + duration
        self.ready.set()
        try:
            while not self.stop_requested.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.step()
        finally:
            if self.uncommitted:
                self.checkpoint()
        return self.stats

    def step(self) -> BatchOutcome | None:
        batch = self.source.next_batch()
        self._take_over()
        lag = self._lag()  # asked once per step: it feeds stale-stream judgement and the lag gauge
        if not batch:
            idle = self.pipeline.idle(self._behind(lag))  # silence is news too: streams go stale
            if idle.events:
                self._make_durable(idle)
                self._count(idle)
                if self.on_events:
                    self.on_events(idle.events)
            if self.uncommitted:
                self.checkpoint()
            return None
        outcome = self.pipeline.process(batch, self._behind(lag))
        self._observe(batch)
        if self.silencer and outcome.events:
            with self.pipeline.lock:
                self.silencer.apply(outcome.events, self.pipeline.book)
        self._make_durable(outcome)
        self.uncommitted = True
        if time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()
        self._count(outcome)
        if self.on_events and outcome.events:
            self.on_events(outcome.events)
        return outcome

    def _take_over(self) -> None:
        """After a rebalance: forget what moved away, load the checkpoint of what arrived."""
        changes = getattr(self.source, "ownership_changes", None)
        if changes is None:
            return
        from linewatch.sources.kafka import owners

        settings = self.source.settings  # type: ignore[attr-defined]
        stations = {m.id: m.line for m in self.pipeline.config.machines.values()
                    if (p := self.pipeline.config.profiles.get(m.manufacturer)) and p.qc}
        for change, partitions in changes():
            machines, lines = owners(partitions, settings.raw_topic_prefix, settings.qc_topic,
                                     self.source.partition_count, stations)  # type: ignore[attr-defined]
            if change == "revoked":
                self.pipeline.release(machines, lines)
                log.info("handed over %d machine(s) and %d line(s)", len(machines), len(lines))
            elif self.state is not None:
                keys = [f"machine:{m}" for m in machines] + [f"line:{line}" for line in lines]
                self.pipeline.import_state(self.state.load(keys))
                log.info("took over %d machine(s) and %d line(s) from their checkpoints", len(machines), len(lines))

    def checkpoint(self) -> None:
        """Save what the detectors have learned, then commit the offsets that state corresponds to."""
        if self.state is not None:
            states = self.pipeline.export_state()
            delay = 0.5
            while True:
                try:
                    self.state.save(states)
                    break
                except Exception as exc:  # the database is away: keep the offsets uncommitted until it is back
                    self.pipeline.metrics.durable_write_failures.labels("checkpoint").inc()
                    if self.stop_requested.is_set():
                        raise
                    log.error("could not save a checkpoint (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)
            metrics = self.pipeline.metrics
            metrics.last_checkpoint = time.time()
            metrics.checkpoint_bytes.set(sum(len(v) for v in states.values()))
        self.source.commit()
        self.uncommitted = False
        self.last_checkpoint = time.monotonic()

    def _lag(self) -> dict[tuple[str, int], int]:
        """Unread messages per assigned partition (empty for sources without partitions), also
        published as linewatch_consumer_lag_messages."""
        lag_of = getattr(self.source, "lag", None)
        if lag_of is None:
            return {}
        lag = lag_of()
        gauge = self.pipeline.metrics.consumer_lag
        current = {(topic, str(partition)): n for (topic, partition), n in lag.items()}
        for labels in self._lag_labels - current.keys():  # partitions this worker no longer owns
            gauge.remove(*labels)
        for labels, n in current.items():
            gauge.labels(*labels).set(n)
        self._lag_labels = set(current)
        return lag

    def _behind(self, lag: dict[tuple[str, int], int]) -> frozenset[str]:
        """Machines whose partitions still hold messages this worker has not read."""
        if not lag:
            return frozenset()
        prefix = self.source.settings.raw_topic_prefix  # type: ignore[attr-defined]
        return frozenset(topic[len(prefix):] for (topic, _), n in lag.items() if n > 0 and topic.startswith(prefix))

    def _observe(self, batch: list[RawMessage]) -> None:
        """Latency from the source to scored, sampled per batch."""
        now_ms = time.time() * 1000
        observe = self.pipeline.metrics.latency.observe
        for m in batch[:: max(1, len(batch) // 100)]:  # a sample is enough for a histogram
            if m.timestamp_ms is not None:
                observe(max(0.0, now_ms - m.timestamp_ms) / 1000)

    def _make_durable(self, outcome: BatchOutcome) -> None:
        delay = 0.5
        while True:
            what = "store"
            try:
                self.store.save(outcome.events)
                what = "sinks"
                for sink in self.sinks:
                    sink.write(outcome.rejections, outcome.events)
                self.ready.set()
                return
            except Exception as exc:  # store or broker unavailable: hold the batch, retry, never skip it
                self.pipeline.metrics.durable_write_failures.labels(what).inc()
                if self.stop_requested.is_set():
                    raise
                log.error("could not make a batch durable (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                self.ready.clear()
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _count(self, outcome: BatchOutcome) -> None:
        s = self.stats
        s.batches += 1
        s.messages += outcome.messages
        s.readings += outcome.readings
        s.qc_results += outcome.qc_results
        s.rejected += len(outcome.rejections)
        s.skipped += outcome.skipped
        s.rejected_by_reason.update(r.reason for r in outcome.rejections)
        s.alerts_fired_by_kind.update(ev.alert.kind.value for ev in outcome.events if ev.type is AlertEventType.FIRED)
