"""Two workers on one database: what a person does through one worker's API reaches the alert book
of the worker that owns the machine (issue 6). Each worker has a store and a pipeline of its own, as
two processes would; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.alerts.sync import sync_people_actions
from linewatch.detect.anomaly import MachineModel
from linewatch.domain import AlertEventType, AlertKind, AlertStatus, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 5, 6, 30, tzinfo=timezone.utc)


class Worker:
    """One worker process: its own connection pool to the shared database, its own alert book."""

    def __init__(self, config, url: str):
        self.store = AlertStore(url)
        self.pipeline = Pipeline(config, Metrics(), AlertBook(self.store.open_alerts()))

    def raise_(self, minutes: float, severity: Severity = Severity.WARNING, summary: str = "die pressure high"):
        ev = self.pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None,
                                       T0 + timedelta(minutes=minutes), severity, summary, {})
        self.store.save([ev])
        return ev

    def sync(self) -> int:
        return sync_people_actions(self.pipeline, self.store)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def workers(config, database_url):
    owner, other = Worker(config, database_url), Worker(config, database_url)
    yield owner, other
    owner.close()
    other.close()


def test_resolved_elsewhere_the_recurrence_is_a_new_alert(workers):
    owner, other = workers
    first = owner.raise_(0)
    other.store.resolve(first.alert.id, "shift-lead", "die cleaned", NOW)  # through the other worker's API

    assert owner.sync() == 1
    assert owner.pipeline.book.find(first.alert.id) is None
    again = owner.raise_(5)
    assert again.type is AlertEventType.FIRED and again.alert.id != first.alert.id
    assert again.alert.status is AlertStatus.FIRING
    old = owner.store.get(first.alert.id)
    assert old.status is AlertStatus.RESOLVED and old.resolved_by == "shift-lead" and old.ended_at == NOW
    assert {a.id for a in owner.store.open_alerts()} == {again.alert.id}


def test_without_syncing_the_owner_would_update_the_resolved_alert(workers):
    """The defect itself, kept as a contrast: an unsynced book updates the episode a person closed."""
    owner, other = workers
    first = owner.raise_(0)
    other.store.resolve(first.alert.id, "shift-lead", None, NOW)
    stale = owner.raise_(5)
    assert stale.type is AlertEventType.UPDATED and stale.alert.id == first.alert.id


def test_acknowledged_elsewhere_the_owner_keeps_the_ack_in_its_updates(workers):
    owner, other = workers
    first = owner.raise_(0)
    other.store.acknowledge(first.alert.id, "operator-7", "checking the die heater", NOW)

    assert owner.sync() == 1
    update = owner.raise_(2, Severity.CRITICAL, "worse")
    assert update.type is AlertEventType.ESCALATED and update.alert.id == first.alert.id
    a = update.alert  # what the owner announces (terminal, SSE, webhook, alerts topic)
    assert a.status is AlertStatus.ACKNOWLEDGED and a.acked_by == "operator-7" and a.acked_at == NOW
    assert a.ack_note == "checking the die heater"
    stored = other.store.get(first.alert.id)
    assert stored.status is AlertStatus.ACKNOWLEDGED and stored.severity is Severity.CRITICAL


def test_the_acting_worker_applies_its_own_action_once(workers):
    owner, other = workers
    first = owner.raise_(0)
    other.sync()  # the other worker knows the alert too (it loaded it, or learned of it)
    other.pipeline.book.open.update(owner.pipeline.book.open)
    other.store.resolve(first.alert.id, "shift-lead", None, NOW)
    assert other.sync() == 1 and other.sync() == 0
    assert other.pipeline.book.find(first.alert.id) is None


def test_nothing_changed_costs_one_small_query(workers):
    owner, other = workers
    owner.raise_(0)
    owner.sync()
    statements: list[str] = []
    event.listen(owner.store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: statements.append(statement))
    assert owner.sync() == 0
    assert len(statements) == 1 and "alert_actions" in statements[0]


def test_new_normal_elsewhere_makes_the_owner_relearn(workers):
    owner, other = workers
    first = owner.raise_(0)
    model = owner.pipeline.models["extruder-1"] = MachineModel("extruder-1", owner.pipeline.config.detection.anomaly)
    model.seen = 10_000  # as if it had learned a lot
    owner.pipeline.machines["extruder-1"].phase = "monitoring"

    alert = other.store.new_normal(first.alert.id, "process-engineer", "recipe B", NOW)
    assert alert.status is AlertStatus.RESOLVED and alert.ack_note == "new normal: recipe B"
    assert other.sync() == 1  # the other worker has no model of extruder-1: nothing to relearn there
    assert "extruder-1" not in other.pipeline.models

    assert owner.sync() == 1
    assert owner.pipeline.models["extruder-1"].seen == 0  # starts again on the new regime
    assert owner.pipeline.machines["extruder-1"].phase == "warming_up"
    assert owner.pipeline.book.find(first.alert.id) is None
    assert owner.sync() == 0  # once: a later sync does not reset it again


def test_actions_before_a_worker_started_are_not_replayed(config, database_url):
    first = Worker(config, database_url)
    try:
        ev = first.raise_(0)
        first.store.new_normal(ev.alert.id, "process-engineer", None, NOW)
        late = Worker(config, database_url)  # starts after the action: its checkpoint already has it
        try:
            model = MachineModel("extruder-1", late.pipeline.config.detection.anomaly)
            model.seen = 10_000
            late.pipeline.models["extruder-1"] = model
            assert late.sync() == 0
            assert late.pipeline.models["extruder-1"].seen == 10_000
        finally:
            late.close()
    finally:
        first.close()


def test_the_journal_numbers_actions_in_order_and_pages(workers):
    owner, other = workers
    alert_id = owner.raise_(0).alert.id
    other.store.acknowledge(alert_id, "a", None, NOW)
    silence = owner.store.add_silence(line="line-1", machine=None, kind=None, starts_at=NOW,
                                      ends_at=NOW + timedelta(hours=1), created_by="maintenance", reason="die change",
                                      at=NOW)
    owner.store.end_silence(silence.id, NOW + timedelta(minutes=5), by="maintenance")
    other.store.resolve(alert_id, "b", None, NOW)
    base = owner.store.actions_at_open
    actions = owner.store.actions_since(base)
    assert [a.seq for a in actions] == [base + 1, base + 2, base + 3, base + 4]
    assert [a.action for a in actions] == ["acknowledge", "silence", "end_silence", "resolve"]
    assert actions[1].by == "maintenance" and actions[1].note == "die change" and actions[1].silence_id == silence.id
    assert owner.store.last_action_seq() == base + 4
    assert other.sync() == 4
    # read a page at a time
    fresh = Worker(owner.pipeline.config, owner.store.url)
    try:
        fresh.store.actions_at_open = base
        fresh.pipeline.book.open.clear()
        assert sync_people_actions(fresh.pipeline, fresh.store, page=1) == 4
        assert fresh.pipeline.book.actions_seen == base + 4
    finally:
        fresh.close()


def test_an_action_that_commits_late_is_not_skipped(workers):
    """Numbers come from a counter row locked until the action commits: a later action waits, so a
    reader that has seen number n has seen every number below it."""
    import threading
    import time

    from sqlalchemy.orm import Session

    from linewatch.alerts.store import AlertRow

    owner, other = workers
    slow_id = owner.raise_(0).alert.id
    fast = owner.pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "cutter-1", None, T0, Severity.WARNING, "x", {})
    owner.store.save([fast])
    base = owner.store.last_action_seq()
    with Session(other.store.engine) as session:
        session.begin()
        row = session.get(AlertRow, slow_id)
        row.status = AlertStatus.ACKNOWLEDGED.value
        other.store._journal(session, "acknowledge", NOW, "slow", None, alert=row)  # numbered, not committed
        t = threading.Thread(target=owner.store.acknowledge, args=(fast.alert.id, "fast", None, NOW))
        t.start()
        time.sleep(0.5)
        assert t.is_alive()  # waits for the slow action's transaction
        assert owner.store.actions_since(base) == []
        session.commit()
    t.join(10)
    assert [(a.seq, a.by) for a in owner.store.actions_since(base)] == [(base + 1, "slow"), (base + 2, "fast")]


def test_a_new_normal_given_after_the_last_checkpoint_survives_a_crash(config, database_url):
    """The operator says "new normal", the worker applies it, and is killed before its next checkpoint:
    the worker that continues from that checkpoint must not bring the old normal back."""
    from linewatch.alerts.sync import renew_since_checkpoint
    from linewatch.sources.simulator import LineSimulator, SimulatorSettings

    first = Worker(config, database_url)
    first.sync()
    first.pipeline.process([m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(1200)])
    assert first.pipeline.models["extruder-1"].phase == "monitoring"
    saved = first.pipeline.export_state(everything=True)  # the last checkpoint before the crash
    fired = first.raise_(30)
    first.store.new_normal(fired.alert.id, "process-engineer", "new resin from today", NOW)
    assert first.sync() == 1
    assert first.pipeline.models["extruder-1"].phase != "monitoring"  # relearning
    first.close()  # kill -9: no checkpoint after the new normal

    second = Worker(config, database_url)
    try:
        journal = second.pipeline.import_state(saved, second.store.alerts_by_id).journal
        assert second.pipeline.models["extruder-1"].phase == "monitoring"  # the checkpoint's old normal
        assert renew_since_checkpoint(second.pipeline, second.store, journal) == 1
        assert second.pipeline.models["extruder-1"].phase != "monitoring"
        assert second.pipeline.models["cutter-1"].phase == "monitoring"  # only the machine it was given for
        assert renew_since_checkpoint(second.pipeline, second.store, {}) == 0
    finally:
        second.close()
