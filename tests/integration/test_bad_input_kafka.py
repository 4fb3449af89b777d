"""Every message accounted for on the real broker: scored, or in the DLQ with its reason."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

from linewatch.domain import RawMessage
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import RunningWorker, committed_lag, create_topics, produce, read_topic
from .test_worker_kafka import metric_total

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def poison(topic_prefix: str, qc_topic: str, good: RawMessage, rng: random.Random) -> tuple[RawMessage, str]:
    body = json.loads(good.value)
    t = good.topic
    options = [
        (RawMessage(t, good.value[: rng.randint(1, len(good.value) - 1)], good.key), "not_json"),
        (RawMessage(t, json.dumps(body).encode("utf-16"), good.key), "not_utf8"),
        (RawMessage(t, b"[]", good.key), "not_object"),
        (RawMessage(f"{topic_prefix}press-9", good.value, b"press-9"), "unknown_machine"),
        (RawMessage(t, json.dumps({**body, "station": "CW1", "gross_g": "heavy"}).encode(), good.key), "non_numeric"),
        (RawMessage(t, json.dumps({"station": "CW1", "gross_g": 250.0}).encode(), good.key), "missing_field"),
        (RawMessage(t, json.dumps({**body, "t": 4102444800.0}).encode(), good.key), "future_timestamp"),
        (RawMessage(qc_topic, b'{"station": "CW1", "t": 1767592800, "verdict": "MAYBE"}', b"checkweigher-1"), "bad_verdict"),
        (RawMessage(t, b"x" * 70_000, good.key), "oversized"),
        # the checkweigher's topic and key, another machine's id in the payload
        (RawMessage(t, json.dumps({**body, "station": "EXT-4471"}).encode(), good.key), "machine_mismatch"),
    ]
    return rng.choice(options)


def test_mixed_good_and_bad_messages_are_all_accounted_for(kafka_settings, config):
    settings = kafka_settings.model_copy(update={"max_payload_bytes": 64_000})
    create_topics(settings, config)
    rng = random.Random(3)
    checkweigher = f"{settings.raw_topic_prefix}checkweigher-1"
    good = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix,
                                               settings.qc_topic).messages(300)]
    messages, expected_reasons = [], []
    for m in good:
        messages.append(m)
        if m.topic == checkweigher and rng.random() < 0.3:
            bad, reason = poison(settings.raw_topic_prefix, settings.qc_topic, m, rng)
            messages.append(bad)
            expected_reasons.append(reason)
    readings = sum(1 for m in good if m.topic != settings.qc_topic)
    produced = produce(settings, messages)

    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: committed_lag(settings) == 0, what="every offset committed")
        scored = metric_total(worker, "linewatch_readings_total")
        qc = metric_total(worker, "linewatch_qc_results_total")
        rejected = metric_total(worker, "linewatch_rejected_total")
    finally:
        worker.stop()
    assert (scored, qc, rejected) == (readings, 300, len(expected_reasons))
    assert scored + qc + rejected == produced
    dead = read_topic(settings, settings.dlq_topic, expected=len(expected_reasons))
    assert sorted(dict(r.headers)["reason"].decode() for r in dead) == sorted(expected_reasons)
    by_offset = {(dict(r.headers)["source_topic"].decode(), int(dict(r.headers)["source_offset"])): r for r in dead}
    assert len(by_offset) == len(dead)  # each rejection points back at its own original message
    for r in dead:
        h = dict(r.headers)
        if h["reason"] in (b"non_numeric", b"future_timestamp"):
            assert h["profile"] == b"weighpro" and h["machine"] == b"checkweigher-1"
