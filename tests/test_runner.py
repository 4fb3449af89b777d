"""The consumer loop's own decisions, with stand-ins for the store and the source (unit tests; the
real broker and databases are in tests/integration)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
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


class GroupMember:
    """What a consumer group's member answers besides its batches (sources.contracts.PartitionedSource):
    nothing moves, nothing is behind, membership is sure."""

    settings = SimpleNamespace(raw_topic_prefix="linewatch.raw.", qc_topic="linewatch.qc")

    def next_batch(self) -> list:
        return []

    def commit(self) -> None:
        pass

    def ownership_changes(self) -> list:
        return []

    def partition_count(self, topic: str) -> int:
        return 1

    def assignment(self) -> set:
        return set()

    def lag(self) -> dict:
        return {}

    def end_offsets(self, partitions) -> dict:
        return {}

    def rewind(self, partitions, learned) -> None:
        pass

    def membership_in_doubt(self) -> str | None:
        return None

    def give_back(self, batch) -> None:
        pass

    def keep_alive(self, seconds: float, stop) -> None:
        stop.wait(seconds)

    def resume(self) -> None:
        pass


def test_the_fakes_are_what_the_runner_takes_for_a_group_member():
    from linewatch.sources.contracts import PartitionedSource

    assert isinstance(GroupMember(), PartitionedSource) and not isinstance(OneBatch(), PartitionedSource)


class Rebalanced(GroupMember):
    """A source whose group moves extruder-1's partition to another worker between two polls, as when
    this worker was paused past its session: the second poll still holds extruder-1's readings."""

    def __init__(self) -> None:
        from dataclasses import replace

        messages = [replace(m.message, partition=0)
                    for m in LineSimulator(T0, SimulatorSettings()).messages(600)]
        self.batches = [messages[300:], messages[:300]]
        self.changes = [[("revoked", {self._tp("linewatch.raw.extruder-1")})],
                        [("assigned", {self._tp(t) for t in {m.topic for m in messages}})]]

    @staticmethod
    def _tp(topic: str):
        from kafka import TopicPartition

        return TopicPartition(topic, 0)

    def ownership_changes(self):
        return self.changes.pop() if self.changes else []

    def next_batch(self):
        return self.batches.pop() if self.batches else []

    def commit(self) -> None:
        pass


def test_readings_of_a_partition_handed_over_in_this_poll_are_left_to_its_new_owner(config):
    pipeline = Pipeline(config, Metrics())
    runner = Runner(Rebalanced(), pipeline, Saving())  # type: ignore[arg-type]
    runner.step()
    read = {s.machine: s.readings for s in pipeline.snapshot()[0]}
    assert read["extruder-1"] > 0 and read["cutter-1"] > 0

    runner.step()  # extruder-1 moved away: its readings in this poll are the new owner's to judge
    after = {s.machine: s.readings for s in pipeline.snapshot()[0]}
    assert "machine:extruder-1" not in runner.owned
    assert after["extruder-1"] == read["extruder-1"], "a machine handed over was read on here"
    assert "extruder-1" not in pipeline.models, "a machine handed over got a model made afresh here"
    assert after["cutter-1"] > read["cutter-1"]


class Doubtful(OneBatch, GroupMember):
    """A source whose group membership is in doubt at the given calls (a worker back from a pause past
    its session timeout, before its next poll rejoins the group)."""

    def __init__(self, doubts: list[str | None]) -> None:
        super().__init__()
        self.doubts = doubts
        self.given_back: list = []
        self.rewound: set | None = None

    def membership_in_doubt(self) -> str | None:
        return self.doubts.pop(0) if self.doubts else None

    def give_back(self, batch) -> None:
        self.given_back.extend(batch)

    def assignment(self) -> set:
        return {"every partition"}

    def rewind(self, partitions, learned) -> None:
        self.rewound = set(partitions)


class NoCheckpoints:
    def load(self, keys=None) -> dict:
        return {}


class Saving(QuietJournal):
    """A store that takes every write and records what it was given."""

    def __init__(self) -> None:
        self.saved: list = []

    def save(self, events) -> Saved:
        self.saved.extend(events)
        return Saved(list(events))


def test_a_worker_in_doubt_of_its_group_membership_judges_nothing_and_gives_the_batch_back(config):
    source, pipeline = Doubtful(["no heartbeat answered for longer than the session timeout"]), Pipeline(config, Metrics())
    batch = list(source.batches[0])
    store = Saving()
    runner = Runner(source, pipeline, store, state=NoCheckpoints())  # type: ignore[arg-type]
    assert runner.step() is None
    assert not store.saved, "a worker in doubt of its membership wrote alerts"
    assert source.given_back == batch, "the batch was not handed back to be read again"
    assert all(s.readings == 0 for s in pipeline.snapshot()[0])
    assert source.commits == 0


def test_a_batch_judged_while_membership_fell_into_doubt_is_not_written_and_its_machines_go_back_to_their_checkpoints(config):
    source, pipeline = Doubtful([None, "the group coordinator no longer knows this worker"]), Pipeline(config, Metrics())
    store = Saving()
    runner = Runner(source, pipeline, store, state=NoCheckpoints())  # type: ignore[arg-type]
    runner.owned = {f"machine:{m}" for m in config.machines}
    assert runner.step() is None
    assert not store.saved, "alerts judged while membership was in doubt were written"
    assert source.rewound == {"every partition"}, "the partitions were not read again from the checkpoints"
    assert not pipeline.book.open, "an alert judged in doubt stayed open, unwritten"
    assert not pipeline.models, "the models kept what they learned from a batch judged in doubt"
    assert source.commits == 0
