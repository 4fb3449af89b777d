"""The worker's Kafka sink on a real broker that goes away: a write retried through an outage sends
each dead letter and alert event once, however many attempts the outage took."""

import json
import time
from datetime import datetime, timezone

import pytest
from kafka.errors import KafkaError

from linewatch.domain import Alert, AlertEvent, AlertEventType, AlertKind, AlertStatus, Rejection, Severity, Source
from linewatch.sources.kafka import KafkaSink, ensure_topics

from .conftest import own_settings, read_topic, topic_size

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def _fired(alert_id: str) -> AlertEvent:
    alert = Alert(id=alert_id, kind=AlertKind.ANOMALY, severity=Severity.CRITICAL, line="line-1",
                  machine="extruder-1", sensor=None, status=AlertStatus.FIRING, started_at=T0, last_seen_at=T0,
                  summary="extruder-1: die pressure 214 bar, normal 180–190")
    return AlertEvent(AlertEventType.FIRED, alert)


def _rejection(offset: int) -> Rejection:
    return Rejection(reason="bad_json", detail="not JSON", source=Source("extrudex", "raw.extruder-1", 0, offset),
                     raw=b"{not json", key=b"extruder-1", machine="extruder-1")


def test_a_write_retried_through_an_outage_sends_each_record_once(own_kafka):
    settings = own_settings(own_kafka.address, "sqlite://")
    ensure_topics(settings.kafka_bootstrap, [settings.dlq_topic, settings.alerts_topic], 2)
    sink = KafkaSink(settings)
    try:
        sink.write([_rejection(1)], [_fired("warm-up")])  # the producer knows the topics' leaders
        own_kafka.stop()
        for _ in range(2):  # two attempts, each ending at the sink's own bound without an acknowledgement
            with pytest.raises(KafkaError):
                sink.write([_rejection(2)], [_fired("during-outage")])
        own_kafka.start()
        deadline = time.monotonic() + 90
        while True:  # as the runner does: the same batch again until the broker acknowledges it
            try:
                sink.write([_rejection(2)], [_fired("during-outage")])
                break
            except KafkaError:
                assert time.monotonic() < deadline, "the sink never wrote after the broker came back"
    finally:
        sink.close()

    alerts = read_topic(settings, settings.alerts_topic, expected=topic_size(settings, settings.alerts_topic))
    ids = [json.loads(r.value)["alert"]["id"] for r in alerts]
    assert sorted(ids) == ["during-outage", "warm-up"]
    dead = read_topic(settings, settings.dlq_topic, expected=topic_size(settings, settings.dlq_topic))
    offsets = sorted(dict(r.headers)["source_offset"] for r in dead)
    assert offsets == [b"1", b"2"]
