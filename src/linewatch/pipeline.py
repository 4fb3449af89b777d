"""The one path every message takes: normalise, score, turn conditions into alert events.

The pipeline is pure computation over a batch; it writes nothing durable. The runner takes the
batch's outcome (rejections and alert events) to the store and the topics, and only then commits
the source's offsets, which is what makes processing at-least-once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from linewatch.alerts.lifecycle import AlertBook
from linewatch.config import PlantConfig
from linewatch.detect.anomaly import MachineModel, Verdict
from linewatch.detect.failure_rate import FailureRateMonitor, RateVerdict
from linewatch.domain import (AlertEvent, AlertEventType, AlertKind, AlertStatus, QcResult, RawMessage, Reading,
                              Rejection, Severity)
from linewatch.explain import anomaly_summary, failure_rate_summary
from linewatch.metrics import Metrics
from linewatch.normalize.normalizer import Normalizer

CRITICAL_Z = 6.0  # a sensor this many standard deviations out makes an anomaly critical


@dataclass
class BatchOutcome:
    """What one batch produced, to be made durable before its offsets are committed."""

    messages: int = 0
    readings: int = 0
    qc_results: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)


@dataclass
class MachineStatus:
    """What the API shows per machine."""

    machine: str
    line: str
    kind: str
    manufacturer: str
    last_reading_at: datetime | None = None
    readings: int = 0
    score: float | None = None
    threshold: float | None = None
    phase: str = "waiting"
    last_values: dict[str, float] = field(default_factory=dict)


@dataclass
class LineStatus:
    line: str
    units: int = 0
    failure_rate: float | None = None
    baseline: float | None = None
    upper_control_limit: float | None = None
    statistic: float = 0.0
    limit: float | None = None
    phase: str = "waiting"


class Pipeline:
    """Normalisation, per-machine anomaly models and per-line failure-rate monitors."""

    def __init__(self, config: PlantConfig, metrics: Metrics, book: AlertBook | None = None,
                 normalizer: Normalizer | None = None):
        self.config = config
        self.metrics = metrics
        self.normalizer = normalizer or Normalizer(config)
        self.book = book or AlertBook()
        settings = config.detection
        self.models = {m: MachineModel(m, settings.anomaly, seed=i + 1) for i, m in enumerate(sorted(config.machines))}
        self.monitors = {line: FailureRateMonitor(line, settings.failure_rate) for line in config.lines}
        self.anomaly_clear = timedelta(seconds=settings.anomaly.clear_after_seconds)
        self.lock = threading.Lock()  # the API reads status while the worker writes it
        self.machines = {m.id: MachineStatus(m.id, m.line, m.kind, m.manufacturer) for m in config.machines.values()}
        self.lines = {line: LineStatus(line) for line in config.lines}
        self._refresh_open_gauge()

    def process(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        started = time.perf_counter()
        out = BatchOutcome(messages=len(messages))
        with self.lock:
            for msg in messages:
                result = self.normalizer.normalize(msg)
                if isinstance(result, Reading):
                    out.readings += 1
                    self._reading(result, out)
                elif isinstance(result, QcResult):
                    out.qc_results += 1
                    self._qc(result, out)
                else:
                    out.rejections.append(result)
                    self.metrics.rejected.labels(result.reason).inc()
            if out.events:
                self._count_events(out.events)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(messages))
        return out

    # ------------------------------------------------------------ readings

    def _reading(self, reading: Reading, out: BatchOutcome) -> None:
        model = self.models[reading.machine]
        verdict = model.score_one(reading.values)
        status = self.machines[reading.machine]
        status.readings += 1
        status.last_reading_at = reading.ts
        status.score, status.threshold, status.phase = verdict.score, verdict.threshold, verdict.phase
        status.last_values = reading.values
        m = self.metrics
        m.readings.labels(reading.line, reading.machine).inc()
        m.anomaly_score.labels(reading.line, reading.machine).set(verdict.score)
        m.last_reading.labels(reading.line, reading.machine).set(reading.ts.timestamp())
        if verdict.threshold is not None:
            m.anomaly_threshold.labels(reading.line, reading.machine).set(verdict.threshold)
        if verdict.anomalous and verdict.outlier:
            out.events.append(self._anomaly_event(reading, verdict))
        elif verdict.phase == "monitoring" and not verdict.anomalous:
            ev = self.book.clear(AlertKind.ANOMALY, reading.line, reading.machine, None, reading.ts, self.anomaly_clear)
            if ev:
                out.events.append(ev)

    def _anomaly_event(self, reading: Reading, verdict: Verdict) -> AlertEvent:
        catalogue = self.config.catalogue.sensors
        top = verdict.contributions
        worst = abs(top[0].z) if top else 0.0
        severity = Severity.CRITICAL if worst >= CRITICAL_Z else Severity.WARNING
        details: dict[str, Any] = {
            "score": round(verdict.score, 4),
            "threshold": round(verdict.threshold or 0.0, 4),
            "sensors": [{"sensor": c.sensor, "value": round(c.value, 3), "unit": catalogue[c.sensor].unit,
                         "normal_low": round(c.normal_low, 3), "normal_high": round(c.normal_high, 3),
                         "z": round(c.z, 2)} for c in top[:5]],
        }
        summary = anomaly_summary(reading.machine, top, catalogue)
        return self.book.raise_(AlertKind.ANOMALY, reading.line, reading.machine, None, reading.ts, severity,
                                summary, details)

    # ------------------------------------------------------------ QC results

    def _qc(self, qc: QcResult, out: BatchOutcome) -> None:
        monitor = self.monitors[qc.line]
        v = monitor.observe(qc.passed, qc.ts, qc.unit_id)
        self.metrics.qc_results.labels(qc.line, "pass" if qc.passed else "fail").inc()
        self.metrics.failure_rate.labels(qc.line).set(v.rate)
        self.metrics.failure_rate_statistic.labels(qc.line).set(v.statistic)
        if v.baseline is not None:
            self.metrics.failure_rate_baseline.labels(qc.line).set(v.baseline)
        ls = self.lines[qc.line]
        ls.units, ls.failure_rate, ls.baseline, ls.statistic, ls.limit, ls.phase = (
            v.units, v.rate, v.baseline, v.statistic, v.limit, v.phase)
        ls.upper_control_limit = v.upper_control_limit
        if v.alarm:
            out.events.append(self._rate_event(qc, v))
        elif v.phase == "monitoring":
            key = (AlertKind.FAILURE_RATE, qc.line, None, None)
            if key in self.book.open:
                ev = self.book.resolve(key, qc.ts)
                if ev:
                    out.events.append(ev)

    def _rate_event(self, qc: QcResult, v: RateVerdict) -> AlertEvent:
        assert v.baseline is not None
        rate = v.rate_since if v.rate_since is not None else v.rate
        severity = Severity.CRITICAL if rate >= 3 * v.baseline else Severity.WARNING
        details = {"rate_since_change": None if v.rate_since is None else round(v.rate_since, 4),
                   "recent_rate": round(v.rate, 4), "baseline": round(v.baseline, 4),
                   "upper_control_limit": None if v.upper_control_limit is None else round(v.upper_control_limit, 4),
                   "cusum": round(v.statistic, 3), "cusum_limit": round(v.limit or 0.0, 3),
                   "since": v.since.isoformat() if v.since else None, "first_unit": v.first_unit,
                   "units": v.units}
        summary = failure_rate_summary(qc.line, rate, v.baseline, v.since, v.first_unit)
        return self.book.raise_(AlertKind.FAILURE_RATE, qc.line, None, None, qc.ts, severity, summary, details)

    # ------------------------------------------------------------ bookkeeping

    def _count_events(self, events: list[AlertEvent]) -> None:
        for ev in events:
            if ev.type is AlertEventType.FIRED:
                self.metrics.alerts_fired.labels(ev.alert.kind.value, ev.alert.severity.value).inc()
        self._refresh_open_gauge()

    def _refresh_open_gauge(self) -> None:
        counts: dict[tuple[str, str], int] = {(k.value, s.value): 0 for k in AlertKind for s in Severity}
        for a in self.book.open.values():
            if a.status is not AlertStatus.RESOLVED:
                counts[(a.kind.value, a.severity.value)] += 1
        for (kind, severity), n in counts.items():
            self.metrics.alerts_open.labels(kind, severity).set(n)

    def snapshot(self) -> tuple[list[MachineStatus], list[LineStatus], list[Any]]:
        """Copies of the live status for the API, taken under the lock."""
        from copy import copy

        with self.lock:
            return ([copy(s) for s in self.machines.values()], [copy(s) for s in self.lines.values()],
                    list(self.book.open.values()))
