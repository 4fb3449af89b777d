"""Helpers for tests against the real broker: produce a line, run a worker, read back what it did;
and brokers and databases of a test's own, for the tests that stop and restart them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from linewatch.alerts.publish import TerminalPrinter
from linewatch.config import PlantConfig
from linewatch.domain import RawMessage
from linewatch.service import Service, build_service
from linewatch.settings import Settings
from linewatch.sources.kafka import KafkaSink, KafkaSource, ensure_topics


def audit_after_faults(database_url: str, expected: dict[str, tuple], machines, line_seconds: int) -> dict[str, tuple]:
    """What every fault test checks at the end, in the database the workers shared: the same alert
    episodes, with the same ids, as an uninterrupted worker (``expected``: id -> (kind, machine,
    started_at)), and every reading learned exactly once by its machine's model and every QC result
    by the line's monitor (a simulated line gives each machine one reading and one QC result per
    second). Returns the stored alerts."""
    import pickle

    import sqlalchemy as sa

    from linewatch.alerts.store import AlertStore

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        alerts = {row.id: (row.kind, row.machine, row.started_at)
                  for row in conn.execute(sa.text("SELECT id, kind, machine, started_at FROM alerts"))}
        states = {row.key: row.state for row in conn.execute(sa.text("SELECT key, state FROM detector_state"))}
    engine.dispose()
    # each machine's first calibration recorded once, whoever learned it and however often it was
    # interrupted, and every anomaly alert names a version its machine has
    store = AlertStore(database_url)
    try:
        for machine in machines:
            versions = store.model_versions(machine)
            assert [(v.version, v.reason, v.status) for v in versions] == [(1, "first_calibration", "active")], (
                machine, versions)
            assert versions[0].readings == 700 and versions[0].state_kept, versions[0]
        for alert in store.query(kind=["anomaly"], limit=10_000):
            known = {v.version for v in store.model_versions(alert.machine)}
            assert alert.details.get("model_version") in known, (alert.id, alert.details.get("model_version"), known)
    finally:
        store.close()
    extra = sorted(map(str, (alerts[i] for i in set(alerts) - set(expected))))
    missing = sorted(map(str, (expected[i] for i in set(expected) - set(alerts))))
    assert not extra and not missing, f"extra: {extra}\nmissing: {missing}"
    assert {"anomaly", "failure_rate"} <= {v[0] for v in alerts.values()}
    for machine in machines:
        assert pickle.loads(states[f"machine:{machine}"])["model"].seen == line_seconds, machine
    assert pickle.loads(states["line:line-1"])["monitor"].units == line_seconds
    return alerts


def worker_env(settings: Settings, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `linewatch run` process on this test's topics, group and database
    (``extra``: more LINEWATCH_* variables, named without the prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")}
    env.update({"LINEWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
                "LINEWATCH_CONSUMER_GROUP": settings.consumer_group,
                "LINEWATCH_RAW_TOPIC_PREFIX": settings.raw_topic_prefix, "LINEWATCH_QC_TOPIC": settings.qc_topic,
                "LINEWATCH_DLQ_TOPIC": settings.dlq_topic, "LINEWATCH_ALERTS_TOPIC": settings.alerts_topic,
                "LINEWATCH_TOPIC_PARTITIONS": str(settings.topic_partitions), "LINEWATCH_DATABASE_URL": database_url})
    env.update({f"LINEWATCH_{k.upper()}": str(v) for k, v in extra.items()})
    return env


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
        stop = threading.Event()
        self.sink = KafkaSink(settings, stop)
        self.service: Service = build_service(settings, config, self.source, [self.sink], TerminalPrinter(), stop=stop)
        assert self.service.http is not None
        self.service.http.start()
        self.url = f"http://127.0.0.1:{self.service.http.port}"
        self.thread = threading.Thread(target=self.service.runner.run, daemon=True)
        self.thread.start()

    def runner_ready(self) -> bool:
        return self.service.runner.ready.is_set()

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


def topic_size(settings: Settings, topic: str) -> int:
    """How many records a topic holds (the sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


# ------------------------------------------------------------ servers a test may stop and start again

REPO = Path(__file__).resolve().parents[2]


def free_port(span: int = 1) -> int:
    """A loopback port with the ``span - 1`` ports after it free too (Kafka's controller uses port + 1)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + span > 65535:
            continue
        free = True
        for p in range(port + 1, port + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    free = False
                    break
        if free:
            return port
    raise RuntimeError("no free port")


class LocalServer:
    """scripts/kafka-local or scripts/postgres-local on a port and state directory of this test's own
    (never the suite's shared server), with its data kept across stop and start: an outage, not a
    new server. ``destroy`` stops it for good and deletes the data."""

    def __init__(self, script: str, env_prefix: str, state: Path, port: int):
        self.script = str(REPO / "scripts" / script)
        self.env = {**os.environ, f"{env_prefix}_PORT": str(port), f"{env_prefix}_STATE": str(state)}
        self.keep = f"{env_prefix}_KEEP_DATA"
        self.port = port
        self.address = ""

    def _run(self, command: str, keep: bool = True, timeout: float = 120) -> str:
        env = {**self.env, self.keep: "1" if keep else ""}
        done = subprocess.run([self.script, command], env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{self.script} {command} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout.strip()

    def start(self) -> str:
        self.address = self._run("start")
        return self.address

    def stop(self) -> None:
        self._run("stop")

    def destroy(self) -> None:
        self._run("stop", keep=False)


@pytest.fixture
def own_kafka(kafka_bootstrap, tmp_path):
    """A single-node broker of this test's own (the shared one must never be stopped). Needs what
    the shared broker needs, so it is skipped or failed exactly when kafka_bootstrap is."""
    server = LocalServer("kafka-local", "LINEWATCH_KAFKA", tmp_path / "kafka-state", free_port(span=2))
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test's own (the suite's shared one must never be stopped). Skipped
    without the suite's PostgreSQL (LINEWATCH_TEST_DATABASE_URL), failed if LINEWATCH_REQUIRE_POSTGRES=1."""
    if not os.environ.get("LINEWATCH_TEST_DATABASE_URL"):
        reason = "LINEWATCH_TEST_DATABASE_URL is not set (scripts/postgres-local start prints one, or run scripts/test)"
        if os.environ.get("LINEWATCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + "; LINEWATCH_REQUIRE_POSTGRES=1 makes this a failure")
        pytest.skip(reason)
    # Not under tmp_path: as root the script runs PostgreSQL as the postgres user, who cannot enter
    # pytest's private temporary directory to write the server log.
    state = Path(tempfile.mkdtemp(prefix="linewatch-test-pg-state-"))
    server = LocalServer("postgres-local", "LINEWATCH_PG", state, free_port())
    try:
        server.start()
        yield server
    finally:
        try:
            server.destroy()
        finally:
            shutil.rmtree(state, ignore_errors=True)


def own_settings(bootstrap: str, database_url: str, **overrides) -> Settings:
    """Settings with topics and a consumer group of this test's own."""
    tag = uuid.uuid4().hex[:8]
    values = dict(kafka_bootstrap=bootstrap, consumer_group=f"linewatch-test-{tag}",
                  raw_topic_prefix=f"t{tag}.raw.", qc_topic=f"t{tag}.qc", dlq_topic=f"t{tag}.dlq",
                  alerts_topic=f"t{tag}.alerts", topic_partitions=4, metadata_max_age_ms=1000,
                  database_url=database_url, http_port=0)
    values.update(overrides)
    return Settings(**values)
