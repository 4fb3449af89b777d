"""kill -9 the worker at random points while it works through a faulty line; afterwards every reading
was processed, no alert is duplicated, and each model continued from its checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

from .conftest import audit_after_faults, committed_lag, create_topics, free_port, produce
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


def test_kill_9_five_times_loses_nothing_and_duplicates_nothing(kafka_settings, config, tmp_path):
    settings = kafka_settings
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    produce(settings, messages)

    expected = expected_alerts(settings, config, messages)  # what an uninterrupted worker concludes

    db = tmp_path / "alerts.db"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")},
           "LINEWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "LINEWATCH_CONSUMER_GROUP": settings.consumer_group,
           "LINEWATCH_RAW_TOPIC_PREFIX": settings.raw_topic_prefix, "LINEWATCH_QC_TOPIC": settings.qc_topic,
           "LINEWATCH_DLQ_TOPIC": settings.dlq_topic, "LINEWATCH_ALERTS_TOPIC": settings.alerts_topic,
           "LINEWATCH_DATABASE_URL": f"sqlite:///{db}", "LINEWATCH_CHECKPOINT_SECONDS": "0.25",
           "LINEWATCH_SESSION_TIMEOUT_MS": "6000"}  # a killed life's partitions are handed on sooner
    # Kill points are chosen by progress, not by the clock: a fast worker would otherwise finish the whole
    # line before a timed kill (it did, in CI). Each life is killed once its group has committed a random
    # 3-10% of the line beyond where it started, so it is always mid-stream and five lives never finish.
    rng = random.Random(11)
    progress = CommittedProgress(settings)
    kills = 0
    deadline = time.monotonic() + 600
    try:
        while kills < 5 and time.monotonic() < deadline:
            start = progress.committed()
            target = start + int(rng.uniform(0.03, 0.10) * len(messages))
            worker = subprocess.Popen([sys.executable, "-m", "linewatch.cli", "run", "--port", str(free_port())],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
            while progress.committed() < target and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.2))  # anywhere between two checkpoints
            assert worker.poll() is None, f"the worker exited by itself (code {worker.returncode})"
            assert progress.committed() < len(messages), "the worker finished the line before its fifth kill"
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            kills += 1
        worker = subprocess.Popen([sys.executable, "-m", "linewatch.cli", "run", "--port", str(free_port())],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        try:
            while progress.committed() < len(messages) and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            worker.terminate()  # SIGTERM: finish the batch, checkpoint, commit, close
            assert worker.wait(60) == 0
    finally:
        progress.close()
    assert kills == 5, f"the worker finished before it could be killed five times ({kills})"
    assert committed_lag(settings) == 0

    # no alert duplicated, none missing (the same episodes, with the same ids, as without crashes), and
    # every reading processed exactly once by each machine's model, across six processes
    audit_after_faults(f"sqlite:///{db}", expected, config.machines, LINE_SECONDS)
