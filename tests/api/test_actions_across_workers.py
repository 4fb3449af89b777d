"""Two workers' APIs over one database (issue 6): a person acts through one, the other (which owns
the machine) follows; every action is handed to the alerts-topic publisher. SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.alerts.sync import sync_people_actions
from linewatch.api.app import create_app
from linewatch.detect.anomaly import MachineModel
from linewatch.domain import AlertEventType, AlertKind, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
TOKEN = "line-1-shift-token"


class WorkerApi:
    def __init__(self, config, url: str):
        self.store = AlertStore(url)
        self.pipeline = Pipeline(config, Metrics(), AlertBook(self.store.open_alerts()))
        self.published: list[tuple[str, dict]] = []
        self.app = create_app(self.store, self.pipeline, self.pipeline.metrics, api_token=TOKEN,
                              publish_actions=self.published.extend)
        self.client = TestClient(self.app, headers={"Authorization": f"Bearer {TOKEN}"})

    def fire(self, machine: str = "extruder-1", minutes: float = 0.0):
        ev = self.pipeline.book.raise_(AlertKind.ANOMALY, "line-1", machine, None, T0 + timedelta(minutes=minutes),
                                       Severity.WARNING, f"{machine}: die pressure high", {})
        self.store.save([ev])
        return ev

    def next_batch(self) -> None:
        """What the consumer loop does before each batch (the runner's one-line call)."""
        sync_people_actions(self.pipeline, self.store)


@pytest.fixture
def pair(config, database_url):
    owner, other = WorkerApi(config, database_url), WorkerApi(config, database_url)
    with owner.client, other.client:
        yield owner, other
    owner.store.close()
    other.store.close()


def test_resolve_through_one_worker_ends_the_episode_in_the_owner(pair):
    owner, other = pair
    first = owner.fire()
    r = other.client.post(f"/api/v1/alerts/{first.alert.id}/resolve", json={"by": "shift-lead", "note": "cleaned"})
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    owner.next_batch()
    again = owner.fire(minutes=3)
    assert again.type is AlertEventType.FIRED and again.alert.id != first.alert.id
    body = owner.client.get("/api/v1/alerts", params={"status": "firing"}).json()
    assert [a["id"] for a in body["alerts"]] == [again.alert.id]
    assert owner.client.get(f"/api/v1/alerts/{first.alert.id}").json()["resolved_by"] == "shift-lead"


def test_ack_through_one_worker_is_kept_by_the_owner(pair):
    owner, other = pair
    first = owner.fire()
    r = other.client.post(f"/api/v1/alerts/{first.alert.id}/ack", json={"by": "operator-7", "note": "on it"})
    assert r.status_code == 200
    owner.next_batch()
    update = owner.fire(minutes=1)
    assert update.type is AlertEventType.UPDATED and update.alert.status.value == "acknowledged"
    assert update.alert.acked_by == "operator-7" and update.alert.ack_note == "on it"
    # the owner's own board (open alerts in its book) shows it acknowledged too
    machines = owner.client.get("/api/v1/machines").json()["machines"]
    assert next(m for m in machines if m["machine"] == "extruder-1")["open_alerts"] == 1
    assert owner.pipeline.book.find(first.alert.id)[1].acked_by == "operator-7"


def test_an_action_through_the_owner_also_applies_what_others_did(pair):
    owner, other = pair
    a, b = owner.fire("extruder-1"), owner.fire("cutter-1")
    other.client.post(f"/api/v1/alerts/{a.alert.id}/resolve", json={"by": "x"})
    owner.client.post(f"/api/v1/alerts/{b.alert.id}/ack", json={"by": "y"})  # no batch in between
    assert owner.pipeline.book.find(a.alert.id) is None
    assert owner.pipeline.book.find(b.alert.id)[1].acked_by == "y"


def test_new_normal_through_one_worker_makes_the_owner_relearn(pair):
    owner, other = pair
    first = owner.fire()
    model = owner.pipeline.models["extruder-1"] = MachineModel("extruder-1", owner.pipeline.config.detection.anomaly)
    model.seen = 10_000
    r = other.client.post(f"/api/v1/alerts/{first.alert.id}/new-normal", json={"by": "engineer", "note": "recipe B"})
    assert r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["ack_note"] == "new normal: recipe B"
    assert "extruder-1" not in other.pipeline.models  # the API's worker does not own it: nothing to reset
    owner.next_batch()
    assert owner.pipeline.models["extruder-1"].seen == 0
    assert owner.pipeline.machines["extruder-1"].phase == "warming_up"
    rate = owner.pipeline.book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0, Severity.WARNING, "x", {})
    owner.store.save([rate])
    r = other.client.post(f"/api/v1/alerts/{rate.alert.id}/new-normal", json={"by": "x"})
    assert r.status_code == 409 and "anomaly" in r.json()["detail"]
    assert other.client.post("/api/v1/alerts/nope/new-normal", json={"by": "x"}).status_code == 404


def test_every_action_is_published_with_who_and_why(pair):
    owner, other = pair
    a, b, c = owner.fire("extruder-1"), owner.fire("cutter-1"), owner.fire("dryer-1")
    api = other.client
    assert api.post(f"/api/v1/alerts/{a.alert.id}/ack", json={"by": "op-7", "note": "looking"}).status_code == 200
    assert api.post(f"/api/v1/alerts/{a.alert.id}/resolve", json={"by": "lead", "note": "fixed"}).status_code == 200
    assert api.post(f"/api/v1/alerts/{b.alert.id}/new-normal", json={"by": "eng", "note": "recipe B"}).status_code == 200
    s = api.post("/api/v1/silences", json={"machine": "dryer-1", "minutes": 30, "by": "maint", "reason": "belt"}).json()
    assert api.delete(f"/api/v1/silences/{s['id']}", params={"by": "maint"}).status_code == 200
    assert api.post(f"/api/v1/alerts/{a.alert.id}/ack", json={"by": "late"}).status_code == 409  # not published

    got = [(key, body["event"], body["action"]["type"], body["action"]["by"], body["action"]["note"])
           for key, body in other.published]
    assert got == [(a.alert.id, "acknowledged", "acknowledge", "op-7", "looking"),
                   (a.alert.id, "resolved", "resolve", "lead", "fixed"),
                   (b.alert.id, "resolved", "new_normal", "eng", "recipe B"),
                   (s["id"], "silenced", "silence", "maint", "belt"),
                   (s["id"], "unsilenced", "end_silence", "maint", None)]
    ack, resolved, renewed, silenced, _ = (body for _, body in other.published)
    assert ack["alert"]["status"] == "acknowledged" and ack["alert"]["acked_by"] == "op-7"
    assert resolved["alert"]["status"] == "resolved" and resolved["alert"]["resolved_by"] == "lead"
    assert renewed["alert"]["ack_note"] == "new normal: recipe B"
    assert silenced["silence"]["machine"] == "dryer-1" and silenced["silence"]["reason"] == "belt"
    assert ack["action"]["at"].endswith("Z")
    assert owner.published == [] and c.alert.id not in {k for k, _ in other.published}


def test_a_failed_publish_does_not_undo_or_fail_the_action(config, database_url, caplog):
    store = AlertStore(database_url)
    pipeline = Pipeline(config, Metrics(), AlertBook())

    def broker_away(records):
        raise TimeoutError("no broker")

    app = create_app(store, pipeline, pipeline.metrics, api_token=TOKEN, publish_actions=broker_away)
    ev = pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "x", {})
    store.save([ev])
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client, caplog.at_level(logging.ERROR):
        r = client.post(f"/api/v1/alerts/{ev.alert.id}/resolve", json={"by": "lead"})
    assert r.status_code == 200 and store.get(ev.alert.id).resolved_by == "lead"
    assert pipeline.book.find(ev.alert.id) is None
    assert "could not publish" in caplog.text
    store.close()


def test_a_rollback_through_one_worker_swaps_the_owners_model_and_survives_its_crash(pair, config):
    from linewatch.alerts.sync import renew_since_checkpoint
    from tests.api.test_lifecycle import _learn

    owner, other = pair
    owner.pipeline.owned, other.pipeline.owned = set(config.machines), set()  # partitions: all the owner's
    _learn(owner.pipeline, owner.store, 0, 800)
    owner.pipeline.new_normal("extruder-1", by="eng-3")
    _learn(owner.pipeline, owner.store, 800, 1100)  # relearned, then 300 readings in shadow
    owner.next_batch()
    checkpoint = owner.pipeline.export_state(everything=True)  # the owner's last checkpoint: version 2 in use
    r = other.client.post("/api/v1/machines/extruder-1/models/1/activate", json={"by": "lead", "why": "rollback"})
    assert r.status_code == 200, r.text
    assert "extruder-1" not in other.pipeline.models  # not its machine: nothing to swap
    assert owner.pipeline.models["extruder-1"].lineage.version == 2
    owner.next_batch()
    assert owner.pipeline.models["extruder-1"].lineage.version == 1  # the owner follows the journal
    # the owner is killed before its next checkpoint; its successor restores version 2 from the checkpoint,
    # then applies what the journal holds since: version 1 again
    successor = Pipeline(config, Metrics(), AlertBook())
    successor.owned = set()  # as a Kafka worker taking a machine over: it owns the machine only after loading it
    restored = successor.import_state(checkpoint)
    assert successor.models["extruder-1"].lineage.version == 2
    store = AlertStore(owner.store.url)  # the successor's own, opened after the rollback
    try:
        assert renew_since_checkpoint(successor, store, restored.journal) == 1
    finally:
        store.close()
    assert successor.models["extruder-1"].lineage.version == 1


def test_an_activation_the_database_cannot_serve_yet_is_applied_at_the_next_sync(pair, config):
    from tests.api.test_lifecycle import _learn

    owner, other = pair
    _learn(owner.pipeline, owner.store, 0, 800)
    owner.pipeline.new_normal("extruder-1", by="eng-3")
    _learn(owner.pipeline, owner.store, 800, 1100)
    owner.next_batch()
    assert other.client.post("/api/v1/machines/extruder-1/models/1/activate",
                             json={"by": "lead", "why": "rollback"}).status_code == 200
    real = owner.store.model_version

    def gone(*args, **kwargs):
        raise ConnectionError("the database does not answer")

    owner.store.model_version = gone  # the owner's read of the version's state fails once
    seen = owner.pipeline.book.actions_seen
    with pytest.raises(ConnectionError):
        owner.next_batch()
    assert owner.pipeline.book.actions_seen == seen  # nothing applied: the journal stays where it was
    assert owner.pipeline.models["extruder-1"].lineage.version == 2
    owner.store.model_version = real
    owner.next_batch()
    assert owner.pipeline.models["extruder-1"].lineage.version == 1
