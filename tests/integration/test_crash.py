"""kill -9 the worker at random points while it works through a faulty line; afterwards every reading
was processed, no alert is duplicated, and each model continued from its checkpoint."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

from .conftest import audit_after_faults, committed_lag, create_topics, free_port, worker_env
from .test_broker_restart import expected_alerts

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LINE_SECONDS = 25_000  # 100,000 readings from four machines, and 25,000 QC verdicts
FAULTS = (Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),
          Fault("failure_rate", "checkweigher-1", start=1500, duration=1800, magnitude=0.20),
          Fault("drift", "dryer-1", start=6000, duration=900, sensor="dryer_air_temperature", magnitude=8.0),
          Fault("spike", "cutter-1", start=15000, duration=30, sensor="knife_speed", magnitude=200.0))


class CommittedProgress:
    """How many of the line's messages the worker's group has committed, asked cheaply and often (one
    admin client for the whole test, not one per question)."""

    def __init__(self, settings) -> None:
        self.group = settings.consumer_group
        self.admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self.prefixes = (settings.raw_topic_prefix, settings.qc_topic)

    def committed(self) -> int:
        try:
            offsets = self.admin.list_group_offsets(self.group).get(self.group, {})
        except KafkaError as exc:
            if getattr(exc, "retriable", False):
                return 0  # a fresh group's coordinator is still being elected
            raise
        return sum(meta.offset for tp, meta in offsets.items()
                   if meta.offset > 0 and tp.topic.startswith(self.prefixes))

    def close(self) -> None:
        self.admin.close()


class GatedLine:
    """Produces the line only as far as the test allows: the line's end cannot be reached before the
    test lets it, however fast the worker, so a kill point can never be "too late"."""

    def __init__(self, settings, messages) -> None:
        self.messages = messages
        self.produced = 0
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)

    def up_to(self, limit: int) -> None:
        limit = min(limit, len(self.messages))
        for m in self.messages[self.produced:limit]:  # in order: one producer keeps each partition's order
            self.producer.send(m.topic, key=m.key, value=m.value)
        if limit > self.produced:
            self.producer.flush(timeout=30)
            self.produced = limit

    def close(self) -> None:
        self.producer.close(timeout=10)


AHEAD = 6_000  # messages produced beyond a kill point while the worker heads for it
CHUNK = 500


def test_kill_9_five_times_loses_nothing_and_duplicates_nothing(kafka_settings, config, tmp_path, processes):
    settings = kafka_settings
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    expected = expected_alerts(settings, config, messages)  # what an uninterrupted worker concludes

    db = tmp_path / "alerts.db"
    env = worker_env(settings, f"sqlite:///{db}", checkpoint_seconds=0.25,
                     session_timeout_ms=6000)  # a killed life's partitions are handed on sooner
    # Kill points are offsets of the line, one in each of its first five sixths, and the line is produced
    # only up to AHEAD messages past the next kill point (CHUNK by CHUNK while the worker heads there):
    # each life is killed once its group has committed past its point, with live messages still arriving
    # and the rest of the line not yet produced. Nothing here depends on how fast the worker is.
    rng = random.Random(11)
    n = len(messages)
    points = [int(n * (k + rng.uniform(0.2, 0.8)) / 6) for k in range(5)]
    line = GatedLine(settings, messages)
    progress = CommittedProgress(settings)
    deadline = time.monotonic() + 600

    def start():
        return processes.start([sys.executable, "-m", "linewatch.cli", "run", "--port", str(free_port())], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)

    try:
        for point in points:
            line.up_to(point + CHUNK)
            worker = start()
            while progress.committed() < point:
                assert worker.poll() is None, f"the worker exited by itself (code {worker.returncode})"
                assert time.monotonic() < deadline, f"no life reached offset {point} within the test's 10 minutes"
                line.up_to(min(line.produced + CHUNK, point + AHEAD))
                time.sleep(0.02)
            line.up_to(min(line.produced + CHUNK, point + AHEAD))
            time.sleep(rng.uniform(0.0, 0.2))  # anywhere between two checkpoints
            assert worker.poll() is None, f"the worker exited by itself (code {worker.returncode})"
            assert line.produced < n
            processes.end(worker, signal.SIGKILL)
        line.up_to(n)
        worker = start()
        while progress.committed() < n:
            assert worker.poll() is None, f"the last worker exited by itself (code {worker.returncode})"
            assert time.monotonic() < deadline, "the last life did not finish the line within the test's 10 minutes"
            time.sleep(0.5)
        assert processes.end(worker) == 0  # SIGTERM: finish the batch, checkpoint, commit, close
    finally:
        progress.close()
        line.close()
    assert committed_lag(settings) == 0

    # no alert duplicated, none missing (the same episodes, with the same ids, as without crashes), and
    # every reading processed exactly once by each machine's model, across six processes
    audit_after_faults(f"sqlite:///{db}", expected, config.machines, LINE_SECONDS)
