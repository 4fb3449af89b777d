"""Scale-out with worker processes: three `linewatch run` processes in one consumer group on 8-partition
topics and one shared PostgreSQL. A second and a third worker join, then the first leaves; every
machine's detector continues from the checkpoint of whoever owned it before, no reading is lost or
learned twice, no alert is duplicated, and the API of any worker answers the same."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest

from linewatch.sources.simulator import Fault, LineSimulator, SimulatorSettings

from .conftest import audit_after_faults, committed_lag, create_topics, free_port, produce, worker_env
from .test_broker_restart import expected_alerts

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LINE_SECONDS = 9_000  # 36,000 readings from four machines and 9,000 QC verdicts, in three parts
FAULTS = (Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),
          Fault("failure_rate", "checkweigher-1", start=3500, duration=1800, magnitude=0.20),
          Fault("spike", "cutter-1", start=7000, duration=30, sensor="knife_speed", magnitude=200.0))


class WorkerProcess:
    """One `linewatch run` process with its own HTTP port."""

    def __init__(self, name: str, env: dict[str, str], cwd, processes) -> None:
        self.name, self.port = name, free_port()
        self.log = cwd / f"{name}.log"
        with self.log.open("wb") as log:  # owned by the test: ended whatever the outcome
            self.proc = processes.start([sys.executable, "-m", "linewatch.cli", "-v", "run", "--port", str(self.port)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def partitions(self) -> int:
        """Partitions this worker has fetched from (its share of the group), from its lag gauge."""
        try:
            text = self.get("/metrics").text
        except httpx.HTTPError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith("linewatch_consumer_lag_messages{"))

    def alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # finish the batch, checkpoint, commit, leave the group
        assert self.proc.wait(60) == 0, f"{self.name} did not stop cleanly:\n{self.log.read_text()[-3000:]}"


def wait_for(check, what: str, workers, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in workers:
            w.alive()
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_worker_processes_join_and_leave_and_every_machine_continues(kafka_settings, config, database_url,
                                                                           tmp_path, processes):
    settings = kafka_settings.model_copy(update={"topic_partitions": 8})
    create_topics(settings, config)
    messages = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=FAULTS), settings.raw_topic_prefix,
                                                   settings.qc_topic).messages(LINE_SECONDS)]
    expected = expected_alerts(settings, config, messages)
    third = len(messages) // 3
    env = worker_env(settings, database_url, checkpoint_seconds=1, session_timeout_ms=6000)
    done = lambda: committed_lag(settings) == 0  # noqa: E731

    first = WorkerProcess("first", env, tmp_path, processes)
    workers = [first]
    try:
        produce(settings, messages[:third])
        wait_for(done, "the first part, one worker", workers)
        second, last = (WorkerProcess("second", env, tmp_path, processes),
                        WorkerProcess("third", env, tmp_path, processes))
        workers += [second, last]
        produce(settings, messages[third:2 * third])
        wait_for(lambda: done() and second.partitions() and last.partitions(),
                 "the second part, three workers sharing the partitions", workers)
        first.stop()  # the first worker leaves: what it owned moves through its checkpoints
        workers.remove(first)
        produce(settings, messages[2 * third:])
        wait_for(done, "the last part, two workers", workers)
        # the API of either worker answers the same, from the shared database
        answers = [{a["id"] for a in w.get("/api/v1/alerts?limit=500").json()["alerts"]} for w in workers]
        assert answers[0] == answers[1] and answers[0]
    finally:
        for w in workers:
            w.stop()

    # the same episodes and ids as one uninterrupted worker; every reading learned once, by one history
    audit_after_faults(database_url, expected, config.machines, LINE_SECONDS)
