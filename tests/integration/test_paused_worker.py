"""A worker paused past its session timeout (SIGSTOP: a VM migration, a stalled disk, a debugger)
comes back: its partitions have moved and the new owner has read on and checkpointed. Whatever the
resumed worker then tries to checkpoint is older than what is stored; the write is refused (fenced)
and it loads the newer state instead, so no reading is lost or learned twice and the alerts are
those of one uninterrupted worker (issue 16)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import audit_after_faults, committed_lag, create_topics, produce, worker_env
from .test_broker_restart import expected_alerts
from .test_scale_out import FAULTS, LINE_SECONDS, T0, WorkerProcess, wait_for


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_resumed_after_its_session_expired_does_not_overwrite_the_new_owners_state(
        kafka_settings, config, database_url, tmp_path, processes):
    settings = kafka_settings.model_copy(update={"topic_partitions": 8})
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    expected = expected_alerts(settings, config, messages)
    third = len(messages) // 3
    env = worker_env(settings, database_url, checkpoint_seconds=1, session_timeout_ms=6000)
    done = lambda: committed_lag(settings) == 0  # noqa: E731

    paused, other = WorkerProcess("paused", env, tmp_path, processes), WorkerProcess("other", env, tmp_path, processes)
    workers = [paused, other]
    stopped = False
    try:
        produce(settings, messages[:third])
        wait_for(lambda: done() and paused.partitions() and other.partitions(),
                 "the first part, two workers sharing the partitions", workers)
        # the paused worker holds state it has learned since its last checkpoint when it stops...
        produce(settings, messages[third:2 * third])
        os.kill(paused.proc.pid, signal.SIGSTOP)
        stopped = True
        # ...while the other one is given its partitions (after the 6 s session timeout), reads the
        # rest of the second part and checkpoints past where the paused one had got
        wait_for(done, "the other worker to take over and read everything", [other], timeout=120)
        time.sleep(2)  # at least one more checkpoint of the other worker's
        os.kill(paused.proc.pid, signal.SIGCONT)
        stopped = False
        produce(settings, messages[2 * third:])
        wait_for(done, "the last part, the resumed worker back in the group", workers)
        time.sleep(3)
        wait_for(done, "everything committed", workers)
    finally:
        if stopped:
            os.kill(paused.proc.pid, signal.SIGCONT)
        for w in workers:
            w.stop()

    audit_after_faults(database_url, expected, config.machines, LINE_SECONDS)
