"""The model lifecycle on the real broker and PostgreSQL (issue 13): a person's new normal, the
relearned model's shadow run and the quality gate's decision survive a kill -9 and a hand-over in the
middle of the shadow run, and the versions and alerts are those of one uninterrupted worker.

The line is produced part by part, and each step waits for the worker to have committed everything
produced so far, so the new normal reaches the model after the same reading as in the reference, and
the kill lands inside the shadow run however fast the worker is."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone

import pytest

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.domain import AlertKind
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

from .conftest import committed_lag, create_topics, produce, worker_env
from .test_scale_out import WorkerProcess, wait_for

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LINE_SECONDS = 3_000
NEW_NORMAL_AT = 960  # line seconds: the die-pressure alert (spike at 900 s) is still open then
SPIKE = Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0)
# relearning takes 700 readings (to about 1,660 s), then 300 in shadow (to about 1,960 s); a 40-bar step of
# the die pressure from 1,700 s fails the gate, and nothing is wrong with the line otherwise
STEP = Fault("spike", "extruder-1", start=1700, duration=400, sensor="die_pressure", magnitude=40.0)


def _upto(simulated, seconds: float) -> int:
    """How many of the line's messages (in time order) are dated before T0 + seconds."""
    limit = T0 + timedelta(seconds=seconds)
    return next((i for i, sm in enumerate(simulated) if sm.ts >= limit), len(simulated))


def _reference(config, settings, messages, split: int):
    """What one uninterrupted worker concludes, the new normal given after message ``split``."""
    pipeline = Pipeline(config, Metrics(), AlertBook())
    pipeline.normalizer.raw_prefix, pipeline.normalizer.qc_topic = settings.raw_topic_prefix, settings.qc_topic
    versions, alerts = [], {}
    for n, part in enumerate((messages[:split], messages[split:])):
        if n == 1:
            assert pipeline.new_normal("extruder-1", by="eng-3", note="recipe B")
        for i in range(0, len(part), 2000):
            out = pipeline.process(part[i:i + 2000])
            versions += out.versions
            alerts.update({e.alert.id: e.alert.kind.value for e in out.events})
    return versions, {i: k for i, k in alerts.items() if k in ("anomaly", "model")}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("interruption", ["kill -9", "hand-over"])
def test_a_shadow_run_survives_a_crash_or_a_hand_over_and_decides_as_without(
        kafka_settings, config, database_url, tmp_path, processes, interruption):
    settings = kafka_settings
    create_topics(settings, config)
    faults = (SPIKE, STEP) if interruption == "kill -9" else (SPIKE,)  # the gate rejects, or passes
    simulated = list(LineSimulator(T0, SimulatorSettings(faults=faults), settings.raw_topic_prefix,
                                   settings.qc_topic).messages(LINE_SECONDS))
    assert all(a.ts <= b.ts for a, b in zip(simulated, simulated[1:]))
    messages = [sm.message for sm in simulated]
    split = _upto(simulated, NEW_NORMAL_AT)
    in_shadow, later = _upto(simulated, 1810), _upto(simulated, 1900)
    assert 0 < split < in_shadow < later < len(messages)
    expected_versions, expected_alerts = _reference(config, settings, messages, split)
    env = worker_env(settings, database_url, checkpoint_seconds=0.25, session_timeout_ms=6000)
    done = lambda: committed_lag(settings) == 0  # noqa: E731
    store = AlertStore(database_url)
    try:
        first = WorkerProcess("first", env, tmp_path, processes)
        produce(settings, messages[:split])
        wait_for(done, "the line up to the new normal", [first])
        [alert] = [a for a in store.open_alerts() if a.kind is AlertKind.ANOMALY and a.machine == "extruder-1"]
        store.new_normal(alert.id, "eng-3", "recipe B", datetime.now(timezone.utc))
        wait_for(lambda: first.get("/api/v1/machines/extruder-1").json()["model"]["phase"] == "warming_up",
                 "the worker to apply the new normal", [first])
        produce(settings, messages[split:in_shadow])
        wait_for(done, "the relearning, and the shadow run under way", [first])
        assert first.get("/api/v1/machines/extruder-1").json()["model"]["phase"] == "shadow"
        produce(settings, messages[in_shadow:later])  # still inside the shadow run
        if interruption == "kill -9":
            processes.end(first.proc, signal.SIGKILL)
        else:
            first.stop()  # SIGTERM: checkpoint, commit, leave the group; the next worker takes over
        second = WorkerProcess("second", env, tmp_path, processes)
        produce(settings, messages[later:])
        wait_for(done, "the rest of the line", [second], timeout=180)
        second.stop()

        versions = {(v.machine, v.version): v for m in config.machines for v in store.model_versions(m)}
        expected, live = {}, {}  # as the store keeps them: a later active version supersedes the one before
        for v in expected_versions:
            if v.status == "active":
                if v.machine in live:
                    expected[live[v.machine]] = (expected[live[v.machine]][0], "superseded")
                live[v.machine] = (v.machine, v.version)
            expected[(v.machine, v.version)] = (v.id, v.status)
        assert {k: (v.id, v.status) for k, v in versions.items()} == expected
        stored = {a.id: a for a in store.query(kind=["anomaly", "model"], limit=10_000)}
        assert {i: a.kind.value for i, a in stored.items()} == expected_alerts
        v2 = versions[("extruder-1", 2)]
        assert v2.reason == "new_normal" and v2.made_by == "eng-3" and v2.gate["readings"] == 300
        if interruption == "kill -9":
            assert v2.status == "rejected" and versions[("extruder-1", 1)].status == "active"
            [rejection] = [a for a in stored.values() if a.kind is AlertKind.MODEL]
            assert "version 1 stays in use" in rejection.summary
        else:
            assert v2.status == "active" and v2.gate["decision"] == "promoted"
        for a in stored.values():  # every anomaly alert names a version its machine has
            if a.kind is AlertKind.ANOMALY:
                assert (a.machine, a.details["model_version"]) in versions, a
    finally:
        store.close()


def _with_recipe(simulated, recipe_of) -> list:
    """The line's messages, the extruder's naming the recipe it runs (``recipe_of(line seconds)``) and
    running 25 bar higher on PA66."""
    import json

    from linewatch.domain import RawMessage

    out = []
    for sm in simulated:
        m = sm.message
        if m.key == b"extruder-1":
            recipe = recipe_of((sm.ts - T0).total_seconds())
            payload = json.loads(m.value)
            payload["recipe"] = recipe
            if recipe == "PA66":
                payload["diePressurePsi"] += 25 * 14.5038
            m = RawMessage(topic=m.topic, key=m.key, value=json.dumps(payload).encode())
        out.append(m)
    return out


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_recipe_change_then_a_new_normal_and_a_rollback_through_the_api(kafka_settings, config, database_url,
                                                                         tmp_path, processes):
    """PA6 until 1,500 s, then PA66 (its own model and versions); a spike on PA66 at 2,400 s gets a new
    normal through the API, the relearned PA66 normal passes the gate, and a person rolls PA66 back
    to its first version: the worker swaps its model, and the next alert names that version."""
    import httpx

    settings = kafka_settings
    create_topics(settings, config)
    faults = (Fault("spike", "extruder-1", start=2400, duration=25, sensor="die_pressure", magnitude=30.0),
              Fault("spike", "extruder-1", start=3900, duration=25, sensor="die_pressure", magnitude=30.0))
    simulated = list(LineSimulator(T0, SimulatorSettings(faults=faults), settings.raw_topic_prefix,
                                   settings.qc_topic).messages(4200))
    messages = _with_recipe(simulated, lambda s: "PA6" if s < 1500 else "PA66")
    at_spike, after_relearning = _upto(simulated, 2460), _upto(simulated, 3600)
    token = "line-1-shift-token"
    env = {**worker_env(settings, database_url, checkpoint_seconds=0.25), "LINEWATCH_API_TOKEN": token}
    done = lambda: committed_lag(settings) == 0  # noqa: E731
    store = AlertStore(database_url)
    try:
        worker = WorkerProcess("worker", env, tmp_path, processes)
        auth = {"Authorization": f"Bearer {token}"}
        api = lambda path, **kw: httpx.post(f"http://127.0.0.1:{worker.port}{path}", headers=auth,  # noqa: E731
                                             timeout=10, **kw)
        produce(settings, messages[:at_spike])
        wait_for(done, "PA6, then PA66 up to its spike", [worker])
        assert sorted((v.recipe, v.version) for v in store.model_versions("extruder-1", every_recipe=True)) == [
            ("PA6", 1), ("PA66", 1)]  # each recipe its own normal
        [alert] = [a for a in store.open_alerts() if a.kind is AlertKind.ANOMALY and a.machine == "extruder-1"]
        assert alert.details["recipe"] == "PA66" and alert.details["model_version"] == 1
        assert api(f"/api/v1/alerts/{alert.id}/new-normal", json={"by": "eng-3", "note": "new die"}).status_code == 200
        produce(settings, messages[at_spike:after_relearning])
        wait_for(done, "PA66 relearned and through its shadow run", [worker])
        pa66 = {v.version: v for v in store.model_versions("extruder-1", "PA66")}
        assert pa66[2].status == "active" and pa66[2].gate["decision"] == "promoted" and pa66[2].made_by == "eng-3"
        assert [v.status for v in store.model_versions("extruder-1", "PA6")] == ["active"]  # untouched
        r = api("/api/v1/machines/extruder-1/models/1/activate", params={"recipe": "PA66"},
                json={"by": "shift-lead", "why": "the new die was swapped back"})
        assert r.status_code == 200, r.text
        wait_for(lambda: worker.get("/api/v1/machines/extruder-1").json()["model"]["version"] == 1,
                 "the worker to put PA66's version 1 back in use", [worker])
        produce(settings, messages[after_relearning:])
        wait_for(done, "the rest of the line, with a second spike", [worker])
        worker.stop()
        late = [a for a in store.query(machine="extruder-1", kind=["anomaly"], limit=100)
                if a.started_at >= T0 + timedelta(seconds=3900)]
        assert late and all(a.details["model_version"] == 1 and a.details["recipe"] == "PA66" for a in late)
        assert [(v.version, v.status) for v in store.model_versions("extruder-1", "PA66")] == [
            (2, "superseded"), (1, "active")]
    finally:
        store.close()
