from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def client(config, tmp_path_factory):
    store = AlertStore(f"sqlite:///{tmp_path_factory.mktemp('api') / 'alerts.db'}")
    metrics = Metrics()
    pipeline = Pipeline(config, metrics)
    faults = (Fault("spike", "extruder-1", start=1100, duration=20, sensor="die_pressure", magnitude=30.0),
              Fault("dropout", "dryer-1", start=1000, duration=10_000))
    batch = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(1200)]
    for i in range(0, len(batch), 100):
        store.save(pipeline.process(batch[i:i + 100]).events)
    with TestClient(create_app(store, pipeline, metrics)) as c:
        yield c
    store.close()


def test_alerts_list_and_get(client):
    body = client.get("/api/v1/alerts").json()
    assert body["count"] >= 1
    anomaly = next(a for a in body["alerts"] if a["kind"] == "anomaly")
    assert anomaly["machine"] == "extruder-1" and "die pressure" in anomaly["summary"]
    assert anomaly["details"]["sensors"][0]["sensor"] == "die_pressure"
    assert client.get(f"/api/v1/alerts/{anomaly['id']}").json()["id"] == anomaly["id"]
    assert client.get("/api/v1/alerts", params={"kind": "failure_rate"}).json()["count"] == 0
    assert client.get("/api/v1/alerts", params={"machine": "extruder-1", "status": "firing"}).status_code == 200


def test_clear_errors(client):
    r = client.get("/api/v1/alerts/does-not-exist")
    assert r.status_code == 404 and "does-not-exist" in r.json()["detail"]
    r = client.get("/api/v1/alerts", params={"status": "burning"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "status", 0]


def test_machines_show_status(client):
    body = client.get("/api/v1/machines").json()
    by_id = {m["machine"]: m for m in body["machines"]}
    assert set(by_id) == {"extruder-1", "cutter-1", "dryer-1", "checkweigher-1"}
    assert by_id["dryer-1"]["status"] == "stale"  # silent for 200 s of line time
    assert by_id["extruder-1"]["status"] in {"alarm", "warning"}
    assert by_id["cutter-1"]["status"] == "ok" and by_id["cutter-1"]["model_phase"] == "monitoring"
    assert body["lines"][0]["line"] == "line-1" and body["lines"][0]["units"] == 1200


def test_metrics_and_health(client):
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    readings = {s.labels["machine"]: s.value for s in families["linewatch_readings"].samples
                if s.name == "linewatch_readings_total"}
    assert readings["extruder-1"] == 1200 and readings["dryer-1"] == 1000
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True


def test_machine_detail_shows_how_values_were_converted(client):
    body = client.get("/api/v1/machines/extruder-1").json()
    assert body["profile"]["manufacturer"] == "extrutec" and body["profile"]["payload"] == "flat"
    barrel = next(m for m in body["mapping"] if m["sensor"] == "barrel_temperature")
    assert barrel["vendor_field"] == "barrelTempF" and barrel["vendor_unit"] == "degF" and barrel["unit"] == "degC"
    assert barrel["scale"] == pytest.approx(5 / 9) and barrel["offset"] == pytest.approx(-160 / 9)
    assert barrel["position"] == "barrel zone 2"
    assert '"machineId":"EXT-4471"' in body["last_raw"]
    assert body["last_normalised"]["values"]["barrel_temperature"] == pytest.approx(200, abs=5)
    assert body["model"]["calibration"] == {"readings": 300, "left_out": 0}  # how its thresholds were set
    dryer = client.get("/api/v1/machines/dryer-1").json()
    assert dryer["mapping"][0]["vendor_tag"] == "SupplyAir.T"
    r = client.get("/api/v1/machines/press-9")
    assert r.status_code == 404 and "press-9" in r.json()["detail"]
