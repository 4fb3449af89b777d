"""A gateway re-sends a quarter of the line's QC results through the real broker (issue 16): the
line monitor counts every unit once and no alert is announced again, as in a clean run."""

from __future__ import annotations

import json
from collections import Counter

from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import RunningWorker, committed_lag, create_topics, produce, read_topic, topic_size
from .test_broker_restart import FAULTS, T0

LINE_SECONDS = 6_000


def test_a_replayed_quarter_of_the_qc_results_is_not_counted_or_announced_again(kafka_settings, config, tmp_path):
    settings = kafka_settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'alerts.db'}",
                                                 "checkpoint_seconds": 1.0})
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    qc = [m for m in messages if m.topic == settings.qc_topic]
    produce(settings, messages)
    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: committed_lag(settings) == 0, what="the line to be read")
        units = worker.get("/api/v1/lines").json()["lines"][0]["units"]
        assert units == len(qc)
        before = read_topic(settings, settings.alerts_topic, expected=topic_size(settings, settings.alerts_topic))
        produce(settings, qc[:len(qc) // 4])  # the re-send
        worker.wait_for(lambda: committed_lag(settings) == 0, what="the re-sent results to be read")
        assert worker.get("/api/v1/lines").json()["lines"][0]["units"] == units
        replayed = worker.get("/metrics").text
        assert f'linewatch_qc_replayed_total{{line="line-1"}} {float(len(qc) // 4)}' in replayed
    finally:
        worker.stop()
    records = read_topic(settings, settings.alerts_topic, expected=topic_size(settings, settings.alerts_topic))
    rate = [json.loads(r.value) for r in records if json.loads(r.value)["alert"]["kind"] == "failure_rate"]
    assert len(rate) == sum(json.loads(r.value)["alert"]["kind"] == "failure_rate" for r in before)  # none again
    fired = Counter(e["alert"]["id"] for e in rate if e["event"] == "fired")
    assert fired and max(fired.values()) == 1
