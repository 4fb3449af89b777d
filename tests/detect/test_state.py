"""Checkpoint rows are fenced: a state that learned less far into its partition than the stored one
never replaces it (SQLite and PostgreSQL, through the project's migrations)."""

import pickle

import sqlalchemy as sa

from linewatch.alerts.store import AlertStore
from linewatch.detect.state import StateStore


def _store(database_url: str) -> StateStore:
    return StateStore(AlertStore(database_url).engine)


def test_a_state_that_learned_less_far_into_the_partition_is_refused_and_the_rest_is_written(database_url):
    state = _store(database_url)
    new_owner = {"machine:dryer-1": b"new owner at 2941", "machine:cutter-1": b"cutter at 500"}
    assert state.save(new_owner, {"machine:dryer-1": ("raw.dryer-1", 3, 2941),
                                  "machine:cutter-1": ("raw.cutter-1", 1, 500)}) == {}
    paused = {"machine:dryer-1": b"paused worker at 1457", "machine:cutter-1": b"cutter at 600",
              "line:line-1": b"line"}
    refused = state.save(paused, {"machine:dryer-1": ("raw.dryer-1", 3, 1457),
                                  "machine:cutter-1": ("raw.cutter-1", 1, 600), "line:line-1": ("qc", 0, 10)})
    assert refused == {"machine:dryer-1": ("raw.dryer-1", 3, 2941)}
    assert state.load() == {"machine:dryer-1": b"new owner at 2941", "machine:cutter-1": b"cutter at 600",
                            "line:line-1": b"line"}


def test_the_same_position_a_position_unknown_before_and_another_partition_are_not_refused(database_url):
    state = _store(database_url)
    state.save({"machine:m": b"old"}, {})  # a row written before checkpoints recorded positions
    assert state.save({"machine:m": b"a"}, {"machine:m": ("raw.m", 0, 100)}) == {}
    assert state.save({"machine:m": b"b"}, {"machine:m": ("raw.m", 0, 100)}) == {}  # e.g. a "new normal"
    assert state.save({"machine:m": b"c"}, {"machine:m": ("raw.m", 5, 7)}) == {}  # re-partitioned topic
    assert state.load(["machine:m"]) == {"machine:m": b"c"}


def test_a_state_without_a_position_does_not_replace_one_with_a_position_unless_forced(database_url):
    state = _store(database_url)
    state.save({"line:l": b"kafka"}, {"line:l": ("qc", 2, 40)})
    assert state.save({"line:l": b"unknown"}, {"line:l": None}) == {"line:l": ("qc", 2, 40)}
    assert state.save({"line:l": b"forced"}, {"line:l": ("qc", 2, 3)}, frozenset({"line:l"})) == {}
    assert state.load() == {"line:l": b"forced"}


def test_the_position_is_stored_beside_the_state(database_url):
    state = _store(database_url)
    state.save({"machine:m": pickle.dumps({"x": 1})}, {"machine:m": ("raw.m", 4, 123)})
    with state.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT source_topic, source_partition, next_offset FROM detector_state")).one()
    assert tuple(row) == ("raw.m", 4, 123)
