"""The alert lifecycle through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi.testclient import TestClient

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.silences import Silencer
from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.detect.anomaly import MachineModel
from linewatch.domain import AlertEvent, AlertEventType, AlertKind, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.service import HttpServer

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def world(config, database_url):
    store = AlertStore(database_url)
    pipeline = Pipeline(config, Metrics(), AlertBook())
    app = create_app(store, pipeline, pipeline.metrics, api_token="line-1-shift-token")
    with TestClient(app, headers={"Authorization": "Bearer line-1-shift-token"}) as client:
        yield client, store, pipeline, app
    store.close()


def fire(pipeline: Pipeline, store: AlertStore, machine: str = "extruder-1", minutes: int = 0) -> str:
    ev = pipeline.book.raise_(AlertKind.ANOMALY, "line-1", machine, None, T0 + timedelta(minutes=minutes),
                              Severity.WARNING, f"{machine}: die pressure 214 bar, normal 180–190", {})
    store.save([ev])
    return ev.alert.id


def test_ack_then_resolve_and_the_conflicts(world):
    client, store, pipeline, _ = world
    alert_id = fire(pipeline, store)
    r = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"by": "operator-7", "note": "on it"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["acked_by"] == "operator-7"
    assert pipeline.book.find(alert_id)[1].acked_by == "operator-7"
    r = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "shift-lead"})
    assert r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["resolved_by"] == "shift-lead"
    assert pipeline.book.find(alert_id) is None  # a repeat of the condition is a new episode
    r = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"by": "operator-7"})
    assert r.status_code == 409 and "already resolved" in r.json()["detail"]
    assert fire(pipeline, store, minutes=5) != alert_id


def test_clear_errors(world):
    client, store, pipeline, _ = world
    r = client.post("/api/v1/alerts/no-such-alert/ack", json={"by": "x"})
    assert r.status_code == 404 and "no-such-alert" in r.json()["detail"]
    alert_id = fire(pipeline, store)
    r = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "who?"})
    assert r.status_code == 422 and r.json()["message"].startswith("by:")
    r = client.get("/api/v1/alerts", params={"severity": "apocalyptic"})
    assert r.status_code == 422 and r.json()["message"].startswith("query.severity")
    r = client.get("/api/v1/alerts", params={"cursor": "bm9uc2Vuc2U="})
    assert r.status_code == 422 and r.json()["message"].startswith("query.cursor: cursor 'bm9uc2Vuc2U='")


def test_filters_and_cursor_pagination(world):
    client, store, pipeline, _ = world
    ids = [fire(pipeline, store, machine=m, minutes=i) for i, m in enumerate(["extruder-1", "cutter-1", "dryer-1"] * 4)]
    got, cursor = [], None
    while True:
        body = client.get("/api/v1/alerts", params={"limit": 5, **({"cursor": cursor} if cursor else {})}).json()
        got += [a["id"] for a in body["alerts"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(got) == len(set(got)) == 3  # one open alert per machine: repeats updated it
    assert set(got) == set(ids)
    body = client.get("/api/v1/alerts", params={"machine": "cutter-1", "kind": "anomaly", "status": "firing",
                                                "since": "2026-01-05T05:00:00Z"}).json()
    assert [a["machine"] for a in body["alerts"]] == ["cutter-1"]


def test_silence_marks_new_alerts_and_can_be_ended(world):
    client, store, pipeline, _ = world
    r = client.post("/api/v1/silences", json={"machine": "cutter-1", "minutes": 30, "by": "maintenance",
                                              "reason": "bearing replacement"})
    assert r.status_code == 201, r.text
    silence = r.json()
    events = [pipeline.book.raise_(AlertKind.ANOMALY, "line-1", m, None, T0, Severity.WARNING, "x", {})
              for m in ("cutter-1", "dryer-1")]
    Silencer(store).apply(events, pipeline.book)
    assert events[0].alert.silence_id == silence["id"] and events[1].alert.silence_id is None
    assert client.get("/api/v1/silences", params={"active": True}).json()["count"] == 1
    assert client.delete(f"/api/v1/silences/{silence['id']}").status_code == 200
    assert client.get("/api/v1/silences", params={"active": True}).json()["count"] == 0
    bad = client.post("/api/v1/silences", json={"machine": "press-9", "minutes": 5, "by": "x", "reason": "y"})
    assert bad.status_code == 422 and bad.json()["message"] == "machine: no machine has id 'press-9'"
    everything = client.post("/api/v1/silences", json={"minutes": 5, "by": "x", "reason": "y"})
    assert everything.status_code == 422 and "silencing everything" in everything.json()["message"]


def test_silences_are_capped_and_name_what_they_mute_however_given(world):
    client, *_ = world
    far = {"machine": "cutter-1", "ends_at": "9999-12-31T23:59:59Z", "by": "x", "reason": "y"}
    r = client.post("/api/v1/silences", json=far)
    assert r.status_code == 422 and "at most 7 days" in r.json()["message"]
    for field in ("machine", "line"):
        r = client.post("/api/v1/silences", json={field: "", "kind": "anomaly", "minutes": 5, "by": "x", "reason": "y"})
        assert r.status_code == 422, (field, r.text)
    assert client.get("/api/v1/silences").json()["count"] == 0


@pytest.mark.parametrize("edge", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_at_the_edge_of_the_calendar_are_a_422_not_a_500(world, edge):
    client, *_ = world
    for path, field in (("/api/v1/alerts", "since"), ("/api/v1/alerts", "until"),
                        ("/api/v1/machines/extruder-1/history", "since")):
        r = client.get(path, params={field: edge})
        assert r.status_code == 422 and field in r.json()["message"], (path, field, r.text)
    r = client.post("/api/v1/silences", json={"machine": "cutter-1", "ends_at": edge, "by": "x", "reason": "y"})
    assert r.status_code == 422, r.text


def test_lines_and_machine_history(world):
    client, store, pipeline, _ = world
    first = fire(pipeline, store, machine="dryer-1")
    store.save([pipeline.book.resolve((AlertKind.ANOMALY, "line-1", "dryer-1", None), T0 + timedelta(minutes=3))])
    fire(pipeline, store, machine="dryer-1", minutes=10)
    history = client.get("/api/v1/machines/dryer-1/history").json()
    assert len(history["alerts"]) == 2 and history["alerts"][1]["id"] == first
    assert history["alerts"][1]["duration_seconds"] == 180
    assert history["totals"]["anomaly"]["count"] == 2
    lines = client.get("/api/v1/lines").json()["lines"]
    assert lines[0]["line"] == "line-1" and {m["machine"] for m in lines[0]["machines"]} == {
        "extruder-1", "cutter-1", "dryer-1", "checkweigher-1"}
    assert client.get("/api/v1/machines/press-9/history").status_code == 404


def test_server_sent_events_reach_a_live_client(config, tmp_path):
    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    pipeline = Pipeline(config, Metrics(), AlertBook())
    app = create_app(store, pipeline, pipeline.metrics)
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    received: list[dict] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{server.port}/api/v1/alerts/stream", timeout=15) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    try:
        assert connected.wait(10)
        ev = pipeline.book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0, Severity.CRITICAL,
                                  "Failure rate 19.8% (baseline 5.1%)", {})
        app.state.broadcaster.publish([ev, AlertEvent(AlertEventType.UPDATED, ev.alert)])
        t.join(10)
    finally:
        server.stop()
        store.close()
    assert received and received[0]["event"] == "fired"
    assert received[0]["alert"]["summary"].startswith("Failure rate 19.8%")


def test_new_normal_resolves_and_restarts_the_model(world):
    client, store, pipeline, _ = world
    alert_id = fire(pipeline, store)
    pipeline.models["extruder-1"] = MachineModel("extruder-1", pipeline.config.detection.anomaly)
    r = client.post(f"/api/v1/alerts/{alert_id}/new-normal", json={"by": "process-engineer", "note": "recipe B"})
    assert r.status_code == 200 and r.json()["status"] == "resolved" and "recipe B" in r.json()["ack_note"]
    assert pipeline.machines["extruder-1"].phase == "warming_up"
    rate = pipeline.book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0, Severity.WARNING, "x", {})
    store.save([rate])
    assert client.post(f"/api/v1/alerts/{rate.alert.id}/new-normal", json={"by": "x"}).status_code == 409


def test_new_normal_on_a_resolved_alert_is_refused_and_leaves_the_model_alone(world):
    client, store, pipeline, _ = world
    alert_id = fire(pipeline, store)
    assert client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "shift-lead"}).status_code == 200
    model = MachineModel("extruder-1", pipeline.config.detection.anomaly)
    model.seen = 10_000
    pipeline.models["extruder-1"] = model
    seq = store.last_action_seq()
    r = client.post(f"/api/v1/alerts/{alert_id}/new-normal", json={"by": "process-engineer", "note": "late"})
    assert r.status_code == 409 and "is resolved" in r.json()["detail"], r.text
    assert pipeline.models["extruder-1"].seen == 10_000  # not sent back to warm-up
    assert store.last_action_seq() == seq  # nothing journalled: no worker relearns either
    assert store.get(alert_id).resolved_by == "shift-lead"


# ------------------------------------------------------------------------------------------ verdicts


def _verdict_count(app, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = TestClient(app).get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "linewatch_alert_verdicts_total" and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_verdicts_given_on_resolving_and_afterwards_make_the_machines_live_precision(world):
    client, store, pipeline, app = world
    true_one = fire(pipeline, store, minutes=0)
    r = client.post(f"/api/v1/alerts/{true_one}/ack", json={"by": "op-7"})
    assert r.status_code == 200
    r = client.post(f"/api/v1/alerts/{true_one}/resolve", json={"by": "op-7", "verdict": "true_alarm",
                                                                 "note": "die heater 2 failed"})
    assert r.status_code == 200 and r.json()["verdict"] == "true_alarm" and r.json()["verdict_by"] == "op-7"
    false_one = fire(pipeline, store, minutes=10)  # a new episode: the last one was resolved
    r = client.post(f"/api/v1/alerts/{false_one}/resolve", json={"by": "op-7", "verdict": "false_alarm"})
    assert r.json()["verdict"] == "false_alarm" and r.json()["verdict_at"] is not None
    # the destructive test comes back after the episode: the verdict is given on the resolved alert
    late_one = fire(pipeline, store, minutes=20)
    client.post(f"/api/v1/alerts/{late_one}/resolve", json={"by": "op-7"})
    r = client.post(f"/api/v1/alerts/{late_one}/verdict", json={"by": "lab", "verdict": "false_alarm"})
    assert r.status_code == 200 and r.json()["verdict"] == "false_alarm"
    r = client.post(f"/api/v1/alerts/{late_one}/verdict", json={"by": "lab", "verdict": "true_alarm",
                                                                 "note": "tensile test failed"})
    assert r.json()["verdict"] == "true_alarm" and r.json()["verdict_note"] == "tensile test failed"
    assert [a.verdict.value for a in store.actions_since(0) if a.verdict] == [
        "true_alarm", "false_alarm", "false_alarm", "true_alarm"]  # the journal keeps the replaced verdict

    unjudged = fire(pipeline, store, minutes=30)
    summary = client.get("/api/v1/verdicts", params={"machine": "extruder-1"}).json()["machines"]
    assert len(summary) == 1
    s = summary[0]
    assert (s["raised"], s["judged"], s["unjudged"]) == (4, 3, 1) and unjudged
    assert s["verdicts"] == {"true_alarm": 2, "false_alarm": 1, "new_normal": 0, "unclear": 0}
    assert s["true_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["median_seconds_to_acknowledge"] is not None
    history = client.get("/api/v1/machines/extruder-1/history").json()
    assert history["verdicts"]["true_share"] == s["true_share"]
    # counted once per verdict given, by the API that took it, the replaced one included
    assert _verdict_count(app, machine="extruder-1", verdict="true_alarm", kind="anomaly") == 2
    assert _verdict_count(app, machine="extruder-1", verdict="false_alarm") == 2


def test_a_verdict_on_an_open_alert_travels_with_its_later_updates(world):
    client, store, pipeline, _ = world
    alert_id = fire(pipeline, store)
    r = client.post(f"/api/v1/alerts/{alert_id}/verdict", json={"by": "op-7", "verdict": "true_alarm"})
    assert r.status_code == 200 and r.json()["status"] == "firing"
    assert pipeline.book.find(alert_id)[1].verdict.value == "true_alarm"  # the worker's book mirrors it
    update = pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + timedelta(seconds=5),
                                  Severity.WARNING, "still high", {})
    assert update.alert.to_dict()["verdict"] == "true_alarm"  # what the alerts topic and SSE carry
    store.save([update])
    assert store.get(alert_id).verdict.value == "true_alarm"  # the worker's write leaves it alone


def test_verdicts_that_do_not_fit_are_refused_and_change_nothing(world):
    client, store, pipeline, _ = world
    alert_id = fire(pipeline, store)
    seq = store.last_action_seq()
    r = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "op-7", "verdict": "new_normal"})
    assert r.status_code == 409 and "/new-normal" in r.json()["detail"]
    r = client.post(f"/api/v1/alerts/{alert_id}/verdict", json={"by": "op-7", "verdict": "new_normal"})
    assert r.status_code == 409 and "relearn" in r.json()["detail"]
    r = client.post(f"/api/v1/alerts/{alert_id}/verdict", json={"by": "op-7", "verdict": "maybe"})
    assert r.status_code == 422 and r.json()["message"].startswith("verdict:")
    r = client.post(f"/api/v1/alerts/{alert_id}/verdict", json={"verdict": "true_alarm"})
    assert r.status_code == 422 and r.json()["message"].startswith("by:")
    assert client.post("/api/v1/alerts/nope/verdict", json={"by": "x", "verdict": "unclear"}).status_code == 404
    assert store.last_action_seq() == seq and store.get(alert_id).verdict is None
    assert store.get(alert_id).status.value == "firing"
    # a new normal given through its own action is recorded as that verdict
    r = client.post(f"/api/v1/alerts/{alert_id}/new-normal", json={"by": "process-engineer"})
    assert r.json()["verdict"] == "new_normal"
    # once resolved, calling it a new normal in hindsight is a plain verdict
    other = fire(pipeline, store, machine="cutter-1")
    client.post(f"/api/v1/alerts/{other}/resolve", json={"by": "op-7"})
    assert client.post(f"/api/v1/alerts/{other}/verdict",
                       json={"by": "op-7", "verdict": "new_normal"}).json()["verdict"] == "new_normal"


def test_verdicts_need_the_token(config, database_url):
    store = AlertStore(database_url)
    try:
        pipeline = Pipeline(config, Metrics(), AlertBook())
        alert_id = fire(pipeline, store)
        with TestClient(create_app(store, pipeline, pipeline.metrics, api_token="t0k3n")) as client:
            r = client.post(f"/api/v1/alerts/{alert_id}/verdict", json={"by": "x", "verdict": "false_alarm"})
            assert r.status_code == 401 and store.get(alert_id).verdict is None
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ model versions


def test_a_machines_versions_are_listed_and_compared_with_the_one_in_use(world):
    from tests.alerts.test_store import version

    client, store, _, _ = world
    store.save_versions([version(1), version(2), version(1, recipe="B")])
    body = client.get("/api/v1/machines/extruder-1/models").json()
    assert body["live"] == 2 and [v["version"] for v in body["versions"]] == [2, 1]
    assert body["versions"][0]["made_by"] == "eng-3" and body["versions"][0]["reason"] == "new_normal"
    assert body["versions"][1]["learned_from"] == "2026-01-05T06:48:21.000Z" and "state" not in body["versions"][1]
    assert client.get("/api/v1/machines/extruder-1/models", params={"recipe": "B"}).json()["live"] == 1
    one = client.get("/api/v1/machines/extruder-1/models/1").json()
    assert one["version"]["version"] == 1 and one["live"]["version"] == 2
    assert one["normal_ranges"] == [{"sensor": "die_pressure", "this": [181.0, 191.0], "live": [182.0, 192.0]}]
    r = client.get("/api/v1/machines/extruder-1/models/9")
    assert r.status_code == 404 and "no model version 9" in r.json()["detail"]
    assert client.get("/api/v1/machines/press-9/models").status_code == 404
    assert client.get("/api/v1/machines/cutter-1/models").json() == {"machine": "cutter-1", "recipe": None,
                                                                    "live": None, "versions": []}


def _learn(pipeline, store, start_seconds: int, seconds: int, faults=()) -> list:
    """The simulated line through the pipeline, its versions saved as the runner saves them."""
    from linewatch.sources.simulator import LineSimulator, SimulatorSettings

    msgs = [m.message for m in LineSimulator(T0 + timedelta(seconds=start_seconds),
                                             SimulatorSettings(faults=faults)).messages(seconds)]
    events = []
    for i in range(0, len(msgs), 500):
        out = pipeline.process(msgs[i:i + 500])
        store.save_versions(out.versions)
        store.save(out.events)
        events += out.events
    return events


def test_an_earlier_version_is_put_back_in_use_and_the_next_one_numbers_on(world):
    client, store, pipeline, _ = world
    _learn(pipeline, store, 0, 800)  # version 1 of each machine
    pipeline.new_normal("extruder-1", by="eng-3", note="recipe trial")
    _learn(pipeline, store, 800, 1100)  # version 2 of the extruder (learned, then its shadow run)
    assert client.get("/api/v1/machines/extruder-1/models").json()["live"] == 2
    seq = store.last_action_seq()
    r = client.post("/api/v1/machines/extruder-1/models/1/activate",
                    json={"by": "shift-lead", "why": "the trial normal flags every die change"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["status"] == "active" and r.json()["activated_by"] == "shift-lead"
    [action] = store.actions_since(seq)
    assert (action.action, action.machine, action.model_version, action.note) == (
        "activate", "extruder-1", 1, "the trial normal flags every die change")
    # the worker swapped its model at once (the API applied the journal), and it monitors
    model = pipeline.models["extruder-1"]
    assert model.lineage.version == 1 and model.phase == "monitoring"
    assert pipeline.machine_detail("extruder-1")["model"]["version"] == 1
    listed = client.get("/api/v1/machines/extruder-1/models").json()
    assert listed["live"] == 1 and [v["status"] for v in listed["versions"]] == ["superseded", "active"]
    # an alert raised now names version 1; the next version learned is 3, not a second 2
    from linewatch.sources.simulator import Fault

    spike = (Fault("spike", "extruder-1", start=60, duration=20, sensor="die_pressure", magnitude=30.0),)
    fired = [e for e in _learn(pipeline, store, 1900, 120, spike) if e.alert.kind is AlertKind.ANOMALY]
    assert fired and {e.alert.details["model_version"] for e in fired} == {1}
    pipeline.new_normal("extruder-1", by="eng-3")
    _learn(pipeline, store, 2020, 1100)
    assert [v.version for v in store.model_versions("extruder-1")] == [3, 2, 1]


def test_versions_that_do_not_fit_the_machine_are_refused_and_change_nothing(world):
    import dataclasses

    from tests.alerts.test_store import version

    client, store, pipeline, _ = world
    _learn(pipeline, store, 0, 800)
    live = store.model_versions("extruder-1")[0]
    halfspace = dataclasses.replace(version(2), kind="halfspace", normal_ranges=live.normal_ranges)
    other_sensors = dataclasses.replace(version(3), normal_ranges={"die_pressure": [1.0, 2.0], "ghost": [0.0, 1.0]})
    store.save_versions([halfspace, other_sensors])
    store.save_versions([dataclasses.replace(live, id="fresh", version=4)])  # the live one again, newest
    seq = store.last_action_seq()
    url = "/api/v1/machines/extruder-1/models/{}/activate"
    body = {"by": "shift-lead", "why": "rollback"}
    r = client.post(url.format(2), json=body)
    assert r.status_code == 409 and "halfspace" in r.json()["detail"] and "mewma" in r.json()["detail"]
    r = client.post(url.format(3), json=body)
    assert r.status_code == 409 and "ghost" in r.json()["detail"] and "barrel_temperature" in r.json()["detail"]
    assert client.post(url.format(9), json=body).status_code == 404
    assert client.post(url.format(1), json={"by": "x"}).status_code == 422  # why is required
    assert client.post("/api/v1/machines/press-9/models/1/activate", json=body).status_code == 404
    assert store.last_action_seq() == seq and client.get("/api/v1/machines/extruder-1/models").json()["live"] == 4
    anonymous = TestClient(client.app)  # no token
    assert anonymous.post(url.format(1), json=body).status_code == 401


def test_a_rollback_on_a_machine_with_several_recipes_must_name_the_recipe(world):
    from tests.alerts.test_store import version

    client, store, _, _ = world
    store.save_versions([version(1), version(2), version(1, recipe="B")])
    body = {"by": "lead", "why": "rollback"}
    r = client.post("/api/v1/machines/extruder-1/models/1/activate", json=body)
    assert r.status_code == 422 and "several recipes" in r.json()["message"] and "B" in r.json()["message"]
    r = client.post("/api/v1/machines/extruder-1/models/1/activate", params={"recipe": ""}, json=body)
    assert r.status_code == 409 and "other sensors" in r.json()["detail"]  # (the stand-in versions' sensors)
    assert [v.status for v in store.model_versions("extruder-1")] == ["active", "superseded"]


def test_each_model_versions_alerts_and_verdicts_are_summed_up(world):
    from tests.alerts.test_store import version

    client, store, pipeline, _ = world
    store.save_versions([version(1), version(2)])
    for minutes, v, verdict in ((0, 1, "false_alarm"), (10, 1, "false_alarm"), (20, 2, "true_alarm"), (30, 2, None)):
        ev = pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + timedelta(minutes=minutes),
                                  Severity.WARNING, "s", {"model_version": v, "recipe": None})
        store.save([ev])
        body = {"by": "op-7", **({"verdict": verdict} if verdict else {})}
        assert client.post(f"/api/v1/alerts/{ev.alert.id}/resolve", json=body).status_code == 200
    per = client.get("/api/v1/verdicts", params={"machine": "extruder-1", "per_version": "true"}).json()["versions"]
    assert [(s["model_version"], s["raised"], s["true_share"]) for s in per] == [(1, 2, 0.0), (2, 2, 1.0)]
    listed = client.get("/api/v1/machines/extruder-1/models").json()["versions"]
    assert [(v["version"], v["alerts"]["raised"], v["alerts"]["true_share"]) for v in listed] == [(2, 2, 1.0),
                                                                                                   (1, 2, 0.0)]
