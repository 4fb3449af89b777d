"""People's actions reach linewatch.alerts on the real broker, beside the worker's own alert events
and in the same envelope (issue 6)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from fastapi.testclient import TestClient

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.publish import KafkaActionPublisher
from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.domain import AlertKind, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.sources.kafka import KafkaSink, ensure_topics

from .conftest import read_topic

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
TOKEN = "line-1-shift-token"


def test_ack_resolve_new_normal_and_silences_are_published(kafka_settings, config):
    settings = kafka_settings
    ensure_topics(settings.kafka_bootstrap, [settings.alerts_topic], settings.topic_partitions)
    store = AlertStore(settings.database_url)
    pipeline = Pipeline(config, Metrics(), AlertBook())
    sink, publisher = KafkaSink(settings), KafkaActionPublisher(settings.kafka_bootstrap, settings.alerts_topic)
    try:
        fired = [pipeline.book.raise_(AlertKind.ANOMALY, "line-1", m, None, T0, Severity.WARNING, f"{m}: x", {})
                 for m in ("extruder-1", "cutter-1")]
        store.save(fired)
        sink.write([], fired)  # what the worker publishes when they fire
        a, b = (ev.alert.id for ev in fired)
        app = create_app(store, pipeline, pipeline.metrics, api_token=TOKEN, publish_actions=publisher)
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            assert api.post(f"/api/v1/alerts/{a}/ack", json={"by": "op-7", "note": "looking"}).status_code == 200
            assert api.post(f"/api/v1/alerts/{a}/resolve", json={"by": "lead", "note": "fixed"}).status_code == 200
            assert api.post(f"/api/v1/alerts/{b}/new-normal", json={"by": "eng", "note": "recipe B"}).status_code == 200
            silence = api.post("/api/v1/silences", json={"line": "line-1", "minutes": 10, "by": "maint",
                                                         "reason": "die change"}).json()
            assert api.delete(f"/api/v1/silences/{silence['id']}", params={"by": "maint"}).status_code == 200
    finally:
        publisher.close()
        sink.close()
        store.close()

    records = read_topic(settings, settings.alerts_topic, expected=7)
    assert len(records) == 7
    bodies = [(r.key.decode(), json.loads(r.value)) for r in records]
    by_key: dict[str, list[dict]] = {}
    for key, body in bodies:
        by_key.setdefault(key, []).append(body)  # one key keeps one partition: per-alert order holds
    assert [(x["event"], (x.get("action") or {}).get("type")) for x in by_key[a]] == [
        ("fired", None), ("acknowledged", "acknowledge"), ("resolved", "resolve")]
    assert [(x["event"], (x.get("action") or {}).get("type")) for x in by_key[b]] == [
        ("fired", None), ("resolved", "new_normal")]
    assert [x["event"] for x in by_key[silence["id"]]] == ["silenced", "unsilenced"]
    ack, resolved = by_key[a][1], by_key[a][2]
    assert set(ack) >= {"event", "alert"} and set(ack["alert"]) == set(by_key[a][0]["alert"])  # same envelope
    assert ack["alert"]["status"] == "acknowledged" and ack["action"]["by"] == "op-7" and ack["action"]["note"] == "looking"
    assert resolved["alert"]["resolved_by"] == "lead" and resolved["action"]["note"] == "fixed"
    assert by_key[b][1]["alert"]["ack_note"] == "new normal: recipe B" and by_key[b][1]["action"]["by"] == "eng"
    silenced = by_key[silence["id"]][0]
    assert silenced["silence"]["line"] == "line-1" and silenced["action"] == {
        "type": "silence", "by": "maint", "note": "die change", "at": silenced["action"]["at"]}
