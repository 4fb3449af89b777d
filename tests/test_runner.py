"""The consumer loop's own decisions, with stand-ins for the store and the source (unit tests; the
real broker and databases are in tests/integration)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from linewatch.alerts.store import Saved
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.runner import Runner
from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


class OneBatch:
    """A source with one batch of a faulty line, then nothing; it records commits."""

    def __init__(self) -> None:
        faults = (Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),)
        self.batches = [[m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(1200)]]
        self.commits = 0

    def next_batch(self):
        return self.batches.pop() if self.batches else []

    def commit(self) -> None:
        self.commits += 1


class QuietJournal:
    """Nobody acted on an alert: the journal of people's actions is empty."""

    actions_at_open = 0
    version = 0

    def actions_since(self, seq: int, limit: int = 1000) -> list:
        return []

    def announced(self, alert_ids) -> None:
        pass

    def latest_versions(self) -> dict:
        return {}

    def save_versions(self, versions, keep: int = 20, since=None) -> None:
        pass


class DatabaseGone(QuietJournal):
    """An alert store whose database went away; the operator stops the worker meanwhile."""

    def __init__(self) -> None:
        self.runner: Runner | None = None

    def save(self, events) -> None:
        assert self.runner is not None
        self.runner.stop_requested.set()  # Ctrl-C / SIGTERM while the write is failing
        raise ConnectionError("the database does not answer")


def test_a_stop_during_an_outage_is_reported_as_unfinished_and_commits_nothing(config):
    source, store = OneBatch(), DatabaseGone()
    runner = Runner(source, Pipeline(config, Metrics()), store)  # type: ignore[arg-type]
    store.runner = runner
    stats = runner.run()
    assert stats.unfinished and "cannot save alerts to the database" in stats.unfinished
    assert source.commits == 0  # the batch in hand is replayed by the next worker


def test_a_clean_stop_is_not_unfinished(config):
    source = OneBatch()

    class Store(QuietJournal):
        def save(self, events) -> list:
            runner.stop_requested.set()
            return Saved(list(events))

    runner = Runner(source, Pipeline(config, Metrics()), Store())  # type: ignore[arg-type]
    stats = runner.run()
    assert stats.unfinished is None and source.commits == 1


def test_the_store_counts_as_not_ready_while_a_database_write_fails_and_ready_once_it_works(config):
    source = OneBatch()
    seen = []

    class DiskFull(QuietJournal):
        """Answers queries (SELECT 1 works) but refuses writes twice, then accepts them."""

        def __init__(self) -> None:
            self.refusals = 2

        def save(self, events) -> None:
            seen.append(runner.store_failing())
            if self.refusals:
                self.refusals -= 1
                raise OSError("database or disk is full")
            runner.stop_requested.set()
            return Saved(list(events))

    runner = Runner(source, Pipeline(config, Metrics()), DiskFull())  # type: ignore[arg-type]
    runner._hold = lambda seconds: None  # no waiting between attempts in a unit test
    stats = runner.run()
    assert seen == [False, True, True]  # failing from the first refusal until a write succeeds
    assert not runner.store_failing() and stats.unfinished is None


def test_a_worker_replaying_old_data_does_not_announce_episodes_the_store_has_closed(config, tmp_path):
    """A worker restarted from a stale state (or none) replays data whose alerts were already dealt with:
    the store keeps them resolved and nobody is paged about them again."""
    from linewatch.alerts.store import AlertStore
    from linewatch.domain import AlertEventType

    class Recorder:
        def __init__(self) -> None:
            self.events: list = []

        def write(self, rejections, events) -> None:
            self.events.extend(events)

    class Drained(OneBatch):
        """Stops the worker once its one batch is taken (and so made durable: the stop is seen after)."""

        def __init__(self) -> None:
            super().__init__()
            self.stop = threading.Event()

        def next_batch(self):
            batch = super().next_batch()
            if not batch:
                self.stop.set()
            return batch

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        first, first_sink = Drained(), Recorder()
        Runner(first, Pipeline(config, Metrics()), store, sinks=[first_sink], stop=first.stop).run()
        fired = [ev.alert.id for ev in first_sink.events if ev.type is AlertEventType.FIRED]
        assert fired, "the faulty line raised no alert: nothing to replay"
        by_condition = {ev.alert.id: ev.alert.ended_at for ev in first_sink.events
                        if ev.type is AlertEventType.RESOLVED}
        for alert in store.open_alerts():
            store.resolve(alert.id, "shift-lead", "dealt with", alert.last_seen_at)

        metrics, sink, console = Metrics(), Recorder(), []
        source = Drained()
        replay = Runner(source, Pipeline(config, metrics), store, sinks=[sink], stop=source.stop,
                        on_events=lambda evs: console.extend(evs))
        replay.run()
        old = [ev for ev in sink.events if ev.alert.id in fired]
        assert all(ev.type is AlertEventType.RESOLVED and by_condition.get(ev.alert.id) == ev.alert.ended_at
                   for ev in old), "an episode the store had closed was announced again"
        assert [ev.alert.id for ev in console] == [ev.alert.id for ev in sink.events]
        withheld = sum(s.value for m in metrics.registry.collect() if m.name == "linewatch_alert_events_withheld"
                       for s in m.samples if s.name.endswith("_total"))
        assert withheld > 0
        assert all(store.get(i).status.value == "resolved" for i in fired)
    finally:
        store.close()
