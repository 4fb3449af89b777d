import json
from datetime import datetime, timedelta, timezone

import pytest

from linewatch.detect.versions import Recorded
from linewatch.domain import AlertKind, RawMessage
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


class FakeWall:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run(pipeline: Pipeline, messages, batch: int = 100):
    events = []
    for i in range(0, len(messages), batch):
        events += pipeline.process(messages[i:i + batch]).events
    return events


def test_dropout_raises_stale_stream_then_resolves_when_readings_resume(config):
    faults = (Fault("dropout", "dryer-1", start=200, duration=120),)
    pipeline = Pipeline(config, Metrics())
    events = run(pipeline, [m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(400)])
    stale = [e for e in events if e.alert.kind is AlertKind.STALE_STREAM]
    assert [e.type.value for e in stale] == ["fired", "resolved"]
    assert stale[0].alert.machine == "dryer-1" and "no readings for" in stale[0].alert.summary


def test_silence_of_the_whole_plant_is_noticed_without_any_message(config):
    wall = FakeWall()
    pipeline = Pipeline(config, Metrics(), wall_clock=wall)
    run(pipeline, [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(30)])
    assert not pipeline.idle().events
    wall.t += config.detection.data_quality.stale_after_seconds + 5
    stale = pipeline.idle().events
    assert {e.alert.machine for e in stale} == set(config.machines)


def test_data_quality_alerts_are_their_own_kind_and_clear(config):
    pipeline = Pipeline(config, Metrics())
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(900)]
    bad = json.loads(next(m.value for m in msgs[::-1] if m.topic.endswith("checkweigher-1")))
    bad["gross_g"] = 99999.0
    bad["t"] += 0.5
    events = run(pipeline, msgs + [RawMessage("linewatch.raw.checkweigher-1", json.dumps(bad).encode(), b"checkweigher-1")])
    dq = [e for e in events if e.alert.kind is AlertKind.DATA_QUALITY]
    assert len(dq) == 1 and dq[0].alert.sensor == "product_weight" and "plausible" in dq[0].alert.summary
    assert not [e for e in events if e.alert.kind is AlertKind.ANOMALY]  # the model never saw the bad value
    later = [m.message for m in LineSimulator(T0.replace(hour=7), SimulatorSettings(faults=())).messages(120)]
    resolved = [e for e in run(pipeline, later) if e.alert.kind is AlertKind.DATA_QUALITY]
    assert resolved and resolved[-1].type.value == "resolved"


def test_replayed_batch_is_not_scored_twice(config):
    pipeline = Pipeline(config, Metrics())
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(50)]
    first = pipeline.process(msgs)
    again = pipeline.process(msgs)
    assert first.skipped == 0 and again.skipped == first.readings
    assert pipeline.machines["extruder-1"].readings == 50


def test_a_fast_stream_is_scored_once_per_period(config, tmp_path):
    import shutil

    from linewatch.config import load_config

    shutil.copytree(config.directory, tmp_path / "c")
    profile = tmp_path / "c" / "manufacturers" / "schneidwerk.yaml"
    profile.write_text(profile.read_text() + "aggregate: {period_seconds: 1.0, default: mean, sensors: {cutter_vibration: rms}}\n")
    pipeline = Pipeline(load_config(tmp_path / "c"), Metrics())
    msgs = []
    for i in range(100):  # 10 s at 10 Hz
        local = T0.replace(tzinfo=None) + timedelta(hours=1, milliseconds=100 * i)  # Berlin = UTC+1
        body = {"device": {"id": "SW-CUT-01"}, "time": local.isoformat(timespec="milliseconds"),
                "data": {"knife": {"speed": 1450.0}, "bearing": {"vib_rms": 3.0 if i % 2 else 4.0},
                         "piece": {"length_cm": 2.5}}}
        msgs.append(RawMessage("linewatch.raw.cutter-1", json.dumps(body).encode(), b"cutter-1"))
    out = pipeline.process(msgs)
    assert out.readings == 100
    status = pipeline.machines["cutter-1"]
    assert status.readings == 9  # ten periods, the last still open
    assert status.last_values["cutter_vibration"] == pytest.approx((12.5) ** 0.5)
    assert status.last_reading_at == T0 + timedelta(seconds=8)


def test_a_restored_checkpoint_continues_exactly_where_the_models_were(config):
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings()).messages(1200)]
    first, later = msgs[:4000], msgs[4000:]
    original = Pipeline(config, Metrics())
    original.process(first)
    restored = Pipeline(config, Metrics())
    restored.import_state(original.export_state())
    assert restored.machines["extruder-1"].phase == "monitoring"  # no second warm-up
    a, b = original.process(later), restored.process(later)
    assert [(e.type, e.alert.id, e.alert.summary) for e in a.events] == [(e.type, e.alert.id, e.alert.summary)
                                                                      for e in b.events]
    for machine in config.machines:
        assert original.machines[machine].score == restored.machines[machine].score
    assert restored.monitors["line-1"].units == 1200


def test_checkpoints_are_incremental_and_still_restore_everything(config):
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings()).messages(1200)]
    original = Pipeline(config, Metrics())
    original.process(msgs[:2000])
    saved = original.export_state()
    assert {"machine:extruder-1", "machine:cutter-1", "line:line-1"} <= set(saved)
    assert original.export_state() == {}  # nothing arrived since: nothing to rewrite
    only_extruder = [m for m in msgs[2000:3000] if m.key == b"extruder-1"]
    assert only_extruder
    stale = {f"machine:{e.alert.machine}" for e in original.process(only_extruder).events}  # the others fell silent
    assert set(original.export_state()) == {"machine:extruder-1"} | stale
    saved["machine:extruder-1"] = original.export_state(everything=True)["machine:extruder-1"]
    restored = Pipeline(config, Metrics())
    restored.import_state(saved)  # the union of incremental checkpoints is the whole state
    a, b = original.process(msgs[3000:]), restored.process(msgs[3000:])

    def detections(events):  # the original also saw the other machines fall silent: stale-stream alerts
        return [(e.type, e.alert.id) for e in events if e.alert.kind != AlertKind.STALE_STREAM]

    assert detections(a.events) == detections(b.events)
    for machine in config.machines:
        assert original.machines[machine].score == restored.machines[machine].score


def test_new_normal_relearns_instead_of_alerting_forever(config):
    pipeline = Pipeline(config, Metrics())
    # a new material: die pressure sits 25 bar higher from t+800 s on, for good
    level_shift = (Fault("spike", "extruder-1", start=800, duration=100_000, sensor="die_pressure", magnitude=25.0),)
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=level_shift)).messages(3000)]
    events = run(pipeline, msgs[:5 * 1000])
    assert any(e.alert.kind is AlertKind.ANOMALY and e.type.value == "fired" for e in events)
    assert pipeline.new_normal("extruder-1")
    assert pipeline.machines["extruder-1"].phase == "warming_up"
    after = run(pipeline, msgs[5 * 1000:])
    assert not [e for e in after if e.alert.kind is AlertKind.ANOMALY and e.alert.machine == "extruder-1"]
    assert pipeline.models["extruder-1"].phase == "monitoring"  # relearned on the new level


def test_a_failing_machine_gets_its_own_failure_rate_alert_through_the_genealogy(tmp_path, config):
    """Two cutters; cutter-2's units start failing at 20 %. The pipeline raises a failure-rate alert
    on cutter-2 (the sentence names it and its line), none on cutter-1, and the per-machine state
    travels with the line's checkpoint."""
    import shutil

    from linewatch.config import load_config
    from linewatch.sources.simulator import Fault

    target = tmp_path / "configs"
    shutil.copytree(config.directory, target)
    plant = target / "plant.yaml"
    cutter = "            vendor_ids: [SW-CUT-01]\n"
    text = plant.read_text().replace(cutter, cutter + "          - id: cutter-2\n            kind: cutter\n"
                                     "            manufacturer: schneidwerk\n            vendor_ids: [SW-CUT-02]\n")
    assert "baseline_units: 1000" in text
    plant.write_text(text.replace("baseline_units: 1000", "baseline_units: 800"))  # a shorter phase I
    two_cutters = load_config(target)
    vendor_ids = {"extruder-1": "EXT-4471", "cutter-1": "SW-CUT-01", "cutter-2": "SW-CUT-02", "dryer-1": "TF-DRY-7",
                  "checkweigher-1": "CW1"}
    faults = (Fault("failure_rate", "cutter-2", start=1200.0, duration=3600, magnitude=0.20),)
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(seed=2, genealogy=True, vendor_ids=vendor_ids,
                                                                   faults=faults)).messages(1800)]
    pipeline = Pipeline(two_cutters, Metrics())
    first = pipeline.process(msgs[: len(msgs) // 2])
    restored = Pipeline(two_cutters, Metrics())
    restored.import_state(pipeline.export_state())
    assert restored.machine_rates["line-1"].monitors.keys() == pipeline.machine_rates["line-1"].monitors.keys()
    events = first.events + restored.process(msgs[len(msgs) // 2:]).events
    per_machine = {e.alert.machine: e.alert.summary for e in events
                   if e.alert.kind == AlertKind.FAILURE_RATE and e.alert.machine is not None}
    assert set(per_machine) == {"cutter-2"}, per_machine
    assert "on cutter-2 (line-1)" in per_machine["cutter-2"]


def test_each_recipe_has_its_own_normal(config):
    """An extruder switches from PA6 to PA66, which runs 25 bar higher: a model per recipe warms up on
    PA66 instead of alarming, and PA6's model is still calibrated when the line goes back to it."""
    extruder = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(4000)
                if m.message.key == b"extruder-1"]

    def made(msgs, recipe: str, extra_psi: float = 0.0) -> list[RawMessage]:
        out = []
        for m in msgs:
            payload = json.loads(m.value)
            payload["recipe"] = recipe
            payload["diePressurePsi"] += extra_psi
            out.append(RawMessage(topic=m.topic, key=m.key, value=json.dumps(payload).encode()))
        return out

    pipeline = Pipeline(config, Metrics())
    pipeline.process(made(extruder[:1500], "PA6"))
    assert pipeline.machines["extruder-1"].phase == "monitoring"
    pa66 = pipeline.process(made(extruder[1500:2500], "PA66", extra_psi=25 * 14.5038))
    assert pipeline.machines["extruder-1"].recipe == "PA66"
    assert not [e for e in pa66.events if e.alert.kind == AlertKind.ANOMALY]  # a new normal, not an anomaly
    assert set(pipeline.recipe_models["extruder-1"]) == {"PA6", "PA66"}
    model = pipeline.machine_detail("extruder-1")["model"]  # what GET /api/v1/machines/{id} shows
    assert model["recipe"] == "PA66" and model["recipes"] == ["PA6", "PA66"]
    back = pipeline.process(made(extruder[2500:2600], "PA6"))
    assert pipeline.machines["extruder-1"].phase == "monitoring"  # PA6's model kept its calibration
    assert not [e for e in back.events if e.alert.kind == AlertKind.ANOMALY]
    restored = Pipeline(config, Metrics())
    restored.import_state(pipeline.export_state(everything=True))
    assert set(restored.recipe_models["extruder-1"]) == {"PA6", "PA66"}
    # without recipes the same switch is an anomaly: the test would catch models shared across recipes
    shared = Pipeline(config, Metrics())
    shared.process(made(extruder[:1500], "PA6"))
    shifted = [m for m in made(extruder[1500:1600], "PA6", extra_psi=25 * 14.5038)]
    assert [e for e in shared.process(shifted).events if e.alert.kind == AlertKind.ANOMALY]


def test_a_replay_after_a_crash_makes_the_same_alerts_whatever_the_store_saw_since(config, tmp_path):
    """kill -9 between a checkpoint and the next: the store already holds alerts (fired, resolved) from
    batches the checkpoint does not cover. The next worker replays those batches from the checkpoint and
    must reach the same episodes with the same ids: no second failure-rate alert because the store saw
    the first one resolve."""
    from linewatch.alerts.lifecycle import AlertBook
    from linewatch.alerts.store import AlertStore

    faults = (Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),
              Fault("failure_rate", "checkweigher-1", start=1500, duration=1800, magnitude=0.20))
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(4000)]
    batches = [msgs[i:i + 1000] for i in range(0, len(msgs), 1000)]
    reference = Pipeline(config, Metrics())
    expected = {e.alert.id: (e.alert.kind, e.alert.started_at) for b in batches for e in reference.process(b).events}
    assert {AlertKind.FAILURE_RATE, AlertKind.ANOMALY} <= {kind for kind, _ in expected.values()}
    for crash in range(1, len(batches), 3):
        store = AlertStore(f"sqlite:///{tmp_path}/crash-{crash}.db")
        first = Pipeline(config, Metrics(), AlertBook(store.open_alerts()))
        checkpoint = {}
        for i, batch in enumerate(batches):  # the first life saves every alert, checkpoints once, dies
            store.save(first.process(batch).events)
            if i == crash - 1:
                checkpoint = first.export_state(everything=True)
        second = Pipeline(config, Metrics(), AlertBook(store.open_alerts()))
        second.import_state(checkpoint, store.alerts_by_id)
        for batch in batches[crash:]:
            store.save(second.process(batch).events)
        got = {a.id: (a.kind, a.started_at) for a in store.query(limit=10_000)}
        store.close()
        assert got == expected, f"crash after batch {crash}: extra {set(got) - set(expected)}"


def test_an_alert_raised_without_readings_travels_in_its_machines_checkpoint(config):
    """A stream gone stale fires while no reading arrives; the next checkpoint must still carry the
    open alert, or a restarted worker would leave it firing forever."""
    faults = (Fault("dropout", "dryer-1", start=200, duration=120),)
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(400)]
    cut = next(i for i, m in enumerate(msgs) if m.key == b"extruder-1" and i > len(msgs) * 0.75)
    before = next(i for i, m in enumerate(msgs) if i > len(msgs) * 0.55)  # dryer-1 silent, not yet stale
    original = Pipeline(config, Metrics())
    assert not [e for e in run(original, msgs[:before]) if e.alert.kind is AlertKind.STALE_STREAM]
    saved = original.export_state()
    fired = [e for e in run(original, msgs[before:cut]) if e.alert.kind is AlertKind.STALE_STREAM]
    assert [e.type.value for e in fired] == ["fired"]
    saved.update(original.export_state())  # incremental: only what changed since
    restored = Pipeline(config, Metrics())
    restored.import_state(saved)
    assert fired[0].alert.id in {a.id for a in restored.book.open.values()}
    a, b = run(original, msgs[cut:]), run(restored, msgs[cut:])
    resolved = [(e.type.value, e.alert.id) for e in b if e.alert.kind is AlertKind.STALE_STREAM]
    assert resolved == [("resolved", fired[0].alert.id)]
    assert [(e.type, e.alert.id) for e in a] == [(e.type, e.alert.id) for e in b]


def test_a_worker_keeps_only_the_open_alerts_of_what_it_owns_and_judges_only_its_machines_stale(config):
    from linewatch.alerts.lifecycle import AlertBook
    from linewatch.domain import Severity

    book = AlertBook()
    for kind, machine in ((AlertKind.ANOMALY, "extruder-1"), (AlertKind.ANOMALY, "dryer-1"),
                          (AlertKind.FAILURE_RATE, None), (AlertKind.DATA_QUALITY, "stranger-9")):
        book.raise_(kind, "line-1", machine, None, T0, Severity.WARNING, "x", {})
    pipeline = Pipeline(config, Metrics(), book)
    line = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(600)]
    run(pipeline, line[:len(line) // 2])  # this worker read every machine, then a rebalance:
    pipeline.own({"machine:extruder-1"})
    # the line's failure rate and dryer-1 belong to other workers; a machine outside the plant is kept
    assert sorted((k.value, m) for k, _, m, _ in pipeline.book.open) == [("anomaly", "extruder-1"),
                                                                         ("data_quality", "stranger-9")]
    # the other machines' partitions are read elsewhere: their silence here is not news
    events = run(pipeline, [m for m in line[len(line) // 2:] if m.key == b"extruder-1"]) + pipeline.idle().events
    assert [e.alert.machine for e in events if e.alert.kind is AlertKind.STALE_STREAM] == []


def test_a_kafka_worker_catching_up_does_not_call_a_machine_silent_that_it_has_not_fetched_yet(config):
    """While a worker works through a backlog, the consumer hands it one partition's chunk at a time:
    the extruder's line time races ahead of the dryer's. Only silence on the wall clock as well is news."""
    wall = FakeWall()
    pipeline = Pipeline(config, Metrics(), wall_clock=wall)
    pipeline.own({f"machine:{m}" for m in config.machines} | {"line:line-1"})
    line = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(600)]
    run(pipeline, line[:len(line) // 2])
    chunk = [m for m in line[len(line) // 2:] if m.key == b"extruder-1"]  # 300 s of one machine at once
    assert not [e for e in run(pipeline, chunk) if e.alert.kind is AlertKind.STALE_STREAM]
    wall.t += 11  # the others have been silent on the wall clock too: now they are stale
    stale = {e.alert.machine for e in pipeline.idle().events if e.alert.kind is AlertKind.STALE_STREAM}
    assert stale == set(config.machines) - {"extruder-1"}


def test_a_checkpoint_records_how_far_into_its_partition_it_has_learned(config):
    """A worker taking a partition over reads on from there, so QC results learned before a refused
    commit are not counted twice (they carry nothing that would recognise them)."""
    from dataclasses import replace

    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(300)]
    counts: dict[str, int] = {}
    numbered = []
    for m in msgs:  # as Kafka would hand them over: one partition per topic here, offsets from 0
        numbered.append(replace(m, partition=0, offset=counts.get(m.topic, 0)))
        counts[m.topic] = counts.get(m.topic, 0) + 1
    original = Pipeline(config, Metrics())
    run(original, numbered)
    saved = original.export_state()
    assert Pipeline(config, Metrics()).import_state(saved).positions == {(topic, 0): n for topic, n in counts.items()}
    in_process = Pipeline(config, Metrics())
    run(in_process, msgs)  # no offsets: nothing to record
    assert Pipeline(config, Metrics()).import_state(in_process.export_state()).positions == {}


def test_qc_results_the_genealogy_cannot_link_to_machines_are_counted(config):
    """The plain simulated line names no units on its readings: every QC result counts for the line only,
    and the metric says so (an engineer sees why no machine gets a failure rate of its own)."""
    metrics = Metrics()
    pipeline = Pipeline(config, metrics)
    out = run(pipeline, [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(200)])
    assert not [e for e in out if e.alert.kind == AlertKind.FAILURE_RATE]
    qc = metrics.registry.get_sample_value("linewatch_qc_results_total", {"line": "line-1", "result": "pass"}) + (
        metrics.registry.get_sample_value("linewatch_qc_results_total", {"line": "line-1", "result": "fail"}) or 0)
    unlinked = sum(metrics.registry.get_sample_value("linewatch_qc_unattributed_total", {"line": "line-1", "reason": r})
                   or 0 for r in ("no_ids", "unknown_unit", "unknown_batch"))
    assert qc == 200 and unlinked == 200


def test_replayed_qc_results_are_recognised_and_a_late_lab_result_is_not(config):
    faults = (Fault("failure_rate", "checkweigher-1", start=1500, duration=1500, magnitude=0.25),)
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(4000)]
    qc = [m for m in msgs if m.topic == "linewatch.qc"]
    pipeline = Pipeline(config, Metrics())
    events = run(pipeline, msgs)
    assert any(e.alert.kind is AlertKind.FAILURE_RATE for e in events)
    units = pipeline.monitors["line-1"].units
    assert units == len(qc)
    # a gateway re-sends the first quarter of the line's QC results, and the whole line once more
    replay_events = run(pipeline, qc[:len(qc) // 4]) + run(pipeline, qc)
    assert pipeline.monitors["line-1"].units == units
    assert [e for e in replay_events if e.alert.kind is AlertKind.FAILURE_RATE] == []
    assert pipeline.metrics.qc_replayed.labels("line-1")._value.get() == len(qc) // 4 + len(qc)
    # the memory travels with the line's checkpoint: a worker taking the line over recognises them too
    taker = Pipeline(config, Metrics())
    taker.import_state(pipeline.export_state(everything=True))
    run(taker, qc[:100])
    assert taker.monitors["line-1"].units == units
    # a destructive test on a sample, reported later with an earlier time, is a new result
    body = json.loads(qc[10].value)
    late = dict(body, test="burst_pressure")
    run(taker, [RawMessage(qc[10].topic, json.dumps(late).encode(), qc[10].key)])
    assert taker.monitors["line-1"].units == units + 1


def test_a_restored_model_whose_profile_maps_other_sensors_starts_again_and_says_so(config, caplog):
    import dataclasses

    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(900)]
    before = Pipeline(config, Metrics())
    run(before, msgs)
    assert before.models["extruder-1"].phase == "monitoring"
    maker = config.machines["extruder-1"].manufacturer
    profile = config.profiles[maker]
    dropped = profile.sensors[-1].sensor
    fewer = dataclasses.replace(config, profiles={**config.profiles,
                                                  maker: profile.model_copy(update={"sensors": profile.sensors[:-1]})})
    after = Pipeline(fewer, Metrics())
    with caplog.at_level("WARNING", logger="linewatch.pipeline"):
        after.import_state(before.export_state(everything=True))
    assert f"removed: {dropped}" in caplog.text and "extruder-1" in caplog.text
    assert after.machines["extruder-1"].phase == "warming_up"
    change = after.machine_detail("extruder-1")["model"]["sensors_changed"]
    assert change["removed"] == [dropped] and change["added"] == []
    assert after.machines["cutter-1"].phase == "monitoring"  # the other machines' models are kept
    later = [m.message for m in LineSimulator(T0 + timedelta(seconds=900), SimulatorSettings(faults=())).messages(50)]
    run(after, later)
    assert dropped not in after.models["extruder-1"].sensors  # never filled with its last value
    # the same profile again: nothing to decide
    again = Pipeline(fewer, Metrics())
    caplog.clear()
    with caplog.at_level("WARNING", logger="linewatch.pipeline"):
        again.import_state(after.export_state(everything=True))
    assert "maps other sensors" not in caplog.text


def test_an_anomaly_says_now_while_open_and_peak_once_resolved(config):
    """A resolved alert's sentence must not read as if the machine were still out of range."""
    from linewatch.domain import AlertEventType
    from linewatch.explain import _fmt, sensor_label

    faults = (Fault("drift", "dryer-1", start=900, duration=300, sensor="dryer_air_temperature", magnitude=8.0),)
    events = [e for e in run(Pipeline(config, Metrics()), [m.message for m in LineSimulator(
        T0, SimulatorSettings(faults=faults)).messages(2400)]) if e.alert.kind is AlertKind.ANOMALY
        and e.alert.machine == "dryer-1"]
    open_ = [e for e in events if e.type is not AlertEventType.RESOLVED]
    resolved = [e for e in events if e.type is AlertEventType.RESOLVED]
    assert open_ and resolved, [e.type for e in events]
    assert all(" now " in e.alert.summary for e in open_)
    episode = [e for e in open_ if e.alert.id == resolved[0].alert.id]
    peak = resolved[0].alert.details["peak"]  # the worst reading, announced or not (a batch announces its last)
    assert peak["score"] >= max(e.alert.details["score"] for e in episode)
    top = peak["sensors"][0]
    summary = resolved[0].alert.summary
    assert summary.startswith("dryer-1: back to normal; peak ") and " now " not in summary
    assert f"{sensor_label(top['sensor'])} {_fmt(top['value'])}" in summary, (summary, top)
    assert top["value"] > top["normal_high"]  # the peak is out of range; the last reading was not


def test_each_machine_keeps_its_last_hour_one_point_per_30_s(config):
    pipeline = Pipeline(config, Metrics())
    run(pipeline, [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(900)], batch=137)
    trend = pipeline.machine_trend("extruder-1")
    times = [datetime.fromisoformat(p["at"].replace("Z", "+00:00")) for p in trend["points"]]
    assert len(times) == 900 // 30 and all((b - a).total_seconds() == 30 for a, b in zip(times, times[1:]))
    assert trend["sensor"] == config.profiles[config.machines["extruder-1"].manufacturer].sensors[0].sensor
    assert all(p["value"] is not None and p["score"] >= 0 for p in trend["points"])
    run(pipeline, [m.message for m in LineSimulator(T0 + timedelta(seconds=900), SimulatorSettings(faults=()))
                   .messages(3 * 3600)], batch=500)
    assert len(pipeline.machine_trend("extruder-1")["points"]) == 120  # the last hour only
    assert pipeline.machine_trend("press-9") is None


# ------------------------------------------------------------------------------------------ model versions


def _versions(pipeline: Pipeline, messages, batch: int = 100):
    versions, events = [], []
    for i in range(0, len(messages), batch):
        out = pipeline.process(messages[i:i + batch])
        versions += out.versions
        events += out.events
    return versions, events


def test_a_first_calibration_is_recorded_as_version_1_and_alerts_name_it(config):
    import pickle

    faults = (Fault("spike", "extruder-1", start=1100, duration=20, sensor="die_pressure", magnitude=30.0),)
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(1200)]
    pipeline = Pipeline(config, Metrics())
    versions, events = _versions(pipeline, msgs)
    extruder = [v for v in versions if v.machine == "extruder-1"]
    assert len(extruder) == 1  # one per machine: monitoring afterwards makes none
    v = extruder[0]
    anomaly = config.detection.anomaly
    learned = anomaly.warmup_readings + anomaly.calibration_readings
    assert (v.version, v.reason, v.recipe, v.line, v.kind) == (1, "first_calibration", None, "line-1", "mewma")
    assert v.readings == learned and v.learned_from == T0  # the simulator's readings come once a second
    assert v.made_at == T0 + timedelta(seconds=learned - 1)  # the last reading it learned from
    assert set(v.normal_ranges) == set(pipeline.machines["extruder-1"].last_values)
    assert v.threshold == pickle.loads(v.state).threshold > 0  # the chart's limit on its T²
    assert v.calibration["readings"] == anomaly.calibration_readings
    assert v.settings["model"] == "mewma" and "smoothing" in str(v.settings["mewma"])
    model = pickle.loads(v.state)  # the model as it was when it finished learning
    assert model.phase == "monitoring" and model.lineage.version == 1
    fired = [e for e in events if e.alert.kind is AlertKind.ANOMALY]
    assert fired and all(e.alert.details["model_version"] == 1 for e in fired)
    assert pipeline.machine_detail("extruder-1")["model"]["version"] == 1
    assert pipeline.metrics.registry.get_sample_value("linewatch_model_version",
                                                      {"line": "line-1", "machine": "extruder-1"}) == 1


def test_versions_are_the_same_however_the_readings_are_batched_or_interrupted(config):
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(800)]
    whole, _ = _versions(Pipeline(config, Metrics()), msgs, batch=2000)
    small, _ = _versions(Pipeline(config, Metrics()), msgs, batch=7)
    # a checkpoint in the middle of the calibration, continued by another worker
    first = Pipeline(config, Metrics())
    before, _ = _versions(first, msgs[:1500])
    second = Pipeline(config, Metrics())
    second.import_state(first.export_state(everything=True))
    after, _ = _versions(second, msgs[1500:])
    # what each records is taken where it finished learning, not at the end of a batch
    key = lambda vs: sorted((v.id, v.machine, v.version, v.made_at, v.readings, v.learned_from,  # noqa: E731
                             str(v.normal_ranges), v.threshold, str(v.calibration)) for v in vs)
    assert key(whole) == key(small) == key(before + after) and len(whole) >= 3
    # the same bytes too, batched either way (a restored model pickles its running sums' arrays anew)
    assert sorted(v.state for v in whole) == sorted(v.state for v in small)


def test_a_new_normal_is_learned_as_the_next_version_with_who_said_so(config):
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(800)]
    pipeline = Pipeline(config, Metrics())
    _versions(pipeline, msgs)
    assert pipeline.new_normal("extruder-1", by="process-engineer", note="recipe B")
    # 700 readings to learn, then 300 in shadow before the quality gate puts it in use
    later = [m.message for m in LineSimulator(T0 + timedelta(seconds=800), SimulatorSettings(faults=())).messages(1100)]
    versions, _ = _versions(pipeline, later)
    [v] = [v for v in versions if v.machine == "extruder-1"]
    assert (v.version, v.reason, v.made_by, v.note) == (2, "new_normal", "process-engineer", "recipe B")
    assert v.learned_from >= T0 + timedelta(seconds=800)


def test_a_model_restored_from_before_versions_gets_one_when_it_next_scores(config):
    import pickle

    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(1200)]
    pipeline = Pipeline(config, Metrics())
    _versions(pipeline, msgs[:4000])
    assert pipeline.machines["extruder-1"].phase == "monitoring"
    saved = pipeline.export_state(everything=True)
    state = pickle.loads(saved["machine:extruder-1"])
    del state["model"].lineage  # what a checkpoint written before versions holds
    saved["machine:extruder-1"] = pickle.dumps(state)
    restored = Pipeline(config, Metrics())
    restored.import_state(saved)
    versions, _ = _versions(restored, msgs[4000:])
    [v] = [v for v in versions if v.machine == "extruder-1"]
    assert (v.version, v.reason, v.learned_from) == (1, "recorded_at_upgrade", None)


def test_a_model_made_afresh_numbers_on_from_the_stores_versions(config):
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(800)]
    pipeline = Pipeline(config, Metrics())
    pipeline.version_floor = {("extruder-1", None): 4}  # e.g. the plant switched the model kind
    versions, _ = _versions(pipeline, msgs)
    [v] = [v for v in versions if v.machine == "extruder-1"]
    assert (v.version, v.reason) == (5, "model_changed")


def test_a_model_made_afresh_that_learns_the_newest_version_again_from_the_same_readings_is_that_version(config):
    # the worker that learned version 1 lost its state before a checkpoint (a rebalance, a kill -9) and
    # its partitions are read again: the same first calibration, not a second version "model changed"
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(800)]
    first, _ = _versions(Pipeline(config, Metrics()), msgs)
    again = Pipeline(config, Metrics())
    again.versions_on_record({(v.machine, v.recipe): Recorded(v.version, v.made_at, v.reason) for v in first})
    replayed, _ = _versions(again, msgs)
    assert sorted((v.machine, v.id, v.version, v.reason) for v in replayed) == sorted(
        (v.machine, v.id, v.version, v.reason) for v in first)
    assert {v.version for v in first} == {1}
    # learned from other readings (a plant that switched the model kind), it numbers on
    later = [m.message for m in LineSimulator(T0 + timedelta(hours=1), SimulatorSettings(faults=())).messages(800)]
    other = Pipeline(config, Metrics())
    other.versions_on_record({(v.machine, v.recipe): Recorded(v.version, v.made_at, v.reason) for v in first})
    numbered_on, _ = _versions(other, later)
    assert {(v.version, v.reason) for v in numbered_on} == {(2, "model_changed")}


# ------------------------------------------------------------------------------------------ the quality gate


def _relearned(config, faults_after=(), batch: int = 100, checkpoint_at: int | None = None):
    """Version 1 of every machine, a new normal on the extruder, then its relearning and shadow run on
    the next 1,100 s of line (with ``faults_after`` in them); optionally a checkpoint handed to another
    pipeline after ``checkpoint_at`` of those messages."""
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(800)]
    pipeline = Pipeline(config, Metrics())
    first, _ = _versions(pipeline, msgs)
    assert pipeline.new_normal("extruder-1", by="eng-3", note="recipe B")
    later = [m.message for m in LineSimulator(T0 + timedelta(seconds=800),
                                              SimulatorSettings(faults=faults_after)).messages(1100)]
    if checkpoint_at is None:
        versions, events = _versions(pipeline, later, batch)
        return pipeline, versions, events
    v1, e1 = _versions(pipeline, later[:checkpoint_at], batch)
    successor = Pipeline(config, Metrics())
    successor.import_state(pipeline.export_state(everything=True))
    v2, e2 = _versions(successor, later[checkpoint_at:], batch)
    return successor, v1 + v2, e1 + e2


def test_a_relearned_normal_runs_in_shadow_and_goes_live_when_it_passes_the_gate(config):
    pipeline, versions, events = _relearned(config)
    [v] = [v for v in versions if v.machine == "extruder-1"]
    gate = config.detection.anomaly.shadow_readings
    assert (v.version, v.status, v.reason, v.made_by) == (2, "active", "new_normal", "eng-3")
    assert v.gate["decision"] == "promoted" and v.gate["readings"] == gate and v.gate["share"] <= 0.02
    assert v.state  # a live version keeps its state, for a rollback
    assert pipeline.models["extruder-1"].lineage.version == 2 and pipeline.machines["extruder-1"].phase == "monitoring"
    assert not [e for e in events if e.alert.kind is AlertKind.MODEL]


def test_a_relearned_normal_that_alarms_in_shadow_is_rejected_and_the_old_one_stays(config):
    from linewatch.sources.simulator import Fault

    # the die pressure steps up 40 bar after the relearning: the new normal was not the machine's normal
    step = (Fault("spike", "extruder-1", start=800, duration=300, sensor="die_pressure", magnitude=40.0),)
    pipeline, versions, events = _relearned(config, step)
    [v] = [v for v in versions if v.machine == "extruder-1"]
    assert (v.version, v.status, v.state, v.gate["decision"]) == (2, "rejected", b"", "rejected")
    assert v.gate["share"] > 0.02
    # version 1 is back in use, and it alarms on the step the candidate would have hidden
    model = pipeline.models["extruder-1"]
    assert model.lineage.version == 1 and model.lineage.highest == 2 and model.phase == "monitoring"
    [rejection] = [e for e in events if e.alert.kind is AlertKind.MODEL]
    assert "version 2" in rejection.alert.summary and "version 1 stays in use" in rejection.alert.summary
    assert rejection.alert.details["gate"]["decision"] == "rejected"
    fired = [e for e in events if e.alert.kind is AlertKind.ANOMALY]
    assert fired and {e.alert.details["model_version"] for e in fired} == {1}
    assert min(e.alert.started_at for e in fired) >= v.made_at  # nothing raised while the candidate was tried
    # the next new normal numbers on from the rejected one, and answers the gate's alert
    assert pipeline.new_normal("extruder-1", by="eng-3")
    answered = [e for e in pipeline.idle().events if e.alert.kind is AlertKind.MODEL]
    assert [e.type.value for e in answered] == ["resolved"] and answered[0].alert.id == rejection.alert.id
    again = [m.message for m in LineSimulator(T0 + timedelta(seconds=1900), SimulatorSettings(faults=())).messages(1100)]
    following, later_events = _versions(pipeline, again)
    assert [(x.version, x.status) for x in following if x.machine == "extruder-1"] == [(3, "active")]
    assert (AlertKind.MODEL, "line-1", "extruder-1", None) not in pipeline.book.open
    assert not [e for e in later_events if e.alert.kind is AlertKind.MODEL]  # answered once, by the new normal


def test_the_gate_decides_the_same_however_batched_or_handed_over_mid_shadow(config):
    from linewatch.sources.simulator import Fault

    step = (Fault("spike", "extruder-1", start=800, duration=300, sensor="die_pressure", magnitude=40.0),)

    def outcome(**kw):
        pipeline, versions, events = _relearned(config, step, **kw)
        return ([(v.id, v.version, v.status, v.made_at, v.gate) for v in versions if v.machine == "extruder-1"],
                # (updates of an open alert are folded per batch: the episodes are what must agree)
                [(e.type, e.alert.id, e.alert.kind, e.alert.started_at) for e in events
                 if e.alert.machine == "extruder-1" and e.type.value in ("fired", "resolved")],
                pipeline.machines["extruder-1"].score)

    whole = outcome(batch=2000)
    assert outcome(batch=7) == whole
    # the extruder is about 3,500 messages into the 1,100 s (4 machines, QC): its shadow starts after 700
    # readings, so a checkpoint after 3,200 messages falls inside it
    assert outcome(checkpoint_at=3200) == whole


def test_a_normal_band_outside_the_catalogues_plausible_range_fails_the_gate():
    from linewatch.detect.versions import implausible_bands

    plausible = {"die_pressure": (0.0, 400.0), "motor_load": (0.0, 130.0)}
    assert implausible_bands({"die_pressure": [180.0, 190.0], "motor_load": [50.0, 60.0]}, plausible) == []
    assert implausible_bands({"die_pressure": [390.0, 430.0], "other": [1e9, 2e9]}, plausible) == [
        "die_pressure 390–430 (plausible 0–400)"]  # centred past the limit; unknown sensors are not judged
    assert implausible_bands({"motor_load": [-200.0, 200.0]}, plausible) == [
        "motor_load -200–200 (plausible 0–130)"]  # wider than the whole range: learned from noise
    assert implausible_bands({"motor_load": [-1.0, 7.0]}, plausible) == []  # idling near its limit


def test_a_machine_released_to_another_worker_leaves_nothing_of_its_state_behind(config):
    # every per-machine store, checkpointed or not, forgets the machine: what stays would be stale by
    # the time the machine comes back, and a checkpoint of it would overwrite the new owner's
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(300)]
    pipeline = Pipeline(config, Metrics(), columnar=False)
    pipeline.process(msgs)
    n = pipeline.normalizer
    stores = {"models": pipeline.models, "quality": pipeline.quality.state, "last_ts": n.last_ts,
              "fields_seen": n.fields_seen, "top_keys": n.top_keys, "schema_counter": n.schema_counter,
              "last_raw": n.last_raw}
    assert {name for name, store in stores.items() if "extruder-1" in store} == set(stores)
    pipeline.release({"extruder-1"}, set())
    assert {name for name, store in stores.items() if "extruder-1" in store} == set()
    assert "cutter-1" in n.last_raw and "cutter-1" in pipeline.models  # the others are untouched
    assert pipeline.machines["extruder-1"].phase == "handed over"
