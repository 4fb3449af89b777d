"""Kafka: the consumer the worker reads from, and the producer it writes DLQ and alert records with.

kafka-python 3.x: the producer is idempotent with acks=all by default; we keep that. The consumer
never auto-commits: the runner commits after everything a batch produced is durable.

Every call that waits on the broker is bounded (CALL_TIMEOUT_SECONDS): a broker that has gone away
makes the call fail, and the runner's retry loop (which honours a stop request) decides what next.
The sink's wait for acknowledgements also gives up as soon as the worker is asked to stop.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.base import Generation
from kafka.partitioner.default import murmur2
from kafka.admin import NewTopic
from kafka.errors import (CommitFailedError, KafkaError, KafkaTimeoutError, RebalanceInProgressError,
                          TopicAlreadyExistsError)

from linewatch.domain import AlertEvent, RawMessage, Rejection
from linewatch.settings import Settings

log = logging.getLogger(__name__)
# the consumer's positions can move without records being handed out (an offset reset after retention
# removed unread messages, transaction markers): the positions kept for lag are asked afresh this often
POSITIONS_REFRESH_SECONDS = 5.0
# the longest any one call waits on the broker: a send waiting for metadata or buffer space, the wait
# for acknowledgements, an offset commit or look-up
CALL_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
FLUSH_SLICE_SECONDS = 0.25  # how often a wait for acknowledgements looks whether a stop was requested
DELIVERY_TIMEOUT_MS = 120_000  # how long the producer retries one record before failing it (Kafka's default)


class WriteAbandoned(Exception):
    """The worker was asked to stop while the broker had not acknowledged a write."""


_Record = tuple[str, "bytes | None", bytes, tuple[tuple[str, bytes], ...]]  # topic, key, value, headers


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int = 8) -> None:
    """Create topics that do not exist yet (one replica: a single broker beside the line)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="linewatch-admin")
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name=n, num_partitions=partitions, replication_factor=1)
                   for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
    finally:
        admin.close()


class KafkaSource:
    """Batches of raw messages from ``linewatch.raw.*`` and ``linewatch.qc``."""

    def __init__(self, settings: Settings, poll_timeout_ms: int = 500):
        assert settings.kafka_bootstrap, "KafkaSource needs LINEWATCH_KAFKA_BOOTSTRAP"
        self.settings = settings
        self.poll_timeout_ms = poll_timeout_ms
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            client_id="linewatch-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_poll_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 5),
            metadata_max_age_ms=settings.metadata_max_age_ms,
        )
        raw = re.escape(settings.raw_topic_prefix)
        # the next offset of each partition as far as records were handed out: asking the consumer for
        # every partition's position on every batch costs more than normalising a hundred readings
        self._next: dict[TopicPartition, int] = {}
        # (since when, generation, member id, why) while group membership is in doubt: see membership_in_doubt
        self._doubt: tuple[float, int, str, str] | None = None
        self._next_since = time.monotonic()  # asked afresh now and then (see lag)
        self._changes: list[tuple[str, set[TopicPartition]]] = []
        self._changes_lock = threading.Lock()
        self._unreachable_logged = -math.inf  # when a failed poll was last logged (once per 30 s)
        self.consumer.subscribe(pattern=f"^(?:{raw}.+|{re.escape(settings.qc_topic)})$",
                                listener=_Ownership(self._record))

    def _record(self, change: str, partitions: set[TopicPartition]) -> None:
        # kafka-python 3 runs rebalance listeners on its IO thread: only note the change here
        with self._changes_lock:
            self._changes.append((change, set(partitions)))

    def ownership_changes(self) -> list[tuple[str, set[TopicPartition]]]:
        """("revoked" | "assigned", partitions) since the last call, in order (runner's thread)."""
        with self._changes_lock:
            changes, self._changes = self._changes, []
        if changes:
            self._next.clear()  # positions are the consumer's again until records arrive
        return changes

    def next_batch(self) -> list[RawMessage]:
        """The next batch, or none while the broker cannot be reached.

        kafka-python's poll can raise a connection error of its own (validating positions needs fresh
        metadata) when the broker has just gone: that is an empty poll, not a reason for the worker to
        fail; the consumer reconnects by itself, and the runner's stop and retry handling go on."""
        try:
            records = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                raise
            now = time.monotonic()
            if now - self._unreachable_logged > 30:
                log.warning("cannot poll the broker (%s: %s); retrying", type(exc).__name__, exc)
                self._unreachable_logged = now
            time.sleep(self.poll_timeout_ms / 1000)  # what the poll would have waited
            return []
        batch: list[RawMessage] = []
        for tp, msgs in records.items():
            if msgs:
                self._next[tp] = msgs[-1].offset + 1
            topic, partition = tp.topic, tp.partition
            # positional: keyword arguments cost a fifth more, once per message consumed
            batch.extend([RawMessage(topic, b"" if m.value is None else m.value, m.key, partition, m.offset, m.timestamp)
                          for m in msgs])
        return batch

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition, as far as the last fetch knows; -1 for a
        partition not fetched yet (just assigned, or the broker is back from a restart): unknown is not
        "caught up", or its machines would be judged silent while their messages wait."""
        out = {}
        if time.monotonic() - self._next_since > POSITIONS_REFRESH_SECONDS:
            self._next.clear()
            self._next_since = time.monotonic()
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            position = self._next.get(tp)
            if position is None:
                try:
                    position = self.consumer.position(tp, timeout_ms=0)
                except Exception:  # position unknown right after a rebalance
                    position = None
                if position is not None:  # most partitions of a topic hold no records: kept until refreshed
                    self._next[tp] = position
            out[(tp.topic, tp.partition)] = -1 if high is None or position is None else max(0, high - position)
        return out

    def membership_in_doubt(self) -> str | None:
        """Why the group may have given this consumer's partitions to another, or None while it surely
        holds them: no heartbeat answered for longer than the session timeout (the broker drops a member
        then), or the coordinator said it no longer knows this member. kafka-python tells only its own
        rejoin logic, so this reads the coordinator's heartbeat and generation.

        Once in doubt, it stays in doubt until the group confirms: a heartbeat answered since, or a new
        generation (a rejoin, whose assignment the rebalance listener has reported). Finding the
        coordinator again resets the heartbeat's clock, which proves nothing about the membership."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        if coordinator is None or not self.consumer.assignment():
            self._doubt = None
            return None
        heartbeat, group = coordinator.heartbeat, coordinator.group_metadata()
        expired = heartbeat.session_timeout_expired()
        lost = Generation(group.generation_id, group.member_id, None).is_lost()
        if self._doubt is None:
            if not (expired or lost):
                return None
            why = (f"no heartbeat answered for longer than the session timeout "
                   f"({self.settings.session_timeout_ms / 1000:g} s)" if expired
                   else "the group coordinator no longer knows this worker")
            self._doubt = (time.monotonic(), group.generation_id, group.member_id, why)
            return why
        since, generation, member, why = self._doubt
        rejoined = (group.generation_id, group.member_id) != (generation, member)
        if not (expired or lost) and (rejoined or heartbeat.last_receive > since):
            self._doubt = None
            return None
        return why

    def give_back(self, batch: Iterable[RawMessage]) -> None:
        """Read these messages again at the next polls: each partition goes back to its first offset here
        (those no longer assigned are the new owner's, who reads them from its own position)."""
        first: dict[TopicPartition, int] = {}
        for m in batch:
            tp = TopicPartition(m.topic, m.partition)
            first[tp] = min(m.offset, first.get(tp, m.offset))
        assigned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
                self._next[tp] = offset

    def rewind(self, partitions: set[TopicPartition], learned: dict[tuple[str, int], int]) -> None:
        """Read these partitions on from where the checkpoints just loaded left off.

        That is the later of the committed offset and the offset the checkpoint recorded (``learned``,
        see ``linewatch.pipeline.Restored``), not this consumer's position: in an eager rebalance every
        partition is revoked, and one this worker keeps keeps its position (kafka-python preserves it),
        which may be past the checkpoint by what was read since; reading on from there would skip it.
        """
        assigned = self.consumer.assignment()
        self._next.clear()
        for tp in partitions:
            if tp not in assigned:
                continue
            committed = self.consumer.committed(tp, timeout_ms=int(CALL_TIMEOUT_SECONDS * 1000))
            target = max(committed or 0, learned.get((tp.topic, tp.partition), 0))
            if committed is None and target == 0:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, target)

    def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The offset the next record of each (topic, partition) will get (bounded by CALL_TIMEOUT_SECONDS)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        ends = self.consumer.end_offsets(tps, timeout_ms=int(CALL_TIMEOUT_SECONDS * 1000))
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    def partition_count(self, topic: str) -> int:
        return len(self.consumer.partitions_for_topic(topic) or ())

    def commit(self) -> None:
        """Commit the positions of everything polled so far (the runner calls this after durability).

        If the group rebalanced meanwhile, the commit is refused: the partitions' new owner replays
        from the last committed offset (at least once), so this worker logs it and goes on.
        """
        try:
            self.consumer.commit(timeout_ms=int(CALL_TIMEOUT_SECONDS * 1000))  # KafkaTimeoutError past it
        except (CommitFailedError, RebalanceInProgressError) as exc:
            log.warning("offsets not committed, the group is rebalancing (%s); the new owner replays them", exc)

    def assignment(self) -> set[TopicPartition]:
        return self.consumer.assignment()

    def keep_alive(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds`` (less once ``stop`` is set) without reading on, while a write is retried.

        A Kafka consumer must keep polling or it leaves its group after max.poll.interval.ms (5 min),
        so its partitions are paused and it polls for nothing; a rebalance meanwhile is recorded and
        applied at the next checkpoint. A partition assigned during such a poll is not paused yet:
        whatever it returns is handed back with a seek to its first offset, unread.
        """
        consumer = self.consumer
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                consumer.pause(*consumer.assignment())
                records = consumer.poll(timeout_ms=int(min(left, 1.0) * 1000))
                for tp, msgs in records.items():
                    if msgs:
                        consumer.seek(tp, msgs[0].offset)
                        consumer.pause(tp)
            except Exception as exc:  # noqa: BLE001 - the broker may be away too: just wait
                log.debug("keep-alive poll failed (%s: %s)", type(exc).__name__, exc)
                stop.wait(min(left, 1.0))

    def resume(self) -> None:
        """Read on from every partition ``keep_alive`` paused."""
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    def close(self) -> None:
        self.consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_SECONDS * 1000))


class _Ownership(ConsumerRebalanceListener):
    def __init__(self, record: Callable[[str, set[TopicPartition]], None]):
        self.record = record

    def on_partitions_revoked(self, revoked) -> None:
        self.record("revoked", set(revoked))

    def on_partitions_assigned(self, assigned) -> None:
        self.record("assigned", set(assigned))


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``key`` in (murmur2, as the Java client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % max(1, partitions)


def owners(partitions: set[TopicPartition], raw_prefix: str, qc_topic: str, partition_count: Callable[[str], int],
           qc_stations: dict[str, str]) -> tuple[set[str], set[str]]:
    """The machines and lines whose state lives with these partitions.

    A machine's readings are on ``<prefix><machine>`` keyed by the machine id, so they sit in the one
    partition that key hashes to; a line's failure-rate monitor follows the partition of its QC
    station's key on the QC topic (``qc_stations`` maps each station to its line).
    """
    machines = {tp.topic[len(raw_prefix):] for tp in partitions if tp.topic.startswith(raw_prefix)
                and tp.partition == key_partition(tp.topic[len(raw_prefix):], partition_count(tp.topic))}
    qc = {tp.partition for tp in partitions if tp.topic == qc_topic}
    lines = {line for station, line in qc_stations.items()
             if key_partition(station, partition_count(qc_topic)) in qc}
    return machines, lines


class KafkaSink:
    """Writes rejections to the dead-letter topic and alert events to the alerts topic, and waits for acks.

    ``stop`` is the worker's stop request: a wait for acknowledgements gives up when it is set (the
    runner then stops without committing the batch, which is replayed), and otherwise after
    CALL_TIMEOUT_SECONDS (the runner retries).

    A retried write does not send again what the producer still holds: a record sent by an earlier
    attempt that is still waiting for the broker (or was acknowledged) is waited on, not sent a second
    time, so an outage longer than one attempt does not announce an alert once per attempt. Only
    records the producer itself gave up on (its delivery timeout) are sent again.
    """

    def __init__(self, settings: Settings, stop: threading.Event | None = None):
        assert settings.kafka_bootstrap
        self.settings = settings
        self.stop = stop or threading.Event()
        timeout_ms = int(CALL_TIMEOUT_SECONDS * 1000)
        # the producer keeps retrying a record (idempotently: the broker drops its own duplicates) for
        # delivery_timeout_ms; the runner's attempts wait on those same records meanwhile
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, client_id="linewatch-worker",
                                      linger_ms=5, max_block_ms=timeout_ms, request_timeout_ms=timeout_ms,
                                      delivery_timeout_ms=DELIVERY_TIMEOUT_MS)
        self._in_flight: dict[_Record, Any] = {}  # the last unfinished write's records and their futures

    def write(self, rejections: Sequence[Rejection], events: Sequence[AlertEvent]) -> None:
        """Send and block until the broker has acknowledged every record; raises if any failed."""
        records = [self._dead_letter(r) for r in rejections] + [self._alert_record(ev) for ev in events]
        if not records:
            return
        earlier, self._in_flight = self._in_flight, {}
        futures = []
        for record in records:
            future = earlier.get(record)
            if future is None or (future.is_done and future.failed()):
                topic, key, value, headers = record
                future = self.producer.send(topic, key=key, value=value, headers=list(headers) or None)
            self._in_flight[record] = future
            futures.append(future)
        self._await_acks(len(futures))
        for f in futures:
            f.get(timeout=CALL_TIMEOUT_SECONDS)  # re-raises the send's error, so the batch is not committed
        self._in_flight = {}

    def _dead_letter(self, r: Rejection) -> _Record:
        headers = (("reason", r.reason.encode()), ("detail", r.detail.encode("utf-8", "replace")[:1000]),
                   ("source_topic", r.source.topic.encode()),
                   ("source_partition", str(r.source.partition).encode()),
                   ("source_offset", str(r.source.offset).encode()),
                   ("profile", r.source.manufacturer.encode()), ("machine", (r.machine or "").encode()))
        return self.settings.dlq_topic, r.key, r.raw, headers

    def _alert_record(self, ev: AlertEvent) -> _Record:
        body = {"event": ev.type.value, "alert": ev.alert.to_dict()}
        return self.settings.alerts_topic, ev.alert.id.encode(), json.dumps(body).encode(), ()

    def _await_acks(self, records: int) -> None:
        deadline = time.monotonic() + CALL_TIMEOUT_SECONDS
        while True:
            try:
                self.producer.flush(timeout=FLUSH_SLICE_SECONDS)
                return
            except KafkaTimeoutError:
                if self.stop.is_set():
                    raise WriteAbandoned(f"stop requested while the broker had not acknowledged {records} "
                                         "record(s)") from None
                if time.monotonic() >= deadline:
                    raise KafkaTimeoutError(f"the broker did not acknowledge {records} record(s) within "
                                            f"{CALL_TIMEOUT_SECONDS:.0f} s") from None

    def close(self) -> None:
        self.producer.close(timeout=CLOSE_TIMEOUT_SECONDS)


def raw_producer(bootstrap: str) -> KafkaProducer:
    """A producer for raw readings as machines and gateways would publish them."""
    return KafkaProducer(bootstrap_servers=bootstrap, client_id="linewatch-simulator", linger_ms=10,
                         batch_size=65536, max_block_ms=int(CALL_TIMEOUT_SECONDS * 1000))
