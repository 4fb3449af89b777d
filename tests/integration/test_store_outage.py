"""PostgreSQL goes away mid-stream and comes back: the worker pauses, says why it is not ready, and
resumes without losing or duplicating anything.

The database is one of the test's own (scripts/postgres-local on its own port and state directory,
its data kept across the restart); the broker is the suite's.
"""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timezone

import sqlalchemy as sa

from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import RunningWorker, committed_lag, create_topics, own_settings, produce
from .test_broker_restart import FAULTS, expected_alerts
from .test_worker_kafka import metric_total

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LINE_SECONDS = 24_000  # 96,000 readings and 24,000 QC verdicts


def test_the_database_goes_away_mid_stream_and_nothing_is_lost(kafka_bootstrap, own_postgres, config):
    settings = own_settings(kafka_bootstrap, own_postgres.address, checkpoint_seconds=1.0)
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    expected = expected_alerts(settings, config, messages)
    # 60 % of the line before the outage, the rest while the database is away: the worker is mid-line
    # and has unread messages when it pauses by construction, however fast it is
    split = int(len(messages) * 0.6)
    produce(settings, messages[:split])

    worker = RunningWorker(settings, config)
    readings = lambda: metric_total(worker, "linewatch_readings_total")  # noqa: E731
    try:
        worker.wait_for(lambda: readings() >= 2000, timeout=60, what="the worker to be under way")
        own_postgres.stop()
        produce(settings, messages[split:])

        def not_ready():
            r = worker.get("/readyz")
            return r if r.status_code == 503 and r.json()["worker"] is False else None

        body = worker.wait_for(not_ready, timeout=20, what="/readyz to turn 503 with the worker paused").json()
        assert body["ready"] is False and body["store"] is False
        assert body["reason"].startswith(("cannot save alerts to the database since ",
                                          "cannot save the detector checkpoint to the database since ",
                                          "cannot read silences from the database since ",
                                            "cannot read people's actions (ack, resolve, new normal) from the database since ")), body
        assert "consumption paused, offsets not committed, retrying" in body["reason"]
        assert worker.thread.is_alive(), "the worker died with the database"

        # paused: nothing more is read, scored or committed while the database is away
        held_readings, held_lag = readings(), committed_lag(settings)
        assert 0 < held_readings < 4 * LINE_SECONDS and held_lag > 0
        assert worker.source.consumer.paused() == worker.source.consumer.assignment()
        time.sleep(4)
        assert readings() == held_readings
        assert committed_lag(settings) == held_lag
        assert metric_total(worker, "linewatch_durable_write_failures_total") >= 2  # retried, with back-off
        assert worker.get("/healthz").status_code == 200  # alive, only not ready

        own_postgres.start()  # the same cluster: alerts and checkpoints are still there
        worker.wait_for(lambda: worker.get("/readyz").status_code == 200, timeout=30,
                        what="/readyz to recover once the database is back")
        assert worker.get("/readyz").json() == {"ready": True, "worker": True, "store": True, "reason": None}
        assert not worker.source.consumer.paused()
        worker.wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="every offset committed")
        assert worker.thread.is_alive()
    finally:
        worker.stop()

    engine = sa.create_engine(own_postgres.address)
    with engine.connect() as conn:
        alerts = {row.id: (row.kind, row.machine, row.started_at)
                  for row in conn.execute(sa.text("SELECT id, kind, machine, started_at FROM alerts"))}
        states = {row.key: row.state for row in conn.execute(sa.text("SELECT key, state FROM detector_state"))}
    engine.dispose()
    # no batch dropped, no alert lost or duplicated: the same episodes, with the same ids, as without the outage
    got = {i: (kind, machine) for i, (kind, machine, _) in alerts.items()}
    want = {i: (kind, machine) for i, (kind, machine, _) in expected.items()}
    extra = sorted(str((i, *got[i])) for i in set(got) - set(want))
    missing = sorted(str((i, *want[i])) for i in set(want) - set(got))
    assert not extra and not missing, f"extra: {extra}\nmissing: {missing}"
    assert {"anomaly", "failure_rate"} <= {v[0] for v in alerts.values()}
    for machine in config.machines:  # every reading learned exactly once, across the outage
        assert pickle.loads(states[f"machine:{machine}"])["model"].seen == LINE_SECONDS, machine
    line = pickle.loads(states["line:line-1"])
    assert (line["monitor"] if isinstance(line, dict) else line).units == LINE_SECONDS


def test_a_stop_while_the_database_is_away_commits_nothing_and_the_next_worker_replays(
        kafka_bootstrap, own_postgres, config):
    """Stopping cannot wait for the database: the worker gives the held batch up uncommitted and
    exits; the next worker, once the database is back, replays it from the last checkpoint."""
    settings = own_settings(kafka_bootstrap, own_postgres.address, checkpoint_seconds=1.0)
    create_topics(settings, config)
    produce(settings, [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix,
                                                          settings.qc_topic).messages(LINE_SECONDS)])
    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: metric_total(worker, "linewatch_readings_total") >= 2000, timeout=60,
                        what="the worker to be under way")
        own_postgres.stop()
        worker.wait_for(lambda: worker.get("/readyz").status_code == 503 and not worker.runner_ready(), timeout=20,
                        what="the worker to hold its batch")
        held_lag = committed_lag(settings)
        worker.service.stop()
        worker.thread.join(timeout=10)
        assert not worker.thread.is_alive(), "the worker did not stop while the database was away"
        assert committed_lag(settings) == held_lag  # the held batch was not committed
    finally:
        worker.stop()

    own_postgres.start()
    second = RunningWorker(settings, config)
    try:
        second.wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the next worker to finish the line")
        for machine in config.machines:  # continued from the checkpoint, replayed what was not committed
            assert second.service.pipeline.models[machine].seen == LINE_SECONDS, machine
    finally:
        second.stop()


def _read_only(url: str, on: bool) -> None:
    """Make the database refuse writes in every new session (as a replica does after a failover, or a
    full disk), or accept them again, and end the sessions open now so the worker's pool reconnects."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET default_transaction_read_only = off")
            conn.exec_driver_sql("ALTER DATABASE linewatch " + ("SET default_transaction_read_only = on" if on
                                                                else "RESET default_transaction_read_only"))
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = 'linewatch' AND pid <> pg_backend_pid()")
    finally:
        engine.dispose()


def test_a_database_that_answers_but_refuses_writes_is_not_ready(kafka_bootstrap, own_postgres, config):
    """``SELECT 1`` works, every write fails: /readyz must say the store is not ready (not only the
    worker), and once writes are accepted again everything is saved once."""
    settings = own_settings(kafka_bootstrap, own_postgres.address, checkpoint_seconds=1.0)
    create_topics(settings, config)
    seconds = 6_000
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS[:2]), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(seconds)]
    split = len(messages) // 2
    produce(settings, messages[:split])
    worker = RunningWorker(settings, config)
    try:
        worker.wait_for(lambda: metric_total(worker, "linewatch_readings_total") >= 2000, timeout=60,
                        what="the worker to be under way")
        _read_only(own_postgres.address, True)
        produce(settings, messages[split:])  # unread messages by construction: the worker must write again

        def refused():
            # terminating the sessions may fail the write in hand with "terminating connection" first; the
            # retries that follow meet the read-only database, and /readyz names the latest cause
            r = worker.get("/readyz")
            return r if (r.status_code == 503 and r.json()["store"] is False
                         and "read-only transaction" in r.json()["reason"]) else None

        body = worker.wait_for(refused, timeout=30, what="/readyz to say the store refuses writes").json()
        assert body["ready"] is False and body["worker"] is False, body
        engine = sa.create_engine(own_postgres.address)
        try:
            with engine.connect() as conn:  # the database still answers: a SELECT 1 check would pass
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        finally:
            engine.dispose()
        assert worker.service.store.ping()
        assert worker.thread.is_alive()

        _read_only(own_postgres.address, False)
        worker.wait_for(lambda: worker.get("/readyz").status_code == 200, timeout=30,
                        what="/readyz to recover once writes are accepted")
        assert worker.get("/readyz").json()["store"] is True
        worker.wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="every offset committed")
        for machine in config.machines:  # nothing lost or learned twice across the refusals
            assert worker.service.pipeline.models[machine].seen == seconds, machine
    finally:
        worker.stop()
        _read_only(own_postgres.address, False)
