"""The walking skeleton end to end on the real broker: simulated line in, alerts and metrics out."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

from linewatch.domain import RawMessage
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

from .conftest import RunningWorker, committed_lag, create_topics, produce, read_topic

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def metric_total(worker: RunningWorker, name: str, **labels) -> float:
    families = text_string_to_metric_families(worker.get("/metrics").text)
    return sum(s.value for f in families for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_injected_faults_become_alerts_through_the_api(kafka_settings, config):
    settings = kafka_settings
    create_topics(settings, config)
    faults = (Fault("spike", "extruder-1", start=800, duration=20, sensor="die_pressure", magnitude=30.0),
              Fault("failure_rate", "checkweigher-1", start=1100, duration=10_000, magnitude=0.30))
    sim = LineSimulator(T0, SimulatorSettings(faults=faults), settings.raw_topic_prefix, settings.qc_topic)
    produced = produce(settings, (sm.message for sm in sim.messages(1400)))
    assert produced == 1400 * 5

    worker = RunningWorker(settings, config)
    try:
        def both_kinds():
            alerts = worker.get("/api/v1/alerts").json()["alerts"]
            kinds = {a["kind"]: a for a in alerts}
            return kinds if {"anomaly", "failure_rate"} <= set(kinds) else None

        kinds = worker.wait_for(both_kinds, what="an anomaly and a failure-rate alert in the API")
        assert kinds["anomaly"]["machine"] == "extruder-1"
        assert kinds["anomaly"]["details"]["sensors"][0]["sensor"] == "die_pressure"
        assert kinds["failure_rate"]["summary"].startswith("Failure rate ")
        worker.wait_for(lambda: metric_total(worker, "linewatch_readings_total") == 1400 * 4,
                        what="every reading counted in /metrics")
        assert metric_total(worker, "linewatch_qc_results_total") == 1400
        assert metric_total(worker, "linewatch_rejected_total") == 0
        assert metric_total(worker, "linewatch_alerts_fired_total", kind="anomaly") >= 1
        worker.wait_for(lambda: committed_lag(settings) == 0, what="offsets committed up to the end")
        machines = {m["machine"]: m for m in worker.get("/api/v1/machines").json()["machines"]}
        assert machines["extruder-1"]["readings"] == 1400
        assert worker.get("/readyz").json()["ready"] is True
    finally:
        worker.stop()
    events = read_topic(settings, settings.alerts_topic, expected=2)
    fired = {json.loads(r.value)["alert"]["kind"] for r in events if json.loads(r.value)["event"] == "fired"}
    assert {"anomaly", "failure_rate"} <= fired


def test_poison_message_goes_to_the_dlq_and_later_readings_are_scored(kafka_settings, config):
    settings = kafka_settings
    create_topics(settings, config)
    topic = f"{settings.raw_topic_prefix}extruder-1"
    good = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix,
                                               settings.qc_topic).messages(20)
            if sm.message.topic == topic]
    poison = [RawMessage(topic, b"\x00\x01 definitely not json", b"extruder-1"),
              RawMessage(topic, b'{"machineId": "EXT-4471", "tsMs": 1763800000123, "barrelTempF": "hot"}', b"extruder-1"),
              RawMessage(settings.qc_topic, b'{"station": "CW1", "t": 1763800000, "verdict": "MAYBE"}', b"checkweigher-1")]
    produce(settings, good[:10] + poison + good[10:])

    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: metric_total(worker, "linewatch_readings_total") == 20,
                        what="the readings after the poison to be scored")
        assert metric_total(worker, "linewatch_rejected_total") == 3
        assert metric_total(worker, "linewatch_rejected_total", reason="non_numeric") == 1
        worker.wait_for(lambda: committed_lag(settings) == 0, what="offsets committed past the poison")
    finally:
        worker.stop()
    dead = read_topic(settings, settings.dlq_topic, expected=3)
    assert sorted(r.value for r in dead) == sorted(p.value for p in poison)  # the original bytes
    for r in dead:
        headers = dict(r.headers)
        assert headers["reason"].decode() in {"not_utf8", "not_json", "non_numeric", "bad_verdict"}
        assert headers["detail"] and headers["source_topic"].decode() in {topic, settings.qc_topic}
        assert int(headers["source_offset"]) >= 0


def test_a_restarted_worker_continues_from_the_checkpoint(kafka_settings, config):
    settings = kafka_settings.model_copy(update={"checkpoint_seconds": 1.0})
    create_topics(settings, config)
    sim = LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix, settings.qc_topic)
    messages = [sm.message for sm in sim.messages(1600)]
    produce(settings, messages[:5 * 800])

    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: committed_lag(settings) == 0, what="the first half committed")
        phase = {m["machine"]: m["model_phase"] for m in worker.get("/api/v1/machines").json()["machines"]}
        assert set(phase.values()) == {"monitoring"}
        age = metric_total(worker, "linewatch_state_checkpoint_age_seconds")
        assert 0 <= age < 30
    finally:
        worker.stop()

    produce(settings, messages[5 * 800:])
    second = RunningWorker(settings, config)
    try:
        def phases():
            seen = {m["model_phase"] for m in second.get("/api/v1/machines").json()["machines"]}
            assert "warming_up" not in seen and "calibrating" not in seen, seen  # no second warm-up, ever
            return seen == {"monitoring"}

        second.wait_for(phases, what="the checkpoint loaded when the partitions were assigned")
        second.wait_for(lambda: committed_lag(settings) == 0, what="the second half committed")
        lines = second.get("/api/v1/lines").json()["lines"]
        assert lines[0]["units"] == 1600  # the failure-rate monitor counted on from 800
        assert metric_total(second, "linewatch_readings_total") == 4 * 800  # only the new half was read
    finally:
        second.stop()


def test_workers_joining_and_leaving_hand_machines_over_through_checkpoints(kafka_settings, config):
    """Scale-out on Kafka: a second worker joins, then the first leaves; every machine continues from
    its checkpoint on whichever worker owns its partition, and no reading is lost."""
    from kafka import TopicPartition

    from linewatch.sources.kafka import key_partition

    settings = kafka_settings.model_copy(update={"checkpoint_seconds": 1.0})
    create_topics(settings, config)
    sim = LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix, settings.qc_topic)
    messages = [sm.message for sm in sim.messages(2000)]
    produce(settings, messages[:5 * 800])

    def owner_of(worker: RunningWorker, machine: str) -> bool:
        topic = f"{settings.raw_topic_prefix}{machine}"
        return TopicPartition(topic, key_partition(machine, settings.topic_partitions)) in worker.source.assignment()

    first = RunningWorker(settings, config)
    second = None
    try:
        first.wait_for(lambda: committed_lag(settings) == 0, what="the first part committed by one worker")
        second = RunningWorker(settings, config)
        second.wait_for(lambda: second.source.assignment() and all(
            owner_of(first, m) != owner_of(second, m) for m in config.machines), what="the group to share out")
        moved = [m for m in config.machines if owner_of(second, m)]
        produce(settings, messages[5 * 800:5 * 1600])
        second.wait_for(lambda: committed_lag(settings) == 0, what="the second part committed by two workers")
        for m in moved:  # continued from the first worker's checkpoint: no second warm-up
            assert second.service.pipeline.models[m].seen >= 1600, m
        for m in set(config.machines) - set(moved):
            assert first.service.pipeline.models[m].seen >= 1600, m
    finally:
        first.stop()
    try:
        second.wait_for(lambda: all(owner_of(second, m) for m in config.machines), what="the survivor to own all")
        produce(settings, messages[5 * 1600:])
        second.wait_for(lambda: committed_lag(settings) == 0, what="the last part committed by the survivor")
        for m in config.machines:
            assert second.service.pipeline.models[m].seen >= 2000, m  # every machine, every reading, one history
        assert second.service.pipeline.monitors["line-1"].units >= 2000
    finally:
        second.stop()
