"""SIGTERM (what `docker stop` sends) mid-stream: the worker finishes its batch, checkpoints, commits
the offsets that checkpoint corresponds to, leaves its group and exits 0."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import sqlalchemy as sa
from kafka import KafkaAdminClient

from linewatch.sources.kafka import key_partition
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

from .conftest import committed_lag, create_topics, free_port, produce, worker_env

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
LINE_SECONDS = 24_000  # 120,000 messages: seconds of work, so SIGTERM usually lands mid-stream


def readings_scored(port: int) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("linewatch_readings_total{"))


def test_sigterm_mid_stream_finishes_the_batch_checkpoints_commits_and_closes(kafka_settings, config, tmp_path,
                                                                              processes):
    settings = kafka_settings
    create_topics(settings, config)
    produce(settings, [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=()), settings.raw_topic_prefix,
                                                          settings.qc_topic).messages(LINE_SECONDS)])
    db, port = tmp_path / "alerts.db", free_port()
    # no periodic checkpoint: the one at stop is what we see
    env = worker_env(settings, f"sqlite:///{db}", checkpoint_seconds=3600)
    worker = processes.start([sys.executable, "-m", "linewatch.cli", "run", "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while readings_scored(port) < 2000:
        assert worker.poll() is None, worker.stderr.read()
        assert time.monotonic() < deadline, "the worker did not get under way within 60 s"
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0  # finished its batch and stopped by itself, well before docker's SIGKILL
    stderr = worker.stderr.read()
    assert "Traceback" not in stderr, stderr

    # stopped with its last batch committed (mid-stream, unless it read all 120,000 messages in the moment
    # between two looks: the checks below hold either way, so the test does not depend on its speed)
    left = committed_lag(settings)
    assert 0 <= left < 5 * LINE_SECONDS

    # the committed position is exactly what the checkpoint learned: on each machine's partition,
    # the committed offset equals the readings its saved model has seen (nothing polled was dropped,
    # nothing learned is uncommitted), and likewise for the line's QC results
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets(settings.consumer_group)[settings.consumer_group]
        group = admin.describe_groups([settings.consumer_group])[settings.consumer_group]
    finally:
        admin.close()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        states = {row.key: row.state for row in conn.execute(sa.text("SELECT key, state FROM detector_state"))}
    engine.dispose()
    offsets = {(tp.topic, tp.partition): om.offset for tp, om in committed.items()}
    for machine in config.machines:
        topic = f"{settings.raw_topic_prefix}{machine}"
        position = offsets.get((topic, key_partition(machine, settings.topic_partitions)), 0)
        seen = pickle.loads(states[f"machine:{machine}"])["model"].seen if f"machine:{machine}" in states else 0
        assert seen == position, (machine, seen, position)
    qc = offsets.get((settings.qc_topic, key_partition("checkweigher-1", settings.topic_partitions)), 0)
    line = pickle.loads(states["line:line-1"]) if "line:line-1" in states else None
    units = 0 if line is None else (line["monitor"] if isinstance(line, dict) else line).units
    assert units == qc
    assert sum(offsets.values()) > 0
    # and it closed: it left the consumer group instead of waiting out its session
    assert group["group_state"] == "Empty" and group["members"] == [], group
