"""Helpers for tests against the real broker: produce a line, run a worker, read back what it did."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from linewatch.alerts.publish import TerminalPrinter
from linewatch.config import PlantConfig
from linewatch.domain import RawMessage
from linewatch.service import Service, build_service
from linewatch.settings import Settings
from linewatch.sources.kafka import KafkaSink, KafkaSource, ensure_topics


def create_topics(settings: Settings, config: PlantConfig) -> None:
    ensure_topics(settings.kafka_bootstrap, [f"{settings.raw_topic_prefix}{m}" for m in config.machines]
                  + [settings.qc_topic, settings.dlq_topic, settings.alerts_topic], settings.topic_partitions)


def produce(settings: Settings, messages: Iterable[RawMessage]) -> int:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    n = 0
    for m in messages:
        producer.send(m.topic, key=m.key, value=m.value)
        n += 1
    producer.flush()
    producer.close()
    return n


class RunningWorker:
    """A real worker (consumer, pipeline, store, DLQ/alert producer, HTTP server) in a thread."""

    def __init__(self, settings: Settings, config: PlantConfig):
        self.source = KafkaSource(settings, poll_timeout_ms=200)
        self.sink = KafkaSink(settings)
        self.service: Service = build_service(settings, config, self.source, [self.sink], TerminalPrinter())
        assert self.service.http is not None
        self.service.http.start()
        self.url = f"http://127.0.0.1:{self.service.http.port}"
        self.thread = threading.Thread(target=self.service.runner.run, daemon=True)
        self.thread.start()

    def get(self, path: str, **params) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=10)

    def wait_for(self, predicate, timeout: float = 90.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(timeout=30)
        self.source.close()
        self.sink.close()
        self.service.close()


def committed_lag(settings: Settings) -> int | None:
    """Messages on the input topics that the worker's group has not committed (None: the broker
    cannot say yet, e.g. the group coordinator of a fresh broker is still being elected)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets(settings.consumer_group).get(settings.consumer_group, {})
    except KafkaError as exc:
        if getattr(exc, "retriable", False):
            return None
        raise
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    topics = [t for t in consumer.topics() if t.startswith(settings.raw_topic_prefix) or t == settings.qc_topic]
    from kafka import TopicPartition

    partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


def read_topic(settings: Settings, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    records, deadline = [], time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for msgs in consumer.poll(timeout_ms=500).values():
            records.extend(msgs)
    consumer.close()
    return records
