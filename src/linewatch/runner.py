"""The consumer loop: take a batch, run it through the pipeline, make its results durable, commit.

Order matters for at-least-once: alerts are stored and DLQ/alert records acknowledged before the
source's offsets are committed, and offsets are committed only together with a checkpoint of the
detectors' state (every ``checkpoint_seconds``, busy or idle, and on stop), so the committed position never runs
ahead of what the models have learned. If making a batch durable fails, the loop retries that step
(the writes are idempotent) rather than moving on, so nothing a batch produced is ever skipped.

While a write is failing (the database or the broker is away) the worker holds the batch, pauses
consumption (a Kafka consumer's partitions are paused and it keeps polling, so it stays in its group
without reading on), commits nothing, reports itself not ready with the reason, and retries with
back-off up to 10 s; when the write succeeds it resumes where it stopped.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol, TypeVar

from linewatch.alerts.silences import Silencer
from linewatch.alerts.store import AlertStore
from linewatch.alerts.sync import renew_since_checkpoint, sync_people_actions
from linewatch.detect.state import StateStore
from linewatch.domain import AlertEvent, AlertEventType, RawMessage, Rejection
from linewatch.pipeline import BatchOutcome, Pipeline
from linewatch.sources.contracts import PartitionedSource, Source

log = logging.getLogger(__name__)

T = TypeVar("T")

# What each retried write is, as operators read it in the log and in /readyz (and the label of
# linewatch_durable_write_failures_total).
WRITES = {
    "store": "cannot save alerts to the database",
    "silences": "cannot read silences from the database",
    "actions": "cannot read people's actions (ack, resolve, new normal) from the database",
    "sinks": "cannot write dead-letter and alert records to Kafka",
    "checkpoint": "cannot save the detector checkpoint to the database",
    "load": "cannot load detector checkpoints from the database",
    "commit": "cannot commit consumer offsets to Kafka",
    "rewind": "cannot read the committed offsets of partitions taken over from Kafka",
    "ends": "cannot read the end offsets of partitions from Kafka",
}
# the retried writes that go to the database: while one of them fails, /readyz says the store is not ready
DATABASE_WRITES = frozenset({"store", "silences", "actions", "checkpoint", "load"})
DONE = {
    "store": "alerts saved to the database",
    "silences": "silences read from the database",
    "actions": "people's actions read from the database",
    "sinks": "dead-letter and alert records written to Kafka",
    "checkpoint": "detector checkpoint saved to the database",
    "load": "detector checkpoints loaded from the database",
    "commit": "consumer offsets committed to Kafka",
    "rewind": "committed offsets of partitions taken over read from Kafka",
    "ends": "end offsets of partitions read from Kafka",
}
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


class StoppedDuringOutage(Exception):
    """Stop was requested while a write kept failing: the batch in hand is not durable, so its
    offsets stay uncommitted and whoever consumes the partitions next replays it."""


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
    # why the worker stopped before the batch in hand was durable (None: a clean stop); that batch is
    # replayed by whoever consumes its partitions next
    unfinished: str | None = None


class Runner:
    def __init__(self, source: Source, pipeline: Pipeline, store: AlertStore, sinks: Sequence[Sink] = (),
                 on_events: Callable[[Sequence[AlertEvent]], None] | None = None, silencer: Silencer | None = None,
                 state: StateStore | None = None, checkpoint_seconds: float = 5.0,
                 stop: threading.Event | None = None):
        self.source = source
        # a consumer group's member (Kafka): machines and lines move between workers with its partitions
        self.group: PartitionedSource | None = source if isinstance(source, PartitionedSource) else None
        self.pipeline = pipeline
        self.store = store
        self.sinks = list(sinks)
        self.on_events = on_events
        self.silencer = silencer
        self.state = state
        self.checkpoint_seconds = checkpoint_seconds
        self.uncommitted = False
        self.owned: set[str] = set()  # "machine:<id>" and "line:<name>" whose partitions this worker holds
        self.last_checkpoint = time.monotonic()
        self._lag_labels: set[tuple[str, str]] = set()
        # set by a stop request (SIGTERM, Ctrl-C); shared with sinks so a wait on the broker gives up too
        self.stop_requested = stop or threading.Event()
        self.ready = threading.Event()
        self.not_ready_reason: str | None = "the worker has not started consuming yet"
        self.stats = RunStats()
        self._holding = 0  # messages in the batch held while a write is retried (for the log)
        self.failing: set[str] = set()  # the writes (WRITES keys) being retried right now
        self._doubted = False  # group membership in doubt at the last step (see _in_doubt)

    def store_failing(self) -> bool:
        """Whether a write to the database is failing right now (a full disk, a read-only database): the
        store may still answer ``SELECT 1``, but what the worker must save is not being saved."""
        return bool(self.failing & DATABASE_WRITES)

    def readiness(self) -> tuple[bool, str | None]:
        """Whether the worker is consuming normally, and if not, why (for /readyz)."""
        ready = self.ready.is_set()
        return ready, None if ready else (self.not_ready_reason or "the worker is not consuming")

    def run(self, duration: float | None = None) -> RunStats:
        """Process batches until stopped (or for ``duration`` seconds); then checkpoint and commit.

        Only a clean stop checkpoints: if a step raised, what was polled may not be durable, so its
        offsets must stay uncommitted (the next owner of the partitions replays them).
        """
        deadline = None if duration is None else time.monotonic() + duration
        self._set_ready()
        try:
            while not self.stop_requested.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.step()
            if self.uncommitted:
                self.checkpoint()
        except StoppedDuringOutage as exc:
            self.stats.unfinished = str(exc)
            log.warning("stopped while a write kept failing (%s): the batch in hand was not made durable and its "
                        "offsets are not committed; it is replayed from the last checkpoint", exc)
        finally:
            self._set_not_ready("the worker has stopped")
        return self.stats

    def step(self) -> BatchOutcome | None:
        batch = self.source.next_batch()
        skipped = self._take_over()
        if skipped:  # taken over: read again from the checkpoint's offsets, so what the poll returned for
            # them comes later; handed over: another worker reads them now, and this one must not judge them
            batch = [m for m in batch if (m.topic, m.partition) not in skipped]
        if self._in_doubt(batch):
            return None
        # acks, resolves and new normals done through any worker's API, before this batch decides
        if self.store is not None:
            self._retry("actions", lambda: sync_people_actions(self.pipeline, self.store))
        lag = self._lag()  # asked once per step: it feeds stale-stream judgement and the lag gauge
        if not batch:
            idle = self.pipeline.idle(self._behind(lag))  # silence is news too: streams go stale
            if idle.events and self._judged_in_doubt():
                return None
            if idle.events:
                self._make_durable(idle)
                self._count(idle)
                if self.on_events:
                    self.on_events(idle.events)
            # idle, too, at most every checkpoint_seconds: a trickle of messages between empty polls
            # must not turn into a checkpoint per poll
            if self.uncommitted and time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds:
                self.checkpoint()
            return None
        outcome = self.pipeline.process(batch, self._behind(lag))
        if self._judged_in_doubt():
            return None
        self._observe(batch)
        self._holding = len(batch)
        if self.silencer and outcome.events:
            silencer, events = self.silencer, outcome.events

            def silence() -> None:
                with self.pipeline.lock:
                    silencer.apply(events, self.pipeline.book)

            self._retry("silences", silence)
        self._make_durable(outcome)
        self.uncommitted = True
        if time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()
        self._count(outcome)
        if self.on_events and outcome.events:
            self.on_events(outcome.events)
        return outcome

    def _take_over(self) -> set[tuple[str, int]]:
        """After a rebalance: forget what moved away, load the checkpoint of what arrived, and read
        what arrived from the offsets that checkpoint matches. Returns the (topic, partition)s whose
        messages in this step's poll are not to be read: those that arrived (they are read again from
        their checkpoint) and those that moved away (a worker that was paused past its session may
        hold a poll of partitions the group has since given to another)."""
        group = self.group
        rewound: set[tuple[str, int]] = set()
        gone: set[tuple[str, int]] = set()
        if group is None:
            return rewound
        from linewatch.sources.kafka import owners

        settings = group.settings
        stations = {m.id: m.line for m in self.pipeline.config.machines.values()
                    if (p := self.pipeline.config.profiles.get(m.manufacturer)) and p.qc}
        changed = group.ownership_changes()
        for change, partitions in changed:
            machines, lines = owners(partitions, settings.raw_topic_prefix, settings.qc_topic,
                                     group.partition_count, stations)
            keys = {f"machine:{m}" for m in machines} | {f"line:{line}" for line in lines}
            self.owned = self.owned - keys if change == "revoked" else self.owned | keys
            moved = {(tp.topic, tp.partition) for tp in partitions}
            if change == "revoked":
                gone |= moved
                self.pipeline.release(machines, lines)
                log.info("handed over %s", sorted(keys))
                continue
            gone -= moved  # given back in the same rebalance (an eager one revokes everything first)
            if self.state is not None:
                self._load(keys, partitions)
                rewound |= moved
                log.info("took over %s from their checkpoints", sorted(keys))
        if changed:  # machines and lines other workers own are theirs to judge and update
            self.pipeline.own(self.owned)
        return rewound | gone

    def _doubt(self) -> str | None:
        """Why the group may have given this worker's partitions to another, or None while it surely
        holds them. A worker without checkpoints has nothing another could have read on from."""
        return None if self.group is None or self.state is None else self.group.membership_in_doubt()

    def _in_doubt(self, batch: list) -> bool:
        """A worker back from a pause past its session (SIGSTOP, a VM migration, a stalled disk) still
        thinks it owns its partitions until its next poll rejoins the group; meanwhile another may own
        them. It judges nothing then, not even silence (its own pause looks like the machines'), and
        hands the batch back to be read again if the partitions turn out to be still its own."""
        doubt = self._doubt()
        if doubt is None:
            if self._doubted:
                log.info("group membership confirmed again; reading on")
                self._doubted = False
            return False
        if not self._doubted:
            log.warning("%s: the group may have given this worker's partitions to another; judging nothing "
                        "until it rejoins", doubt)
            self._doubted = True
        assert self.group is not None  # only a group's member can be in doubt of its membership
        self.group.give_back(batch)
        return True

    def _judged_in_doubt(self) -> bool:
        """Whether membership fell into doubt while this step judged (the pause came mid-step). Then
        what it judged is not written: its machines go back to their checkpoints and their partitions
        to the offsets those match, as in a take-over; the rejoin that follows settles who owns them."""
        doubt = self._doubt()
        if doubt is None:
            return False
        log.warning("%s while judging a batch: not writing it; back to the last checkpoint", doubt)
        self._doubted = True
        assert self.group is not None
        self.pipeline.own(set())  # the open alerts too: those checkpointed come back with the load
        self._reload(set(self.owned), self.group.assignment())
        self.pipeline.own(self.owned)
        return True

    def _reload(self, keys: set[str], partitions: set) -> None:
        """Drop what this worker holds for ``keys`` and load their stored state instead, reading
        ``partitions`` on from where it left off."""
        self.pipeline.release({k.partition(":")[2] for k in keys if k.startswith("machine:")},
                              {k.partition(":")[2] for k in keys if k.startswith("line:")})
        self._load(keys, partitions)

    def _load(self, keys: set[str], partitions: set) -> None:
        """Load the checkpoints of ``keys`` and read ``partitions`` on from where they left off."""
        assert self.state is not None
        wanted, state, store = sorted(keys), self.state, self.store
        stored = None if store is None else (lambda ids: self._retry("load", lambda: store.alerts_by_id(ids)))
        if store is not None:  # a model made afresh for a machine taken over numbers on from the store's versions
            self.pipeline.versions_on_record(self._retry("load", store.latest_versions))
        restored = self.pipeline.import_state(self._retry("load", lambda: state.load(wanted)), stored)
        if store is not None:  # a "new normal" given after those checkpoints is not lost
            self._retry("actions", lambda: renew_since_checkpoint(self.pipeline, store, restored.journal))
        # a partition kept through an eager rebalance kept its position, which may be past the
        # checkpoint just loaded: every partition taken over reads on from where its checkpoint
        # (or its commit, if later) left off
        group = self.group
        assert group is not None  # checkpoints are loaded at start-up for a source of its own (service.py)
        self._retry("rewind", lambda: group.rewind(partitions, restored.positions))
        # the checkpoint may be ahead of the committed offsets (its owner stopped before it could
        # commit): commit the position read on from, or the group's lag stays as if nothing were read
        self.uncommitted = True

    def _earlier_topics(self, refused: dict[str, tuple[str, int, int]], states: dict[str, bytes],
                        positions: dict[str, tuple[str, int, int] | None]) -> dict[str, tuple[str, int, int]]:
        """Refused rows whose stored offset is past the end of its partition come from an earlier topic of
        the same name (deleted and created again, its offsets starting afresh): no worker can have read
        that far, so they are overwritten. Returns the refusals that stand."""
        group = self.group
        assert group is not None  # only a group's member is fenced
        ends = self._retry("ends", lambda: group.end_offsets({(t, p) for t, p, _ in refused.values()}))
        earlier = {k for k, (t, p, o) in refused.items() if (t, p) in ends and o > ends[(t, p)]}
        if earlier:
            log.warning("the stored state of %s had learned past the end of its partition (a topic deleted and "
                        "created again): replaced by this worker's", sorted(earlier))
            state = self.state
            assert state is not None
            again = {k: states[k] for k in earlier}
            self._retry("checkpoint", lambda: state.save(again, positions, frozenset(again)))
        return {k: v for k, v in refused.items() if k not in earlier}

    def _refused(self, refused: dict[str, tuple[str, int, int]]) -> None:
        """Checkpoints refused because the stored state had learned further into the partition: another
        worker owns it now (or did while this one was paused past its session timeout). What this
        worker holds for those partitions is older than what is stored: it is dropped and the stored
        state loaded instead, read on from where it left off. If the partitions have moved, the
        revocation that follows releases them."""
        from kafka import TopicPartition

        affected = {(topic, partition) for topic, partition, _ in refused.values()}
        keys = self.pipeline.keys_on(affected) | set(refused)
        log.warning("checkpoint of %s refused: the stored state has learned further into the same partition "
                    "(%s), so another worker has read on from there; dropping what this worker holds for "
                    "%s and loading the stored state", sorted(refused),
                    ", ".join(f"{t}[{p}] at {o}" for t, p, o in sorted(refused.values())), sorted(keys))
        self.pipeline.metrics.refused_checkpoints.inc(len(refused))
        self._reload(keys, {TopicPartition(t, p) for t, p in affected})

    def checkpoint(self) -> None:
        """Save what the detectors have learned, then commit the offsets that state corresponds to.

        Ownership changes that arrived while a write was being retried (the consumer kept polling to
        stay in its group) are applied first, so the checkpoint covers only what this worker owns.
        Each of the two writes is retried until it succeeds; the offsets are committed only after
        the state is saved.
        """
        self._take_over()
        if self.state is not None:
            states = self.pipeline.export_state()
            positions = self.pipeline.positions(states)
            state = self.state
            # fenced where partitions can move between workers; a source of its own (the in-process
            # simulation) has nobody to be fenced from
            everything = frozenset() if self.group is not None else frozenset(states)
            refused = self._retry("checkpoint", lambda: state.save(states, positions, everything))
            if refused:
                refused = self._earlier_topics(refused, states, positions)
            if refused:
                self._refused(refused)
            metrics = self.pipeline.metrics
            metrics.last_checkpoint = time.time()
            metrics.checkpoint_bytes.set(sum(len(v) for v in states.values()))
        self._retry("commit", self.source.commit)
        self.uncommitted = False
        self.last_checkpoint = time.monotonic()

    def _lag(self) -> dict[tuple[str, int], int]:
        """Unread messages per assigned partition (empty for sources without partitions), also
        published as linewatch_consumer_lag_messages."""
        if self.group is None:
            return {}
        lag = self.group.lag()
        gauge = self.pipeline.metrics.consumer_lag
        current = {(topic, str(partition)): n for (topic, partition), n in lag.items() if n >= 0}
        for labels in self._lag_labels - current.keys():  # partitions this worker no longer owns
            gauge.remove(*labels)
        for labels, n in current.items():
            gauge.labels(*labels).set(n)
        self._lag_labels = set(current)
        return lag

    def _behind(self, lag: dict[tuple[str, int], int]) -> frozenset[str]:
        """Machines whose partitions still hold messages this worker has not read (or may: lag -1 is
        a partition not fetched yet)."""
        if not lag:
            return frozenset()
        assert self.group is not None  # only a group's member has a lag
        prefix = self.group.settings.raw_topic_prefix
        return frozenset(topic[len(prefix):] for (topic, _), n in lag.items() if n != 0 and topic.startswith(prefix))

    def _observe(self, batch: list[RawMessage]) -> None:
        """Latency from the source to scored, sampled per batch."""
        now_ms = time.time() * 1000
        observe = self.pipeline.metrics.latency.observe
        for m in batch[:: max(1, len(batch) // 100)]:  # a sample is enough for a histogram
            if m.timestamp_ms is not None:
                observe(max(0.0, now_ms - m.timestamp_ms) / 1000)

    def _make_durable(self, outcome: BatchOutcome) -> None:
        """Store the batch's alert events, then write its rejections and events to the sinks. Events about
        an episode the store had already resolved are kept out of the sinks, the console and the board."""
        # the versions first: an alert the batch raised names the version it was raised by. Only of the
        # machines this worker owns: a worker whose partitions moved while it was paused may still score
        # the batch it held with models made afresh; what they learn is not the machine's normal
        owned = self.pipeline.owned
        versions = [v for v in outcome.versions if owned is None or v.machine in owned]
        self._retry("store", lambda: self.store.save_versions(
            versions, self.pipeline.config.detection.anomaly.keep_versions, since=outcome.started_at))
        saved = self._retry("store", lambda: self.store.save(outcome.events))
        if saved.over:
            with self.pipeline.lock:
                for alert_id in saved.over:
                    self.pipeline.book.resolved_by_person(alert_id)  # over in the store: over here too
        if saved.withheld:
            for ev in saved.withheld:
                self.pipeline.metrics.withheld_events.labels(ev.alert.kind.value).inc()
            log.warning("not announcing %d event(s) of %s: the store had already resolved those alerts "
                        "(old data replayed, or resolved through another worker)", len(saved.withheld),
                        sorted({ev.alert.id for ev in saved.withheld}))
            outcome.events = saved.announce
        for sink in self.sinks:
            self._retry("sinks", functools.partial(sink.write, outcome.rejections, outcome.events))
        resolved = {ev.alert.id for ev in outcome.events if ev.type is AlertEventType.RESOLVED}
        if resolved:  # from now on a replay of these resolutions is not announced again
            self._retry("store", lambda: self.store.announced(resolved))

    # ------------------------------------------------------------ when the database or the broker is away

    def _retry(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it succeeds. Meanwhile the batch stays in hand, consumption is paused,
        nothing is committed and the worker is not ready; the waits grow from 0.5 s to 10 s.

        The writes retried here are idempotent (alert upserts by deterministic id, a checkpoint
        replacing its keys, an offset commit, DLQ/alert records the
        Kafka sink sends once however often it is retried), so retrying is safe.
        """
        failures, since, delay, at = 0, 0.0, FIRST_RETRY_SECONDS, ""
        while True:
            try:
                result = attempt()
            except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the answer is to wait and retry
                failures += 1
                self.failing.add(what)
                self.pipeline.metrics.durable_write_failures.labels(what).inc()
                error = _describe(exc)
                if self.stop_requested.is_set():
                    raise StoppedDuringOutage(f"{WRITES[what]}: {error}") from exc
                if failures == 1:
                    since = time.monotonic()
                    at = datetime.now(timezone.utc).strftime("%H:%M:%SZ")
                # /readyz says since when, and why the latest attempt failed: the first failure of an
                # outage is often a dropped connection, the lasting cause (a read-only database) comes next
                self._set_not_ready(f"{WRITES[what]} since {at} ({error}); consumption paused, "
                                    "offsets not committed, retrying")
                if failures == 1:
                    log.error("%s (%s); pausing consumption, holding the current batch (%d message(s)), "
                              "committing nothing; retrying in %.1f s", WRITES[what], error, self._holding, delay)
                else:
                    log.warning("%s, attempt %d, %.0f s so far (%s); retrying in %.1f s", WRITES[what], failures,
                                time.monotonic() - since, error, delay)
                self._hold(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            self.failing.discard(what)
            if failures:
                self._resume()
                log.warning("%s after %d failed attempt(s) over %.1f s; resuming consumption",
                            DONE[what], failures, time.monotonic() - since)
                self._set_ready()
            return result

    def _hold(self, seconds: float) -> None:
        """Wait ``seconds`` (less if a stop is requested) without reading on; a group's member keeps its
        place in the group meanwhile (``PartitionedSource.keep_alive``)."""
        if self.group is None:
            self.stop_requested.wait(seconds)
        else:
            self.group.keep_alive(seconds, self.stop_requested)

    def _resume(self) -> None:
        if self.group is not None:
            self.group.resume()

    def _set_ready(self) -> None:
        self.not_ready_reason = None
        self.ready.set()

    def _set_not_ready(self, reason: str) -> None:
        self.not_ready_reason = reason
        self.ready.clear()

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


def _describe(exc: BaseException) -> str:
    """What went wrong, in one line an operator can act on: the database driver's own error (SQLAlchemy
    wraps it in context such as "raised as a result of Query-invoked autoflush"), its type and the
    first line of its message (drivers add pages of context).

    >>> _describe(ValueError("disk full\\nDETAIL: ..."))
    'ValueError: disk full'
    """
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        exc = orig
    text = str(exc).strip()
    return f"{type(exc).__name__}: " + (text.splitlines()[0] if text else "")[:300]
