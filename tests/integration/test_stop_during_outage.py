"""SIGTERM while the broker is away: the worker stops within LINEWATCH_STOP_TIMEOUT_SECONDS with exit
status 3 (not a clean stop), commits nothing it had not made durable, and the next worker, once the
broker is back, finishes the line with every reading learned once and the same alerts as a clean run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import audit_after_faults, committed_lag, create_topics, free_port, own_settings, produce, worker_env
from .test_broker_restart import FAULTS, expected_alerts
from .test_sigterm import readings_scored

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LINE_SECONDS = 4_000  # a spike at 900 s and a failure-rate rise from 1,500 s: both kinds of alert
STOP_TIMEOUT = 20


def committed_offsets(bootstrap: str, group: str, timeout: float = 60.0) -> dict:
    """The group's committed offsets, asked until a broker just restarted has loaded them (its group
    coordinator answers 'load in progress', a retriable error, meanwhile)."""
    deadline = time.monotonic() + timeout
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        while True:
            try:
                offsets = admin.list_group_offsets(group).get(group, {})
            except KafkaError as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}
    finally:
        admin.close()


def test_sigterm_while_the_broker_is_down_exits_3_within_the_bound(own_kafka, config, tmp_path, processes):
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    settings = own_settings(own_kafka.address, db)
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    produce(settings, messages)
    expected = expected_alerts(settings, config, messages)

    # no periodic checkpoint: everything this worker learns is still uncommitted when the broker goes
    port = free_port()
    env = worker_env(settings, db, checkpoint_seconds=3600, stop_timeout_seconds=STOP_TIMEOUT)
    worker = processes.start([sys.executable, "-m", "linewatch.cli", "run", "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 90
    while readings_scored(port) < 4 * LINE_SECONDS:
        assert worker.poll() is None, worker.stderr.read()
        assert time.monotonic() < deadline, "the worker did not read the line within 90 s"
        time.sleep(0.2)

    own_kafka.stop()  # the broker goes away (its data kept): the worker can neither write nor commit
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(STOP_TIMEOUT + 10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SIGTERM ignored for {STOP_TIMEOUT + 10} s with the broker down") from None
    took = time.monotonic() - asked
    stderr = worker.stderr.read()
    assert code == 3, stderr[-3000:]
    assert took <= STOP_TIMEOUT, f"stopped after {took:.1f} s, limit {STOP_TIMEOUT}"
    assert "stopped during an outage" in stderr, stderr[-3000:]
    assert "has not stopped; exiting now" not in stderr  # the bounded calls did it, not the watchdog
    # kafka-python logs the lost connections with their tracebacks; none may come from linewatch itself
    assert "/src/linewatch/" not in stderr, stderr[-3000:]

    own_kafka.start()
    assert committed_offsets(settings.kafka_bootstrap, settings.consumer_group) == {}  # nothing committed

    # the broker is back: a new worker finishes the line from the durable checkpoint
    port = free_port()
    worker = processes.start([sys.executable, "-m", "linewatch.cli", "run", "--port", str(port)],
                             env=worker_env(settings, db, checkpoint_seconds=0.5), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while committed_lag(settings) != 0:
        assert worker.poll() is None, f"the second worker exited ({worker.returncode})"
        assert time.monotonic() < deadline, "the second worker did not commit the line within 120 s"
        time.sleep(0.5)
    assert processes.end(worker) == 0
    audit_after_faults(db, expected, config.machines, LINE_SECONDS)
