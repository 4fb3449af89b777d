"""A plant changes a machine's profile between two runs (a sensor removed, then mapped again): the
worker restarting on the real broker and PostgreSQL says so, starts that machine's model again on the
sensors mapped now, shows the change in the API, and keeps every other machine's model."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone

import pytest

from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import RunningWorker, committed_lag, create_topics, own_settings, produce

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
PART = 900  # seconds of line per run: past the warm-up and calibration of every machine


def _run_part(settings, config, messages, part: int) -> RunningWorker:
    produce(settings, messages[part])
    worker = RunningWorker(settings, config)
    worker.wait_for(lambda: committed_lag(settings) == 0, timeout=90, what=f"part {part + 1} read and committed")
    return worker


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: tests/test_pipeline.py
def test_a_changed_sensor_set_is_a_stated_decision_across_restarts(kafka_bootstrap, database_url, config, caplog):
    settings = own_settings(kafka_bootstrap, database_url, checkpoint_seconds=1.0)
    create_topics(settings, config)
    simulated = LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix,
                              settings.qc_topic).messages(3 * PART)
    messages = [m.message for m in simulated]
    per_part = len(messages) // 3
    parts = [messages[:per_part], messages[per_part:2 * per_part], messages[2 * per_part:]]

    maker = config.machines["extruder-1"].manufacturer
    profile = config.profiles[maker]
    dropped = profile.sensors[-1].sensor
    fewer = dataclasses.replace(config, profiles={**config.profiles,
                                                  maker: profile.model_copy(update={"sensors": profile.sensors[:-1]})})

    first = _run_part(settings, config, parts, 0)
    try:
        assert dropped in first.service.pipeline.models["extruder-1"].sensors
        assert first.get("/api/v1/machines/extruder-1").json()["model"].get("sensors_changed") is None
        cutter_seen = first.service.pipeline.models["cutter-1"].seen
    finally:
        first.stop()

    with caplog.at_level(logging.WARNING, logger="linewatch.pipeline"):
        second = _run_part(settings, fewer, parts, 1)
    try:
        assert f"removed: {dropped}" in caplog.text and "extruder-1" in caplog.text
        change = second.get("/api/v1/machines/extruder-1").json()["model"]["sensors_changed"]
        assert change["removed"] == [dropped] and change["added"] == []
        extruder = second.service.pipeline.models["extruder-1"]
        assert dropped not in extruder.sensors  # not filled with its last value
        cutter = second.service.pipeline.models["cutter-1"]
        assert cutter.seen == 2 * cutter_seen  # every other machine's model was kept and learned on
        assert extruder.seen == cutter_seen  # started again: it has learned only this part
        # the data-quality checks expect the sensors mapped now: the removed one is not "missing"
        quality = second.service.store.query(kind=["data_quality"], machine="extruder-1")
        assert not quality, [a.summary for a in quality]
        cutter_seen = cutter.seen
    finally:
        second.stop()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="linewatch.pipeline"):
        third = _run_part(settings, config, parts, 2)
    try:
        assert f"added: {dropped}" in caplog.text
        change = third.get("/api/v1/machines/extruder-1").json()["model"]["sensors_changed"]
        assert change["added"] == [dropped] and change["removed"] == []
        assert dropped in third.service.pipeline.models["extruder-1"].sensors
        assert third.service.pipeline.models["cutter-1"].seen > cutter_seen
    finally:
        third.stop()
