"""The broker goes away mid-stream and comes back: the worker reconnects and loses nothing.

A broker of the test's own (scripts/kafka-local on its own port and state directory, its log
directory kept across the restart) is stopped while a worker is part-way through a faulty line and
started again; afterwards every reading was learned exactly once, every offset is committed, and the
alerts are exactly those of an uninterrupted run, each announced once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone

from linewatch.alerts.lifecycle import AlertBook
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

from .conftest import (RunningWorker, audit_after_faults, committed_lag, create_topics, own_settings, produce,
                       read_topic, topic_size)
from .test_worker_kafka import metric_total

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
# 96,000 readings from four machines and 24,000 QC verdicts; 60 % published before the outage, the rest
# after it.
LINE_SECONDS = 24_000
FAULTS = (Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),
          Fault("failure_rate", "checkweigher-1", start=1500, duration=1800, magnitude=0.20),
          Fault("drift", "dryer-1", start=6000, duration=900, sensor="dryer_air_temperature", magnitude=8.0),
          Fault("spike", "cutter-1", start=15000, duration=30, sensor="knife_speed", magnitude=200.0))

def expected_alerts(settings, config, messages) -> dict[str, tuple]:
    """What an uninterrupted worker concludes from the same messages."""
    reference = Pipeline(config, Metrics(), AlertBook(), normalizer=None)
    reference.normalizer.raw_prefix, reference.normalizer.qc_topic = settings.raw_topic_prefix, settings.qc_topic
    expected = {}
    for i in range(0, len(messages), 2000):
        for ev in reference.process(messages[i:i + 2000]).events:
            expected[ev.alert.id] = (ev.alert.kind.value, ev.alert.machine, ev.alert.started_at)
    return expected


def test_the_broker_restarts_mid_stream_and_nothing_is_lost(own_kafka, config, tmp_path):
    db = tmp_path / "alerts.db"
    settings = own_settings(own_kafka.address, f"sqlite:///{db}", checkpoint_seconds=1.0, max_poll_records=200)
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    expected = expected_alerts(settings, config, messages)
    # the line's last 40 % is produced only after the outage: the broker goes away part-way through the
    # line by construction, however fast the worker (its first 60 % may or may not be read by then)
    split = int(len(messages) * 0.6)
    produce(settings, messages[:split])
    total_readings = 4 * LINE_SECONDS

    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: metric_total(worker, "linewatch_readings_total") >= 2000, timeout=60,
                        what="the worker to be under way")
        own_kafka.stop()
        stopped_at = metric_total(worker, "linewatch_readings_total")
        assert stopped_at < 0.9 * total_readings, "the worker finished before the broker went away"
        time.sleep(8)  # consumer, committer and producer all find the broker gone
        assert worker.thread.is_alive(), "the worker died with the broker"
        own_kafka.start()  # the same log directory: topics, records and committed offsets are back
        produce(settings, messages[split:])
        worker.wait_for(lambda: committed_lag(settings) == 0, timeout=75,
                        what="the worker to reconnect and commit every offset")
        assert worker.thread.is_alive()
        assert worker.get("/readyz").json() == {"ready": True, "worker": True, "store": True, "reason": None}
    finally:
        worker.stop()

    assert committed_lag(settings) == 0  # offsets committed to the end, also after the final stop
    # every reading processed, and learned exactly once: what was polled but not committed before the
    # outage is replayed after it, and the replay is recognised instead of being learned twice
    audit_after_faults(f"sqlite:///{db}", expected, config.machines, LINE_SECONDS)
    # each alert announced once on the alerts topic, none twice
    records = read_topic(settings, settings.alerts_topic, expected=topic_size(settings, settings.alerts_topic))
    fired = Counter(json.loads(r.value)["alert"]["id"] for r in records if json.loads(r.value)["event"] == "fired")
    assert set(fired) == set(expected)
    assert max(fired.values()) == 1, {k: n for k, n in fired.items() if n > 1}
