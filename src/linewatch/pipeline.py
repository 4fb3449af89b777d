"""The one path every message takes: normalise, check data quality, score, turn conditions into alert events.

The pipeline is pure computation over a batch; it writes nothing durable. The runner takes the
batch's outcome (rejections and alert events) to the store and the topics, and only then commits
the source's offsets, which is what makes processing at-least-once.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, deque
import logging
import math
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from copy import copy
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, Union

import numpy as np

from linewatch.alerts.lifecycle import AlertBook
from linewatch.config import Machine, PlantConfig
from linewatch.detect.anomaly import Verdict
from linewatch.detect.failure_rate import SUBGROUP_UNITS, FailureRateMonitor, RateVerdict
from linewatch.detect.genealogy import MachineFailureRates
from linewatch.detect.models import AnomalyModel, make_model, model_class
from linewatch.detect.replayed import RecentResults
from linewatch.detect.rows import Part
from linewatch.detect.verdict import MONITORING, Verdicts
from linewatch.detect.versions import (ACTIVE, FIRST_CALIBRATION, MODEL_CHANGED, RECORDED_AT_UPGRADE, REJECTED,
                                      SENSORS_CHANGED, Lineage, ModelVersion, Recorded, implausible_bands,
                                      version_id)
from linewatch.detect.versions import NEW_NORMAL as VERSION_NEW_NORMAL
from linewatch.domain import (EPOCH, ONE_MS, Alert, AlertEvent, AlertEventType, AlertKind, AlertStatus, QcResult,
                              RawMessage, Reading, ReadingBlock, Rejection, Severity)
from linewatch.explain import anomaly_summary, failure_rate_summary, resolved_anomaly_summary
from linewatch.metrics import Metrics
from linewatch.normalize.aggregate import Aggregator
from linewatch.normalize.block import Survey, read_block, read_qc_block, survey
from linewatch.normalize.normalizer import REASONS, Normalizer
from linewatch.normalize.quality import DataQuality

log = logging.getLogger(__name__)
_Block = TypeVar("_Block")
RunKey = tuple[str, int, bytes | None]  # a run of messages in a batch: topic, partition, key

CRITICAL_Z = 6.0  # a sensor this many standard deviations out makes an anomaly critical
CLOCK, SCHEMA = "clock", "schema"  # data-quality alerts about a machine's clock and payload, not one sensor
# A Kafka worker judges one of its machines silent only after this long without its readings on the
# wall clock as well as stale_after_seconds of line time (partitions are read unevenly while catching up)
CATCH_UP_GRACE_SECONDS = 10.0
# a machine's run in a batch is read as one block from this many messages (shorter: one by one)
MIN_RUN = 8


@dataclass
class BatchOutcome:
    """What one batch produced, to be made durable before its offsets are committed."""

    messages: int = 0
    readings: int = 0
    qc_results: int = 0
    skipped: int = 0  # duplicates, out of order, late for aggregation: counted, not scored
    in_blocks: int = 0  # readings taken in blocks (``Pipeline._block``), the rest one by one
    rejections: list[Rejection] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    versions: list[ModelVersion] = field(default_factory=list)  # models that finished learning in this batch
    started_at: datetime | None = None  # wall clock (UTC) when the batch began: see AlertStore.save_versions


TREND_SECONDS = 30  # one sparkline point per this many seconds of reading time
TREND_POINTS = 120  # the last hour


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
    recipe: str | None = None  # the product/recipe of the last reading, when the machine reports one
    model_version: int = 0  # the version of its normal the model of that recipe is on (0: none yet)
    model_version_at: datetime | None = None  # line time that version finished learning
    # the last change of the sensors the model watches (a sensor newly mapped or no longer mapped), if any
    sensors_changed: dict[str, Any] | None = None
    last_arrival: float | None = None  # wall clock (monotonic) when this worker last read one of its readings
    # the last hour, one point per TREND_SECONDS: (reading time, score, threshold, sensor values), for sparklines
    trend: deque = field(default_factory=lambda: deque(maxlen=TREND_POINTS))


@dataclass
class Restored:
    """What loading checkpoints leaves for the caller to act on."""

    # per machine, how far the journal of people's actions was applied when its model was saved: a
    # "new normal" given after that must be applied again (``linewatch.alerts.sync.renew_since_checkpoint``)
    journal: dict[str, int] = field(default_factory=dict)
    # per (topic, partition), the offset the checkpoints had learned up to. A worker taking the partition
    # over reads on from there, or from the committed offset if later: a checkpoint can be saved and its
    # commit then refused by a rebalance, and QC results, unlike readings, carry nothing that would
    # recognise a replay. Where checkpoints share a partition, the earliest wins (nothing is skipped).
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class LineStatus:
    line: str
    units: int = 0
    failure_rate: float | None = None
    baseline: float | None = None
    upper_control_limit: float | None = None
    window_units: int = 0  # the recent units ``failure_rate`` is measured over
    statistic: float = 0.0
    limit: float | None = None
    phase: str = "waiting"


class Pipeline:
    """Normalisation, data quality, per-machine anomaly models and per-line failure-rate monitors."""

    def __init__(self, config: PlantConfig, metrics: Metrics, book: AlertBook | None = None,
                 normalizer: Normalizer | None = None, wall_clock: Any = time.monotonic, columnar: bool = True):
        self.config = config
        self.metrics = metrics
        self.columnar = columnar  # runs of a machine's messages read as blocks (False: every message alone)
        self.normalizer = normalizer or Normalizer(config)
        self.quality = DataQuality(config)
        self.book = book or AlertBook()
        settings = config.detection
        self.models: dict[str, AnomalyModel] = {}  # machines whose readings name no recipe
        # machine -> recipe -> model: a machine making several products has a normal for each
        self.recipe_models: dict[str, dict[str, AnomalyModel]] = {}
        self.aggregators = {name: spec.aggregate for name, spec in config.profiles.items() if spec.aggregate}
        self.machine_aggregators: dict[str, Aggregator] = {}
        self.monitors: dict[str, FailureRateMonitor] = {}  # made on a line's first QC result (owned lines only)
        self.qc_recent: dict[str, RecentResults] = {}  # per line, its recent QC results (a replay is recognised)
        # failure rate per machine, where unit/batch ids on readings link QC results to machines (per line)
        self.machine_rates: dict[str, MachineFailureRates] = {}
        self._per_machine_rates = settings.genealogy.per_machine
        self._model_type = model_class(settings.anomaly.model)
        self.anomaly_clear = timedelta(seconds=settings.anomaly.clear_after_seconds)
        self.anomaly_clear_readings = settings.anomaly.clear_after_readings
        self.dq_clear = timedelta(seconds=settings.data_quality.clear_after_seconds)
        self.stale_after = timedelta(seconds=settings.data_quality.stale_after_seconds)
        self.lock = threading.Lock()  # the API reads status while the worker writes it
        self.machines: dict[str, MachineStatus] = {}
        for m in config.machines.values():
            self._status(m)
        self.lines = {line: LineStatus(line) for line in config.lines}
        self.wall_clock = wall_clock
        metrics.initialise([(m.line, m.id) for m in config.machines.values()], REASONS)
        self.newest: tuple[datetime, float] | None = None  # (newest reading time, wall clock when it came)
        self._batch_wall = wall_clock()  # the wall clock when the batch at hand arrived
        # the machines whose partitions this worker holds (a Kafka worker, see ``own``); None: all of them
        self.owned: set[str] | None = None
        self._events_pending: list[AlertEvent] = []  # stale streams resolved while reading
        # this batch's readings per (machine, recipe), scored together
        self._to_score: dict[tuple[str, str | None], list[Reading | ReadingBlock]] = {}
        # metrics are updated once per batch, not per reading: a labelled update costs as much as normalising
        self._readings_in_batch: dict[str, int] = {}
        self._in_blocks_in_batch: dict[str, int] = {}
        self._qc_in_batch: dict[tuple[str, str], int] = {}
        self._unattributed_in_batch: dict[tuple[str, str], int] = {}  # (line, reason): QC results not linked
        # the next offset to read per (topic, partition), and the partition each machine's and line's
        # messages come from: a checkpoint records how far into its partition its state has learned
        self._position: dict[tuple[str, int], int] = {}
        self._machine_partition: dict[str, tuple[str, int]] = {}
        self._line_partition: dict[str, tuple[str, int]] = {}
        self._changed_machines: set[str] = set()  # learned something since the last checkpoint
        self._changed_lines: set[str] = set()
        # the store's latest version per (machine, recipe): where a model made afresh numbers on from
        # (the service and the runner fill it from ``AlertStore.latest_versions``, see ``versions_on_record``)
        self.version_floor: dict[tuple[str, str | None], int] = {}
        self.version_record: dict[tuple[str, str | None], Recorded] = {}  # and when and why it was learned
        self.refresh_open_gauge()

    # ------------------------------------------------------------ batches

    def process(self, messages: Sequence[RawMessage], pending: frozenset[str] = frozenset()) -> BatchOutcome:
        """``pending``: machines whose partitions still hold unread messages (never judged stale)."""
        started = time.perf_counter()
        out = BatchOutcome(messages=len(messages), started_at=datetime.now(timezone.utc))
        self._batch_wall = self.wall_clock()
        with self.lock:
            position = self._position
            # a machine's (or QC station's) run of messages in this batch: its topic, partition and key
            runs: dict[RunKey, list[RawMessage]] = {}
            for msg in messages:
                if msg.offset >= 0:  # from Kafka (in-process messages have no offsets)
                    position[(msg.topic, msg.partition)] = msg.offset + 1
                runs.setdefault((msg.topic, msg.partition, msg.key), []).append(msg)
            surveys = self._survey(runs) if self.columnar else {}
            taken: dict[RunKey, Taken] = {}  # see _take_run
            clock_problems: list[Rejection] = []
            for msg in messages:
                run_key = (msg.topic, msg.partition, msg.key)
                how = taken.get(run_key)
                if how is None:  # the run's first message
                    how = taken[run_key] = self._take_run(runs[run_key], out, surveys.get(run_key))
                if how is True:
                    continue  # done in its block
                if isinstance(how, _HandledRun):
                    self._handled(how)
                    continue
                self._message(msg, out, clock_problems, None if how is False else next(how))
            for rejection in clock_problems:  # dated by the newest reading of the batch, whatever the order read
                self._clock_problem(rejection, out)
            for (machine, recipe), readings in self._to_score.items():
                self._score(machine, recipe, readings, out)
            self._to_score.clear()
            self._flush_metrics()
            self._schema_drift(out)
            self._check_stale(out, pending)
            out.events = _compact(out.events)
            if out.events:
                self._count_events(out.events)
                self._alerts_changed(out.events)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(messages))
        return out

    def _message(self, msg: RawMessage, out: BatchOutcome, clock_problems: list[Rejection],
                 result: Reading | QcResult | Rejection | None = None) -> None:
        """One message (``result``: what normalising it gives, when its run was decoded at once)."""
        if result is None:
            result = self.normalizer.normalize(msg)
        if isinstance(result, Reading):
            out.readings += 1
            self._machine_partition[result.machine] = (msg.topic, msg.partition)
            self._reading(result, out)
        elif isinstance(result, QcResult):
            out.qc_results += 1
            self._line_partition[result.line] = (msg.topic, msg.partition)
            self._qc(result, out)
        else:
            out.rejections.append(result)
            self.metrics.rejected.labels(result.reason).inc()
            if result.reason == "future_timestamp" and result.machine:
                clock_problems.append(result)

    def _survey(self, runs: dict[RunKey, list[RawMessage]]) -> dict[RunKey, Survey]:
        """The runs of machines' messages that may be read as blocks, decoded: those that hold the
        readings of one machine that no other run of the batch holds."""
        qc_topic = self.normalizer.qc_topic
        surveys = {}
        for key, run in runs.items():
            if key[0] == qc_topic:
                continue
            found = self._read_block(survey, run)
            if found is None:  # a bug: nothing is known of this run's machines, so no blocks at all
                return {}
            surveys[key] = found
        held = Counter(m for found in surveys.values() for m in found.machines)
        return {key: found for key, found in surveys.items()
                if len(runs[key]) >= MIN_RUN and len(found.machines) == 1 and held[next(iter(found.machines))] == 1}

    def _take_run(self, run: list[RawMessage], out: BatchOutcome, surveyed: Survey | None) -> Taken:
        """Read a run at once if it can be. True: a machine's run was taken as one block, all of it
        done. A ``_HandledRun``: the same, but its readings carry ids, which the genealogy learns at
        each reading's place in the batch. An iterator: the run was decoded at once (a QC station's,
        or a machine's that is not plain enough for a block), its results to be applied one by one in
        arrival order. False: message by message."""
        if not self.columnar or len(run) < MIN_RUN:
            return False
        if run[0].topic == self.normalizer.qc_topic:
            results = self._read_block(read_qc_block, run)
            return False if results is None else iter(results)
        if surveyed is None:  # not one machine's, or its machine has readings in another run too
            return False
        block = self._read_block(lambda n, r: read_block(n, r, surveyed.payloads), run)
        if block is None:
            return False
        if not self._block(block, out):
            return iter(block.readings())  # what normalising each message gives
        if block.unit_ids is None and block.batch_ids is None:
            return True
        return _HandledRun(block)

    def _read_block(self, reader: Callable[[Normalizer, list[RawMessage]], _Block | None],
                    run: list[RawMessage]) -> _Block | None:
        try:
            return reader(self.normalizer, run)
        except Exception:  # a bug must not stop the line's monitoring: the run goes message by message
            log.exception("reading a run of %d messages from %s at once failed; reading them one by one",
                          len(run), run[0].topic)
            return None

    def idle(self, pending: frozenset[str] = frozenset()) -> BatchOutcome:
        """Nothing arrived: time still passes on the line, so silent machines become stale."""
        out = BatchOutcome()
        with self.lock:
            self._check_stale(out, pending)
            if out.events:
                self._count_events(out.events)
                self._alerts_changed(out.events)
        return out

    def _alerts_changed(self, events: list[AlertEvent]) -> None:
        """An alert that fired or resolved belongs in the next checkpoint of its owner, even when no
        reading arrived for it (a stream gone stale, a clock rejected): its open alerts travel there."""
        for ev in events:
            if ev.alert.kind is AlertKind.FAILURE_RATE:
                self._changed_lines.add(ev.alert.line)
            elif ev.alert.machine is not None:
                self._changed_machines.add(ev.alert.machine)

    # ------------------------------------------------------------ readings

    def _reading(self, reading: Reading, out: BatchOutcome) -> None:
        machine = self.normalizer.machines[reading.machine]
        self._readings_in_batch[reading.machine] = self._readings_in_batch.get(reading.machine, 0) + 1
        # genealogy before aggregation: a folded reading keeps only its first reading's ids
        if self._per_machine_rates and (reading.unit_id is not None or reading.batch_id is not None):
            self._machine_rates(reading.line).record(reading)
            self._changed_lines.add(reading.line)
        self._changed_machines.add(reading.machine)
        if machine.manufacturer in self.aggregators:
            agg = self.machine_aggregators.get(machine.id)
            if agg is None:
                agg = self.machine_aggregators[machine.id] = Aggregator(self.aggregators[machine.manufacturer])
            late = agg.late
            folded = agg.add(reading)
            if agg.late > late:
                self._skip("late", out)
            if folded is None:
                return
            reading = folded
        skip = self.quality.order(reading, machine)
        if skip:
            self._skip(skip, out)
            return
        self._seen(reading, machine)
        problems, fine = self.quality.check(reading, machine)
        for p in problems:
            self.metrics.data_quality.labels(reading.line, reading.machine, p.check).inc()
            out.events.append(self.book.raise_(AlertKind.DATA_QUALITY, reading.line, reading.machine, p.sensor,
                                               reading.ts, Severity.WARNING, p.summary,
                                               {"check": p.check, "sensor": p.sensor, "value": p.value}))
        out.events += self.book.clear_each(AlertKind.DATA_QUALITY, reading.line, reading.machine,
                                           (*fine, CLOCK, SCHEMA), reading.ts, self.dq_clear)
        if reading.values:
            self._to_score.setdefault((reading.machine, reading.recipe), []).append(reading)

    def _block(self, block: ReadingBlock, out: BatchOutcome) -> bool:
        """A run of one machine's readings at once: what ``_reading`` does to each, on columns, but
        the genealogy (``_handled``, at each reading's place in the batch).

        Taken only when every reading is in order and passes every data-quality check, and no
        data-quality alert of the machine is open (a stale-stream alert is resolved, as by any
        reading); otherwise (and for machines whose readings are aggregated) nothing is done and
        False returned: the readings go one by one. Either way the outcome is the same
        (``tests/test_pipeline_blocks.py``).
        """
        n = len(block)
        machine = self.normalizer.machines[block.machine]
        kept = None if machine.manufacturer in self.aggregators else self.quality.clean_run(block, machine)
        if kept is None or any(self.book.is_open(AlertKind.DATA_QUALITY, block.line, block.machine, sensor)
                               for sensor in (*self.quality.expected(machine), CLOCK, SCHEMA)):
            return False
        out.readings += n
        self._machine_partition[block.machine] = (block.topic, block.partition)
        self.quality.keep(machine, kept)
        out.in_blocks += n
        self._in_blocks_in_batch[block.machine] = self._in_blocks_in_batch.get(block.machine, 0) + n
        self._readings_in_batch[block.machine] = self._readings_in_batch.get(block.machine, 0) + n
        self._changed_machines.add(block.machine)
        status = self._status(machine)
        last = block.ts(n - 1)
        status.readings += n
        status.last_reading_at = last
        status.last_values = dict(zip(block.sensors, block.values[n - 1].tolist()))
        status.last_arrival = self._batch_wall
        if self.newest is None or last > self.newest[0]:
            self.newest = (last, self._batch_wall)
        self._events_pending += self.book.end(AlertKind.STALE_STREAM, block.line, block.machine, None, block.ts(0))
        self._to_score.setdefault((block.machine, block.recipe), []).append(block)
        return True

    def _handled(self, run: _HandledRun) -> None:
        """The genealogy learns that the run's next reading's machine handled its unit or batch, at
        that reading's place among the batch's QC results (as ``_reading`` would)."""
        block, i = run.block, run.next
        run.next += 1
        unit = None if block.unit_ids is None else block.unit_ids[i]
        batch = None if block.batch_ids is None else block.batch_ids[i]
        if self._per_machine_rates and (unit is not None or batch is not None):
            self._machine_rates(block.line).genealogy.touch(block.machine, unit, batch)
            self._changed_lines.add(block.line)

    def _model(self, machine: str, recipe: str | None) -> AnomalyModel:
        """The machine's model (for this recipe, when its readings name one); a new one warms up."""
        models = self.models if recipe is None else self.recipe_models.setdefault(machine, {})
        key = machine if recipe is None else recipe
        model = models.get(key)
        if model is None:
            model = models[key] = make_model(machine, self.config.detection.anomaly)
        return model

    def _score(self, machine: str, recipe: str | None, items: list[Reading | ReadingBlock], out: BatchOutcome) -> None:
        """Score a machine's readings of this batch at once, then raise or clear its anomaly alert
        reading by reading, in order. Where the quality gate rejects a relearned normal part-way
        through the batch, the model it puts back in use scores the rest of the batch."""
        readings: _Readings | None = _Readings(items)
        while readings is not None:
            # a run ends where the model finishes learning or its shadow run ends, so what is recorded
            # there (its bands, threshold, state; the gate's decision) is the same however batched
            model = self._model(machine, recipe)
            cap = _until_boundary(model, self._lineage(machine, recipe, model))
            rest = None
            if cap is not None and cap < len(readings):
                readings, rest = readings.until(cap), readings.since(cap)
            later = self._score_run(machine, recipe, readings, out)
            readings = later if later is not None else rest

    def _score_run(self, machine: str, recipe: str | None, readings: "_Readings",
                   out: BatchOutcome) -> "_Readings | None":
        """Score ``readings`` with the model in use; the readings still to score if the quality gate put
        another model in use part-way through them."""
        model = self._model(machine, recipe)
        lineage = self._lineage(machine, recipe, model)
        learning = model.phase != "monitoring"
        verdicts = model.score_parts(readings.parts())
        quiet_until, rest = 0, None  # readings before quiet_until raise nothing: a candidate in shadow
        if learning or lineage.version == 0 or lineage.in_shadow:
            quiet_until, rest = self._learned(machine, recipe, model, lineage, readings, verdicts, learning, out)
        end = len(readings) if rest is None else rest
        last = verdicts[end - 1]
        status = self.machines[machine]
        status.score, status.threshold = last.score, last.threshold
        status.phase = "shadow" if lineage.in_shadow else last.phase
        # the first reading of each TREND_SECONDS of reading time: the same points whichever way the
        # readings were read (in blocks or one by one)
        after = status.trend[-1][0] if status.trend else None
        for i in readings.first_of_each(TREND_SECONDS * 1000, after):
            if i >= end:
                break
            reading = readings[i]
            status.trend.append((reading.ts, float(verdicts.score[i]), verdicts[i].threshold, dict(reading.values)))
        status.recipe = recipe
        line = status.line
        m = self.metrics
        m.anomaly_score.labels(line, machine).set(last.score)
        if last.threshold is not None:
            m.anomaly_threshold.labels(line, machine).set(last.threshold)
        raise_, quiet, disturbed = verdicts.alerting()
        lineage = self._lineage(machine, recipe, self._model(machine, recipe))  # the gate may have put another back
        if status.model_version != lineage.version:
            self.metrics.model_version.labels(status.line, machine).set(lineage.version)
        status.model_version, status.model_version_at = lineage.version, lineage.made_at
        if quiet_until or rest is not None:
            live = np.zeros(len(readings), dtype=bool)
            live[quiet_until:end] = True
            raise_, quiet, disturbed = raise_ & live, quiet & live, disturbed & live
        key = (AlertKind.ANOMALY, line, machine, None)
        if not raise_.any() and not self.book.is_open(*key):
            return None if rest is None else readings.since(rest)
        for i in np.flatnonzero(raise_ | quiet | disturbed).tolist():
            reading = readings[i]
            if raise_[i]:
                out.events.append(self._anomaly_event(reading, verdicts[i], lineage.version))
            elif disturbed[i]:
                self.book.disturbed(key)
            elif self.book.is_open(*key):
                ev = self.book.clear(AlertKind.ANOMALY, line, machine, None, reading.ts, self.anomaly_clear,
                                     self.anomaly_clear_readings)
                if ev:
                    details = ev.alert.details
                    peak = (details.get("peak") or {}).get("sensors") or details.get("sensors") or []
                    ev.alert.summary = resolved_anomaly_summary(machine, peak, self.config.catalogue.sensors)
                    out.events.append(ev)
        return None if rest is None else readings.since(rest)

    def _seen(self, reading: Reading, machine: Machine) -> None:
        status = self._status(machine)
        status.readings += 1
        status.last_reading_at = reading.ts
        status.last_values = reading.values
        status.last_arrival = self._batch_wall
        if self.newest is None or reading.ts > self.newest[0]:
            self.newest = (reading.ts, self._batch_wall)
        self._events_pending += self.book.end(AlertKind.STALE_STREAM, reading.line, reading.machine, None,
                                              reading.ts)

    def versions_on_record(self, records: dict[tuple[str, str | None], Recorded]) -> None:
        """The store's newest versions (``AlertStore.latest_versions``): models made afresh number on from
        them, unless they learn one of them again."""
        with self.lock:
            for key, rec in records.items():
                if rec.version >= self.version_floor.get(key, 0):
                    self.version_floor[key] = rec.version
                    self.version_record[key] = rec

    def _lineage(self, machine: str, recipe: str | None, model: AnomalyModel) -> Lineage:
        """Which version of its normal the model is on. A model made afresh (or restored from a checkpoint
        written before versions were recorded) numbers on from the store's latest version."""
        lineage = getattr(model, "lineage", None)
        if lineage is None:
            floor = self.version_floor.get((machine, recipe), 0)
            lineage = Lineage(version=floor, highest=floor, reason=MODEL_CHANGED if floor else FIRST_CALIBRATION)
            model.lineage = lineage  # type: ignore[attr-defined]  # travels in the model's checkpoint
        return lineage

    def _learned(self, machine: str, recipe: str | None, model: AnomalyModel, lineage: Lineage,
                 readings: "_Readings", verdicts: Verdicts, learning: bool,
                 out: BatchOutcome) -> tuple[int, int | None]:
        """Count what a learning model learned from; once it monitors, record what it learned as its next
        version (a model that monitored before versions were recorded gets one the first time it scores).

        A normal relearned while another was in use (a person's "new normal") first runs in shadow on
        the next ``shadow_readings`` readings, raising nothing, and goes live only if the quality gate
        passes it (``_decide``). Returns (readings before this index raise nothing, the index from which
        the model put back in use must score the rest, or None)."""
        n = len(readings)
        if learning and lineage.learning_since is None:
            lineage.learning_since = readings[0].ts
        if learning:
            if model.phase != "monitoring":
                lineage.readings_since += n
                return 0, None
            # the readings it learned from end where its verdicts start to monitor (or with the batch, when
            # the batch's last reading completed the calibration)
            monitoring = np.flatnonzero(verdicts.phase == MONITORING)
            learned = int(monitoring[0]) if len(monitoring) else n
            learned_what = {"made_at": readings[max(learned - 1, 0)].ts, "learned_from": lineage.learning_since,
                            "readings": lineage.readings_since + learned, "reason": lineage.reason,
                            "made_by": lineage.by, "note": lineage.note}
            shadow = self.config.detection.anomaly.shadow_readings
            if lineage.previous is None or shadow == 0:  # a first normal, or no gate: live at once
                self._record(machine, recipe, model, lineage, learned_what, out)
                return 0, None
            lineage.candidate, lineage.shadow_left = learned_what, shadow
            lineage.shadow_readings = lineage.shadow_alarms = 0
            start = learned
        elif lineage.in_shadow:
            start = 0
        else:
            lineage.relearn(RECORDED_AT_UPGRADE)
            self._record(machine, recipe, model, lineage, {
                "made_at": readings[0].ts, "learned_from": None, "readings": getattr(model, "seen", 0),
                "reason": RECORDED_AT_UPGRADE, "made_by": None, "note": None}, out)
            return 0, None
        # the candidate's trial: the readings [start, end) it scores in shadow, raising nothing
        end = min(n, start + lineage.shadow_left)
        raise_, _, _ = verdicts.alerting()
        lineage.shadow_alarms += int(raise_[start:end].sum())
        lineage.shadow_readings += end - start
        lineage.shadow_left -= end - start
        if lineage.in_shadow:
            return n, None
        promoted = self._decide(machine, recipe, model, lineage, readings[end - 1].ts, out)
        return end, None if promoted or end == n else end

    def _decide(self, machine: str, recipe: str | None, model: AnomalyModel, lineage: Lineage, at: datetime,
                out: BatchOutcome) -> bool:
        """The quality gate, once the candidate has run its trial: live if it would have raised an alert on
        at most ``shadow_max_alarm_share`` of the trial's readings and every sensor's normal band is
        plausible for the catalogue; otherwise it is kept as a rejected version, the model that was in
        use before it goes back in use, and an alert says why. Whether it passed."""
        settings = self.config.detection.anomaly
        share = lineage.shadow_alarms / max(lineage.shadow_readings, 1)
        bands = {s: [round(lo, 4), round(hi, 4)] for s, (lo, hi) in model.normal_range().items()}
        implausible = implausible_bands(bands, {s: (spec.range[0], spec.range[1])
                                                for s, spec in self.config.catalogue.sensors.items()})
        passed = share <= settings.shadow_max_alarm_share and not implausible
        gate = {"readings": lineage.shadow_readings, "alarms": lineage.shadow_alarms, "share": round(share, 4),
                "bound": settings.shadow_max_alarm_share, "implausible": implausible,
                "decision": "promoted" if passed else "rejected"}
        learned_what, previous = lineage.candidate or {}, lineage.previous
        line = self.machines[machine].line
        key = (AlertKind.MODEL, line, machine, None)
        if passed:
            self._record(machine, recipe, model, lineage, learned_what, out, gate=gate)
            out.events += self.book.end(*key, at)  # an earlier candidate's rejection is answered now
            return True
        alarms, tried = lineage.shadow_alarms, lineage.shadow_readings
        number = self._record(machine, recipe, model, lineage, learned_what, out, gate=gate, status=REJECTED)
        assert previous is not None
        restored = pickle.loads(previous)  # the model in use before, as it was when the relearning began
        back = self._lineage(machine, recipe, restored)
        back.highest = max(back.highest, number)
        if recipe is None:
            self.models[machine] = restored
        else:
            self.recipe_models.setdefault(machine, {})[recipe] = restored
        why = ([f"it would have raised an alert on {alarms} of the {tried} "
                f"readings after it learned ({share:.1%}; at most {settings.shadow_max_alarm_share:.1%} allowed)"]
               if share > settings.shadow_max_alarm_share else []) + (
               [f"its normal band leaves the plausible range: {'; '.join(implausible)}"] if implausible else [])
        stays = f"version {back.version} stays in use" if back.version else "the model in use before stays in use"
        summary = f"{machine}: the relearned normal (version {number}) was not put in use: {' and '.join(why)}; {stays}"
        out.events.append(self.book.raise_(AlertKind.MODEL, line, machine, None, at, Severity.WARNING, summary,
                                           {"rejected_version": number, "model_version": back.version,
                                            "recipe": recipe, "gate": gate}))
        log.warning(summary)
        return False

    def _record(self, machine: str, recipe: str | None, model: AnomalyModel, lineage: Lineage,
                learned_what: dict[str, Any], out: BatchOutcome, gate: dict[str, Any] | None = None,
                status: str = ACTIVE) -> int:
        """Record what the model learned as its next version; its number."""
        known = self.version_record.get((machine, recipe))
        if (known is not None and lineage.version == lineage.highest == known.version
                and known.made_at == learned_what["made_at"]):
            # a model made afresh learned what the newest version on record learned, from the same readings:
            # the worker that learned it lost its state before a checkpoint and the partition was read
            # again (a rebalance, a kill -9). The same version, with the same id, not a new one
            lineage.version = lineage.highest = known.version - 1
            learned_what["reason"] = known.reason
        number = lineage.learned(learned_what["made_at"])
        floor = self.version_floor.get((machine, recipe), 0)
        if lineage.highest >= floor:  # a model made afresh numbers on
            self.version_floor[(machine, recipe)] = lineage.highest
            self.version_record[(machine, recipe)] = Recorded(number, learned_what["made_at"], learned_what["reason"])
        settings = self.config.detection.anomaly
        own = getattr(model, "settings", None)  # what the model was learned with (an old one's may differ)
        if isinstance(own, type(settings)):
            try:
                recorded = own.model_dump(mode="json", exclude={"mewma"})
            except AttributeError:  # settings pickled before a field existed
                recorded = settings.model_dump(mode="json", exclude={"mewma"})
        else:
            recorded = settings.model_dump(mode="json", exclude={"mewma"})
        knobs = getattr(model, "mewma", None)
        out.versions.append(ModelVersion(
            id=version_id(machine, recipe, number, learned_what["made_at"]), machine=machine,
            line=self.machines[machine].line, recipe=recipe, version=number, kind=settings.model,
            settings={**recorded, "model": settings.model,
                      **({"mewma": knobs.model_dump(mode="json")} if knobs is not None else {})},
            # the MEWMA's limit on its EWMA T², Half-Space Trees' on its tree score
            threshold=_finite(getattr(model, "threshold", None) if hasattr(model, "threshold")
                              else getattr(model, "tree_threshold", None)),
            normal_ranges={s: [round(lo, 4), round(hi, 4)] for s, (lo, hi) in model.normal_range().items()},
            calibration=model.calibration_summary(), gate=gate, status=status,
            # a rejected candidate is kept as a record: the model it would have replaced stays in use
            state=pickle.dumps(model, protocol=5) if status == ACTIVE else b"", **learned_what))
        log.info("%s%s: model version %d learned (%s) from %d readings%s", machine, f" ({recipe})" if recipe else "",
                 number, learned_what["reason"].replace("_", " "), learned_what["readings"],
                 "" if gate is None else f", {gate['decision']} by the quality gate")
        return number

    def _anomaly_event(self, reading: Reading, verdict: Verdict, version: int) -> AlertEvent:
        catalogue = self.config.catalogue.sensors
        top = verdict.contributions
        worst = abs(top[0].z) if top else 0.0
        severity = Severity.CRITICAL if worst >= CRITICAL_Z else Severity.WARNING
        details: dict[str, Any] = {
            "score": round(verdict.score, 4),
            "recipe": reading.recipe,
            "threshold": round(verdict.threshold or 0.0, 4),
            "model_version": version,  # the version of the machine's normal that raised it (GET .../models)
            "sensors": [{"sensor": c.sensor, "value": round(c.value, 3), "unit": catalogue[c.sensor].unit,
                         "normal_low": round(c.normal_low, 3), "normal_high": round(c.normal_high, 3),
                         "z": round(c.z, 2)} for c in top[:5]],
        }
        # the episode's worst reading so far, for the sentence once it is over
        now = {"score": details["score"], "at": reading.ts.isoformat(), "sensors": details["sensors"][:3]}
        open_ = self.book.open_for(AlertKind.ANOMALY, reading.line, reading.machine)
        peak = open_.details.get("peak") if open_ is not None else None
        details["peak"] = now if peak is None or now["score"] >= peak["score"] else peak
        summary = anomaly_summary(reading.machine, top, catalogue)
        return self.book.raise_(AlertKind.ANOMALY, reading.line, reading.machine, None, reading.ts, severity,
                                summary, details)

    def _skip(self, reason: str, out: BatchOutcome) -> None:
        out.skipped += 1
        self.metrics.skipped.labels(reason).inc()

    # ------------------------------------------------------------ data quality of whole machines

    def _clock_problem(self, rejection: Rejection, out: BatchOutcome) -> None:
        machine = self.normalizer.machines.get(rejection.machine or "")
        if machine is None:
            return
        ts = self.newest[0] if self.newest else None
        if ts is None:
            return
        self.metrics.data_quality.labels(machine.line, machine.id, "clock").inc()
        out.events.append(self.book.raise_(AlertKind.DATA_QUALITY, machine.line, machine.id, CLOCK, ts,
                                           Severity.WARNING, f"{machine.id}: {rejection.detail}",
                                           {"check": "clock", "detail": rejection.detail}))

    def _schema_drift(self, out: BatchOutcome) -> None:
        drifts, self.normalizer.schema_drift = self.normalizer.schema_drift, []
        for d in drifts:
            ts = self.newest[0] if self.newest else None
            if ts is None:
                continue
            self.metrics.data_quality.labels(d.line, d.machine, "schema").inc()
            fields = ", ".join(d.fields[:8]) + (" …" if len(d.fields) > 8 else "")
            out.events.append(self.book.raise_(
                AlertKind.DATA_QUALITY, d.line, d.machine, SCHEMA, ts, Severity.WARNING,
                f"{d.machine} now sends field(s) {fields} that the {d.manufacturer} profile does not map "
                "(readings still accepted; extend the profile to use them)",
                {"check": "schema", "new_fields": list(d.fields), "manufacturer": d.manufacturer}))

    def _check_stale(self, out: BatchOutcome, pending: frozenset[str] = frozenset()) -> None:
        """Stale: silent for ``stale_after`` on the line's clock. A machine whose partition still holds
        unread messages is not silent, only behind: a worker catching up reads partitions unevenly."""
        out.events.extend(self._events_pending)
        self._events_pending.clear()
        if self.newest is None:
            return
        newest, newest_wall = self.newest
        wall = self.wall_clock()
        line_now = newest + timedelta(seconds=max(0.0, wall - newest_wall))
        for st in self.machines.values():
            if st.last_reading_at is None or line_now - st.last_reading_at <= self.stale_after:
                continue
            if self.owned is not None:  # a Kafka worker, one of a group
                if st.machine not in self.owned:
                    continue  # another worker reads it: only its owner can tell it has gone silent
                if st.last_arrival is not None and wall - st.last_arrival < CATCH_UP_GRACE_SECONDS:
                    # catching up, the consumer fetches partitions in uneven chunks: one machine's line
                    # time runs ahead of another's for a few seconds, which is not the other's silence
                    continue
            if st.machine in pending:
                continue
            if self.book.is_open(AlertKind.STALE_STREAM, st.line, st.machine):
                continue
            silent = (line_now - st.last_reading_at).total_seconds()
            out.events.append(self.book.raise_(
                AlertKind.STALE_STREAM, st.line, st.machine, None, line_now, Severity.WARNING,
                f"{st.machine}: no readings for {silent:.0f} s (last at {st.last_reading_at:%H:%M:%S} UTC)",
                {"last_reading_at": st.last_reading_at.isoformat(), "stale_after_seconds": self.stale_after.total_seconds()}))

    # ------------------------------------------------------------ QC results

    def _qc(self, qc: QcResult, out: BatchOutcome) -> None:
        recent = self.qc_recent.get(qc.line)
        if recent is None:
            recent = self.qc_recent[qc.line] = RecentResults()
        if recent.seen_before(qc):  # a re-sent or replayed result: counted once, never learned twice
            self._changed_lines.add(qc.line)
            self.metrics.qc_replayed.labels(qc.line).inc()
            return
        monitor = self.monitors.get(qc.line)
        if monitor is None:
            monitor = self.monitors[qc.line] = FailureRateMonitor(qc.line, self.config.detection.failure_rate)
            self.lines.setdefault(qc.line, LineStatus(qc.line))
        v = monitor.observe(qc.passed, qc.ts, qc.unit_id)
        self._changed_lines.add(qc.line)
        outcome = (qc.line, "pass" if qc.passed else "fail")
        self._qc_in_batch[outcome] = self._qc_in_batch.get(outcome, 0) + 1
        ls = self.lines[qc.line]
        ls.units, ls.failure_rate, ls.baseline, ls.statistic, ls.limit, ls.phase = (
            v.units, v.rate, v.baseline, v.statistic, v.limit, v.phase)
        ls.upper_control_limit = v.upper_control_limit
        ls.window_units = v.window
        if v.alarm:
            out.events.append(self._rate_event(qc, v))
        elif v.phase == "monitoring":
            out.events += self.book.end(AlertKind.FAILURE_RATE, qc.line, None, None, qc.ts)
        if self._per_machine_rates:
            rates = self._machine_rates(qc.line)
            verdicts = rates.observe(qc)
            if rates.last_unattributed is not None:
                key = (qc.line, rates.last_unattributed)
                self._unattributed_in_batch[key] = self._unattributed_in_batch.get(key, 0) + 1
            for machine, mv in verdicts:
                if mv.alarm:
                    out.events.append(self._rate_event(qc, mv, machine))
                elif mv.phase == "monitoring":
                    out.events += self.book.end(AlertKind.FAILURE_RATE, qc.line, machine, None, qc.ts)

    def _machine_rates(self, line: str) -> MachineFailureRates:
        rates = self.machine_rates.get(line)
        if rates is None:
            detection = self.config.detection
            rates = self.machine_rates[line] = MachineFailureRates(line, detection.genealogy, detection.failure_rate)
        return rates

    def _rate_event(self, qc: QcResult, v: RateVerdict, machine: str | None = None) -> AlertEvent:
        assert v.baseline is not None
        rate = v.rate_since if v.rate_since is not None else v.rate
        units = v.units_since if v.rate_since is not None else v.window  # what ``rate`` was measured over
        severity = Severity.CRITICAL if rate >= 3 * v.baseline else Severity.WARNING
        details = {"rate_since_change": None if v.rate_since is None else round(v.rate_since, 4),
                   "recent_rate": round(v.rate, 4), "baseline": round(v.baseline, 4),
                   "upper_control_limit": None if v.upper_control_limit is None else round(v.upper_control_limit, 4),
                   "cusum": round(v.statistic, 3), "cusum_limit": round(v.limit or 0.0, 3),
                   "since": v.since.isoformat() if v.since else None, "first_unit": v.first_unit,
                   "detector": v.detector,
                   "units": v.units, "units_since_change": v.units_since, "window_units": v.window}
        where = qc.line
        if machine is not None:  # per machine, through the genealogy
            details["machine"] = machine
            details["share_of_line_results"] = round(self.machine_rates[qc.line].share(machine), 3)
            where = f"{machine} ({qc.line})"
        summary = failure_rate_summary(where, rate, v.baseline, v.since if v.rate_since is not None else None,
                                       v.first_unit, units)
        return self.book.raise_(AlertKind.FAILURE_RATE, qc.line, machine, None, qc.ts, severity, summary, details)

    # ------------------------------------------------------------ bookkeeping

    def _status(self, machine: Machine) -> MachineStatus:
        st = self.machines.get(machine.id)
        if st is None:
            st = self.machines[machine.id] = MachineStatus(machine.id, machine.line, machine.kind, machine.manufacturer)
        return st

    def _count_events(self, events: list[AlertEvent]) -> None:
        for ev in events:
            if ev.type is AlertEventType.FIRED:
                self.metrics.alerts_fired.labels(ev.alert.kind.value, ev.alert.severity.value).inc()
        self.refresh_open_gauge()

    def _flush_metrics(self) -> None:
        m = self.metrics
        for machine, n in self._readings_in_batch.items():
            status = self.machines[machine]
            m.readings.labels(status.line, machine).inc(n)
            if status.last_reading_at is not None:
                m.last_reading.labels(status.line, machine).set(status.last_reading_at.timestamp())
        for machine, n in self._in_blocks_in_batch.items():
            m.readings_in_blocks.labels(self.machines[machine].line, machine).inc(n)
        for (line, outcome), n in self._qc_in_batch.items():
            m.qc_results.labels(line, outcome).inc(n)
            ls = self.lines[line]
            m.failure_rate.labels(line).set(ls.failure_rate or 0.0)
            m.failure_rate_statistic.labels(line).set(ls.statistic)
            for gauge, value in ((m.failure_rate_baseline, ls.baseline), (m.failure_rate_cusum_limit, ls.limit),
                                 (m.failure_rate_limit, ls.upper_control_limit)):
                if value is not None:
                    gauge.labels(line).set(value)
        for (line, reason), n in self._unattributed_in_batch.items():
            m.qc_unattributed.labels(line, reason).inc(n)
        self._unattributed_in_batch.clear()
        self._readings_in_batch.clear()
        self._in_blocks_in_batch.clear()
        self._qc_in_batch.clear()

    def refresh_open_gauge(self) -> None:
        counts: dict[tuple[str, str], int] = {(k.value, s.value): 0 for k in AlertKind for s in Severity}
        for a in self.book.open.values():
            if a.status is not AlertStatus.RESOLVED:
                counts[(a.kind.value, a.severity.value)] += 1
        for (kind, severity), n in counts.items():
            self.metrics.alerts_open.labels(kind, severity).set(n)

    def new_normal(self, machine: str, by: str | None = None, note: str | None = None) -> bool:
        """Operator feedback: relearn this machine's normal behaviour from now on (see MachineModel);
        the version it learns records who said so (``by``) and why (``note``)."""
        with self.lock:
            status = self.machines.get(machine)
            recipe = status.recipe if status else None
            model = self.models.get(machine) if recipe is None else self.recipe_models.get(machine, {}).get(recipe)
            if model is None:
                return False
            lineage = self._lineage(machine, recipe, model)
            if lineage.previous is None and model.phase == "monitoring":
                # the model in use, kept for the quality gate: put back if the relearned normal fails it
                model.lineage = replace(lineage, previous=None, candidate=None)  # type: ignore[attr-defined]
                kept = pickle.dumps(model, protocol=5)
                model.lineage = lineage  # type: ignore[attr-defined]
                lineage.previous = kept
            lineage.relearn(VERSION_NEW_NORMAL, by, note)
            model.start_new_normal()  # the recipe being made now; other recipes keep their normal
            self._answer_model_alert(machine)
            self._changed_machines.add(machine)
            self.book.drop((AlertKind.ANOMALY, self.machines[machine].line, machine, None))
            self.machines[machine].phase = model.phase
            self.refresh_open_gauge()
            return True

    def _answer_model_alert(self, machine: str) -> None:
        """A person acted on the machine's model (a new normal, a rollback): the quality gate's open
        alert about a rejected candidate is answered; it resolves with the next batch's events."""
        status = self.machines[machine]
        ev = self.book.resolve((AlertKind.MODEL, status.line, machine, None),
                               status.last_reading_at or datetime.now(timezone.utc))
        if ev is not None:
            self._events_pending.append(ev)

    def activate(self, version: ModelVersion, highest: int) -> bool:
        """A person put ``version`` back in use (a rollback): the machine's model for that recipe becomes
        the one stored with it, and monitors at once. A no-op (False) where another worker owns the
        machine. ``highest``: the machine and recipe's highest version number, where the next version
        learned numbers on from."""
        with self.lock:
            machine, recipe = version.machine, version.recipe
            # like a new normal: the worker that holds the machine's models acts (a worker taking the
            # machine over has just loaded them when it applies the journal since their checkpoint)
            if machine not in self.machines or (machine not in self.models and machine not in self.recipe_models):
                return False
            model = pickle.loads(version.state)  # written by linewatch into its own database
            if not isinstance(model, self._model_type):
                log.warning("%s: version %d is a %s model, the plant runs %s: not activated", machine,
                            version.version, type(model).__name__, self._model_type.__name__)
                return False
            watched = self.watched_sensors(machine)
            if watched is not None and model.sensors is not None and set(model.sensors) != watched:
                log.warning("%s: version %d watched %s, the profile maps %s now: not activated", machine,
                            version.version, sorted(model.sensors), sorted(watched))
                return False
            current = self._current_model(machine, recipe) if recipe is None else (
                self.recipe_models.get(machine, {}).get(recipe))
            was = getattr(current, "lineage", None)
            lineage = self._lineage(machine, recipe, model)
            lineage.version, lineage.made_at = version.version, version.made_at
            lineage.highest = max(highest, lineage.highest, was.highest if was is not None else 0)
            if recipe is None:
                self.models[machine] = model
            else:
                self.recipe_models.setdefault(machine, {})[recipe] = model
            status = self.machines[machine]
            if status.recipe == recipe:
                status.phase, status.model_version, status.model_version_at = model.phase, version.version, version.made_at
                self.metrics.model_version.labels(status.line, machine).set(version.version)
            self._changed_machines.add(machine)
            self._answer_model_alert(machine)
            log.info("%s%s: model version %d put back in use", machine, f" ({recipe})" if recipe else "",
                     version.version)
            return True

    # ------------------------------------------------------------ checkpoints

    def export_state(self, everything: bool = False) -> dict[str, bytes]:
        """What was learned since the last export (or ``everything``), as bytes per key:
        ``machine:<id>`` for each machine (its model, data-quality, aggregation and normaliser state
        travel together, as its partition does) and ``line:<name>`` for each line's failure-rate monitor.

        Incremental by default: a checkpoint rewrites only the machines and lines that received data
        since the previous one, so 1,000 mostly idle machines do not cost 1,000 rows every 5 seconds.
        """
        with self.lock:
            n = self.normalizer
            machines = set(self.models) | set(self.recipe_models) | set(self.quality.state) | set(n.last_ts)
            lines = set(self.monitors)
            if not everything:
                machines &= self._changed_machines
                lines &= self._changed_lines
            self._changed_machines, self._changed_lines = set(), set()
            out = {}
            for m in machines:
                alerts = self.book.owned_by(f"machine:{m}")
                out[f"machine:{m}"] = pickle.dumps({
                    "model": self.models.get(m), "recipe_models": self.recipe_models.get(m),
                    "quality": self.quality.state.get(m),
                    "aggregator": self.machine_aggregators.get(m), "last_ts": n.last_ts.get(m),
                    "fields_seen": n.fields_seen.get(m), "top_keys": n.top_keys.get(m),
                    "open_alerts": alerts, "quiet_readings": self.book.quiet_of(alerts),
                    # how far the journal of people's actions is reflected in this model ("new normal")
                    "actions_seen": self.book.actions_seen, "position": self._learned_to(self._machine_partition.get(m)),
                    "mapped": self._mapped(m)},
                    protocol=5)
            # a line's genealogy and per-machine monitors travel with its monitor (and its QC partition)
            out.update({f"line:{line}": pickle.dumps({"monitor": self.monitors[line],
                                                      "qc_recent": self.qc_recent.get(line),
                                                      "machine_rates": self.machine_rates.get(line),
                                                      "open_alerts": self.book.owned_by(f"line:{line}"),
                                                      "position": self._learned_to(self._line_partition.get(line))},
                                                     protocol=5)
                        for line in lines})
            return out

    def positions(self, keys: Iterable[str]) -> dict[str, tuple[str, int, int] | None]:
        """How far into its partition each exported state (``machine:<id>``, ``line:<name>``) had learned:
        what its checkpoint row records, so a write from a worker that fell behind is refused."""
        with self.lock:
            out: dict[str, tuple[str, int, int] | None] = {}
            for key in keys:
                kind, _, name = key.partition(":")
                where = (self._machine_partition if kind == "machine" else self._line_partition).get(name)
                out[key] = self._learned_to(where)
            return out

    def keys_on(self, partitions: set[tuple[str, int]]) -> set[str]:
        """The machines and lines whose messages come from these (topic, partition)s."""
        with self.lock:
            return ({f"machine:{m}" for m, where in self._machine_partition.items() if where in partitions}
                    | {f"line:{line}" for line, where in self._line_partition.items() if where in partitions})

    def watched_sensors(self, machine: str) -> set[str] | None:
        return watched_sensors(self.config, machine)

    def _mapped(self, machine: str) -> tuple[str, ...] | None:
        return mapped_sensors(self.config, machine)

    def _check_sensors(self, machine: str, mapped_then: Sequence[str] | None, model: Any,
                       recipes: dict[str, Any]) -> None:
        """A restored model whose machine's profile now maps other sensors (one added, one removed)
        would ignore the new one and fill the removed one with its last value for ever: the change is
        logged, shown on the machine (``sensors_changed`` in /api/v1/machines/{id}) and the models start
        again from warm-up on the sensors mapped now. Checkpoints written before the mapping was recorded
        are compared by the sensors the model watches."""
        now = self._mapped(machine)
        if now is None:
            return
        then = set(mapped_then) if mapped_then is not None else None
        keyed = [(r, mdl) for r, mdl in ((None, model), *recipes.items()) if mdl is not None]
        models = [mdl for _, mdl in keyed]
        if then is None:
            watched = next((mdl.sensors for mdl in models if mdl.sensors is not None), None)
            if watched is None:
                return
            excluded = set(getattr(getattr(models[0], "mewma", None), "exclude_sensors", ()))
            then, now_watched = set(watched), set(now) - excluded
        else:
            now_watched = set(now)
        if then == now_watched:
            return
        added, removed = sorted(now_watched - then), sorted(then - now_watched)
        log.warning("%s: its profile now maps other sensors (added: %s; removed: %s); its anomaly model(s) "
                    "start again from warm-up on the sensors mapped now", machine, ", ".join(added) or "none",
                    ", ".join(removed) or "none")
        for recipe, mdl in keyed:
            changed = self._lineage(machine, recipe, mdl)
            changed.relearn(SENSORS_CHANGED)
            changed.previous = None  # a model of the sensors mapped before cannot be put back
            mdl.start_new_normal()
            mdl.sensors = None  # learned again from the next reading
            mdl.last = {k: v for k, v in mdl.last.items() if k in now_watched}
        status = self.machines.get(machine)
        if status is not None:
            status.sensors_changed = {"added": added, "removed": removed,
                                      "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                      "action": "the anomaly model started again from warm-up"}

    def _learned_to(self, where: tuple[str, int] | None) -> tuple[str, int, int] | None:
        """(topic, partition, next offset) of the partition a machine's or line's messages come from
        (``where``), as far as this worker has read it, or None when it has read none of them."""
        if where is None or where not in self._position:
            return None
        return where[0], where[1], self._position[where]

    def import_state(self, states: dict[str, bytes],
                     stored_alerts: Callable[[list[str]], dict[str, Alert]] | None = None) -> Restored:
        """Continue from a checkpoint (state saved by export_state, possibly by another worker).

        The open alerts come back with the detectors that decide them, so the replay of what followed
        the checkpoint repeats the same decisions; ``stored_alerts`` (the alert store's lookup by id)
        says which of them people acknowledged or resolved since. Returns what the caller must act
        on: how far each model had applied the journal of people's actions, and how far into its
        partition each checkpoint had learned (see ``Restored``).
        """
        loaded = {key: pickle.loads(blob) for key, blob in states.items()}
        alerts = {key: st["open_alerts"] for key, st in loaded.items()
                  if isinstance(st, dict) and st.get("open_alerts") is not None}
        ids = [a.id for group in alerts.values() for a in group]
        stored = stored_alerts(ids) if stored_alerts is not None and ids else {}
        restored = Restored()
        with self.lock:
            n = self.normalizer
            for key, group in alerts.items():
                self.book.restore(key, group, stored, loaded[key].get("quiet_readings"))
            for key, st in loaded.items():
                at = st.get("position") if isinstance(st, dict) else None
                kind, _, name = key.partition(":")
                if at is not None:  # read on from there: what this worker read past it is read again
                    topic, partition, offset = at
                    partitions = self._machine_partition if kind == "machine" else self._line_partition
                    partitions[name] = (topic, partition)
                    self._position[(topic, partition)] = offset
                    learned = restored.positions
                    learned[(topic, partition)] = min(offset, learned.get((topic, partition), offset))
                if kind == "machine":
                    if not isinstance(st["model"], self._model_type):  # the plant switched models: start afresh
                        st["model"] = None
                    recipes: dict[str, AnomalyModel] = {r: mdl for r, mdl in (st.get("recipe_models") or {}).items()
                               if isinstance(mdl, self._model_type)}
                    if recipes:
                        self.recipe_models[name] = recipes
                    self._check_sensors(name, st.get("mapped"), st["model"], recipes)
                    if st["quality"] is not None:
                        self.quality.restore(name, st["quality"])
                    for target, value in ((self.models, st["model"]),
                                          (self.machine_aggregators, st["aggregator"]), (n.last_ts, st["last_ts"]),
                                          (n.fields_seen, st["fields_seen"]), (n.top_keys, st["top_keys"])):
                        if value is not None:
                            target[name] = value
                    if st["model"] is not None and name in self.machines:
                        restored_lineage = getattr(st["model"], "lineage", None)
                        status = self.machines[name]
                        status.phase = "shadow" if restored_lineage is not None and restored_lineage.in_shadow \
                            else st["model"].phase
                        if restored_lineage is not None:
                            status.model_version = restored_lineage.version
                            status.model_version_at = restored_lineage.made_at
                            self.metrics.model_version.labels(status.line, name).set(restored_lineage.version)
                    known = self.machines.get(name)
                    if known is not None and st["last_ts"] is not None and (
                            known.last_reading_at is None or known.last_reading_at < st["last_ts"]):
                        known.last_reading_at = st["last_ts"]  # silent since then, as far as anyone read
                    if st.get("actions_seen") is not None:
                        restored.journal[name] = st["actions_seen"]
                elif kind == "line":
                    if isinstance(st, FailureRateMonitor):  # checkpoints written before genealogy
                        st = {"monitor": st, "machine_rates": None}
                    self.monitors[name] = st["monitor"]
                    if st.get("qc_recent") is not None:
                        self.qc_recent[name] = st["qc_recent"]
                    if st["machine_rates"] is not None:
                        self.machine_rates[name] = st["machine_rates"]
                    self.lines.setdefault(name, LineStatus(name))
            self.refresh_open_gauge()
        return restored

    def release(self, machines: set[str], lines: set[str]) -> None:
        """Forget machines and lines this worker no longer owns (their partitions moved to another
        worker), so its checkpoints never overwrite the new owner's fresher state. Their open alerts
        are dropped by ``own``, which the runner calls after every change of ownership."""
        with self.lock:
            n = self.normalizer
            for m in machines:
                for store in (self.models, self.recipe_models, self.quality.state, self.machine_aggregators, n.last_ts,
                              n.fields_seen, n.top_keys, n.schema_counter, n.last_raw):
                    store.pop(m, None)
                if m in self.machines:
                    self.machines[m].phase = "handed over"
            for line in lines:
                self.monitors.pop(line, None)
                self.qc_recent.pop(line, None)
                self.machine_rates.pop(line, None)

    def own(self, owned: set[str]) -> None:
        """This worker now holds the partitions of ``owned`` ("machine:<id>", "line:<name>"): only those
        machines are judged stale here, and only their open alerts are kept (a Kafka worker starts with
        every open alert in the store; the owners' workers update the others)."""
        with self.lock:
            self.owned = {key.partition(":")[2] for key in owned if key.startswith("machine:")}
            plant = ({f"machine:{m}" for m in self.config.machines}
                     | {f"line:{m.line}" for m in self.config.machines.values()})
            held = {AlertBook.owner(a) for a in self.book.open.values()}
            self.book.forget((held & plant) - owned)
            self.refresh_open_gauge()

    def machine_detail(self, machine_id: str) -> dict[str, Any] | None:
        """What was converted and how, for one machine: profile, mapping with factors, last samples."""
        with self.lock:
            machine = self.normalizer.machines.get(machine_id)
            if machine is None:
                return None
            profile = self.normalizer.profiles[machine.manufacturer]
            catalogue = self.config.catalogue.sensors
            cal = self.normalizer.calibration.get(machine.id, {})
            mapping = []
            for f in profile.fields:
                spec = catalogue[f.sensor]
                scale, offset = cal.get(f.sensor, (1.0, 0.0))
                mapping.append({
                    "vendor_field": ".".join(f.keys) if f.keys else None, "vendor_tag": f.tag,
                    "vendor_unit": f.unit or ("per message" if f.tag else None),
                    "sensor": f.sensor, "unit": spec.unit, "quantity": spec.quantity, "position": spec.position,
                    "scale": f.conv.scale * scale, "offset": f.conv.offset * scale + offset,
                    "plausible_range": list(spec.range),
                    "machine_calibration": {"scale": scale, "offset": offset} if f.sensor in cal else None})
            raw = self.normalizer.last_raw.get(machine.id)
            status = self.machines.get(machine.id)
            given = profile.spec
            return {
                "machine": machine.id, "line": machine.line, "area": machine.area, "kind": machine.kind,
                "vendor_ids": list(machine.vendor_ids),
                "profile": {"manufacturer": profile.manufacturer, "payload": profile.payload,
                            "machine_id": {"from": given.machine_id.from_, "path": given.machine_id.path},
                            "timestamp": given.timestamp.model_dump(),
                            "aggregate": given.aggregate.model_dump() if given.aggregate else None},
                "mapping": mapping,
                "unmapped_fields_seen": sorted(self.normalizer.fields_seen.get(machine.id, ())),
                "last_raw": None if raw is None else raw[:4096].decode("utf-8", "replace"),
                "last_normalised": None if status is None or status.last_reading_at is None else {
                    "ts": status.last_reading_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "values": dict(status.last_values)},
                "model": None if status is None else {"phase": status.phase, "score": status.score,
                                                      "threshold": status.threshold, "readings": status.readings,
                                                      "recipe": status.recipe,
                                                      "version": status.model_version or None,
                                                      "version_made_at": _iso(status.model_version_at),
                                                      "sensors_changed": status.sensors_changed,
                                                      "recipes": sorted(self.recipe_models.get(machine.id, {})),
                                                      "normal_range": self._normal_range(machine.id, status.recipe),
                                                      "calibration": self._calibration(machine.id, status.recipe)},
            }

    def _current_model(self, machine: str, recipe: str | None) -> AnomalyModel | None:
        """The model of the recipe being made (or the machine's own), if it has one yet."""
        return (self.recipe_models.get(machine, {}).get(recipe) if recipe else None) or self.models.get(machine)

    def _calibration(self, machine: str, recipe: str | None) -> dict[str, int] | None:
        """How the current model's thresholds were calibrated (readings left out as disturbed)."""
        model = self._current_model(machine, recipe)
        return None if model is None else model.calibration_summary()

    def _normal_range(self, machine: str, recipe: str | None) -> dict[str, list[float]]:
        """The band each sensor's readings are normal in, by the model of the recipe being made."""
        model = self._current_model(machine, recipe)
        if model is None:
            return {}
        return {sensor: [round(lo, 4), round(hi, 4)] for sensor, (lo, hi) in model.normal_range().items()}

    def machine_trend(self, machine: str) -> dict[str, Any] | None:
        """A machine's last hour for its sparkline: the anomaly score against the threshold, and the
        values of the sensor that matters most now (the open anomaly alert's top sensor, else the first
        the profile maps). None for a machine this worker does not know."""
        with self.lock:
            status = self.machines.get(machine)
            if status is None:
                return None
            points = list(status.trend)
            alert = self.book.open_for(AlertKind.ANOMALY, status.line, machine)
        sensors = (alert.details.get("sensors") or []) if alert is not None else []
        profile = self.config.profiles.get(status.manufacturer)
        sensor = sensors[0]["sensor"] if sensors else (profile.sensors[0].sensor if profile and profile.sensors else None)
        return {"machine": machine, "seconds_per_point": TREND_SECONDS, "sensor": sensor,
                "series": {name: [None if name not in values else round(values[name], 4) for _, _, _, values in points]
                           for name in dict.fromkeys(n for *_, values in points for n in values)},
                "points": [{"at": at.isoformat(timespec="seconds").replace("+00:00", "Z"), "score": round(score, 4),
                            "threshold": None if threshold is None else round(threshold, 4),
                            "value": None if sensor is None or sensor not in values else round(values[sensor], 4)}
                           for at, score, threshold, values in points]}

    def failure_rate_chart(self, line: str) -> dict[str, Any] | None:
        """A line's p-chart: its failure rate per subgroup of units against the baseline and the
        subgroup's 3-sigma limit, and when the open failure-rate alert dates the change. None for a
        line this plant does not have."""
        with self.lock:
            if line not in self.lines:
                return None
            monitor = self.monitors.get(line)
            points = monitor.chart() if monitor is not None else []
            baseline = monitor.baseline if monitor is not None else None
            ucl = monitor.upper_control_limit(SUBGROUP_UNITS) if monitor is not None else None
            alert = self.book.open_for(AlertKind.FAILURE_RATE, line)
            since = alert.details.get("since") if alert is not None else None
        return {"line": line, "subgroup_units": SUBGROUP_UNITS, "baseline": baseline, "upper_control_limit": ucl,
                "alarm_since": since,
                "points": [{"at": at.isoformat(timespec="seconds").replace("+00:00", "Z"), "units": n, "failures": f,
                            "failure_rate": round(f / n, 4)} for at, n, f in points]}

    def snapshot(self) -> tuple[list[MachineStatus], list[LineStatus], list[Alert]]:
        """Copies of the live status for the API, taken under the lock."""
        with self.lock:
            return ([copy(s) for s in self.machines.values()], [copy(s) for s in self.lines.values()],
                    [copy(a) for a in self.book.open.values()])


@dataclass
class _HandledRun:
    """A block whose readings carry unit or batch ids, and which of them the genealogy learns next."""

    block: ReadingBlock
    next: int = 0


Taken = Union[bool, _HandledRun, Iterator[Union[Reading, QcResult]]]  # how a run of a batch is read (_take_run)


class _Readings:
    """A machine's readings of one batch, some one by one and some in blocks, indexed in order."""

    def __init__(self, items: list[Reading | ReadingBlock]):
        self.items = items
        self.starts = list(itertools.accumulate((1 if isinstance(i, Reading) else len(i) for i in items), initial=0))

    def __len__(self) -> int:
        return self.starts[-1]

    def until(self, stop: int) -> "_Readings":
        """The readings before index ``stop`` (a block cut where they end)."""
        out: list[Reading | ReadingBlock] = []
        for item, first in zip(self.items, self.starts):
            if first >= stop:
                break
            size = 1 if isinstance(item, Reading) else len(item)
            if isinstance(item, Reading) or first + size <= stop:
                out.append(item)
                continue
            cut = stop - first
            out.append(replace(item, offsets=item.offsets[:cut], ts_ms=item.ts_ms[:cut], values=item.values[:cut],
                               unit_ids=None if item.unit_ids is None else item.unit_ids[:cut],
                               batch_ids=None if item.batch_ids is None else item.batch_ids[:cut]))
        return _Readings(out)

    def since(self, start: int) -> "_Readings":
        """The readings from index ``start`` on (a block cut where they begin)."""
        out: list[Reading | ReadingBlock] = []
        for item, first in zip(self.items, self.starts):
            size = 1 if isinstance(item, Reading) else len(item)
            if first + size <= start:
                continue
            if isinstance(item, Reading) or first >= start:
                out.append(item)
                continue
            cut = start - first
            out.append(replace(item, offsets=item.offsets[cut:], ts_ms=item.ts_ms[cut:], values=item.values[cut:],
                               unit_ids=None if item.unit_ids is None else item.unit_ids[cut:],
                               batch_ids=None if item.batch_ids is None else item.batch_ids[cut:]))
        return _Readings(out)

    def parts(self) -> list[Part]:
        """Runs of dicts and blocks of columns, as the models take them."""
        parts: list[Part] = []
        for item in self.items:
            if isinstance(item, Reading):
                if parts and isinstance(parts[-1], list):
                    parts[-1].append(item.values)
                else:
                    parts.append([item.values])
            else:
                parts.append((item.sensors, item.values))
        return parts

    def first_of_each(self, period_ms: int, after: datetime | None) -> list[int]:
        """Indices of the readings that open a new period of ``period_ms`` of reading time (periods
        counted from the epoch), later than the one holding ``after``. The readings are in time order
        (duplicates and late ones are skipped before scoring), so the newest is the last."""
        if not self.items:
            return []
        start = -1 if after is None else ((after - EPOCH) // ONE_MS) // period_ms
        last = self.items[-1]
        newest = (last.ts - EPOCH) // ONE_MS if isinstance(last, Reading) else int(last.ts_ms[-1])
        if newest // period_ms <= start:
            return []  # the common case: the batch is still inside the period last sampled
        chunks: list[np.ndarray] = []
        singles: list[int] = []
        for item in self.items:
            if isinstance(item, Reading):
                singles.append((item.ts - EPOCH) // ONE_MS)
                continue
            if singles:
                chunks.append(np.array(singles, dtype=np.int64))
                singles = []
            chunks.append(item.ts_ms)
        if singles:
            chunks.append(np.array(singles, dtype=np.int64))
        period = np.concatenate(chunks) // period_ms
        return np.flatnonzero(np.diff(period, prepend=start) > 0).tolist()

    def __getitem__(self, i: int) -> Reading:
        k = bisect.bisect_right(self.starts, i) - 1
        item = self.items[k]
        return item if isinstance(item, Reading) else item.reading(i - self.starts[k])


def _compact(events: list[AlertEvent]) -> list[AlertEvent]:
    """Keep every fired, escalated and resolved event, but only the latest update of each alert."""
    last_update: dict[str, int] = {}
    for i, ev in enumerate(events):
        if ev.type is AlertEventType.UPDATED:
            last_update[ev.alert.id] = i
    return [ev for i, ev in enumerate(events) if ev.type is not AlertEventType.UPDATED or last_update[ev.alert.id] == i]


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(x: float | None) -> float | None:
    """A number JSON can carry (an unset or infinite threshold is None)."""
    return None if x is None or not math.isfinite(x) else float(x)


def mapped_sensors(config: PlantConfig, machine: str) -> tuple[str, ...] | None:
    """The sensors the machine's profile maps (what its model should watch), sorted."""
    m = config.machines.get(machine)
    profile = None if m is None else config.profiles.get(m.manufacturer)
    return None if profile is None else tuple(sorted(s.sensor for s in profile.sensors))


def watched_sensors(config: PlantConfig, machine: str) -> set[str] | None:
    """The sensors a model of this machine learned now would watch: those its profile maps, less any
    the plant's MEWMA settings exclude (None: the machine has no profile)."""
    mapped = mapped_sensors(config, machine)
    if mapped is None:
        return None
    anomaly = config.detection.anomaly
    excluded = set(anomaly.mewma.exclude_sensors) if anomaly.model == "mewma" else set()
    return set(mapped) - excluded


def _until_boundary(model: AnomalyModel, lineage: Lineage) -> int | None:
    """Readings the model scores before its next boundary: the end of its learning or of its shadow run
    (None: none ahead). Both model kinds learn for warmup_readings + calibration_readings readings."""
    if lineage.in_shadow:
        return lineage.shadow_left
    seen, settings = getattr(model, "seen", None), getattr(model, "settings", None)
    if model.phase == "monitoring" or seen is None or settings is None:
        return None
    return max(1, settings.warmup_readings + settings.calibration_readings - seen)
