"""Benchmarks for docs/benchmarks.md: run by scripts/bench, never asserted in tests.

Measures, side by side in one run on this machine:
  - normalisation alone, per manufacturer profile (readings/s, one core);
  - the per-machine anomaly model's cost per reading, next to river's bare HalfSpaceTrees pipeline;
  - the whole pipeline through the real local broker: produce a simulated line, then time one worker
    consuming, normalising, scoring, storing and committing it, next to kafka-python's raw consume rate
    on the same topics.
Each figure is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

from linewatch.config import load_config
from linewatch.detect.anomaly import MachineModel
from linewatch.domain import Reading
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def median_rate(fn, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        n, seconds = fn()
        rates.append(n / seconds)
    return statistics.median(rates)


def bench_normalize(config, repeat: int, seconds: int = 20_000) -> dict[str, float]:
    normalizer = Normalizer(config)
    by_vendor: dict[str, list] = {}
    for sm in LineSimulator(T0, SimulatorSettings(faults=())).messages(seconds):
        if sm.message.topic.startswith("linewatch.raw."):
            by_vendor.setdefault(sm.message.topic.removeprefix("linewatch.raw."), []).append(sm.message)
    out = {}
    for machine, msgs in by_vendor.items():
        def run(msgs=msgs):
            t = time.perf_counter()
            for m in msgs:
                normalizer.normalize(m)
            return len(msgs), time.perf_counter() - t
        manufacturer = config.machines[machine].manufacturer
        out[f"{manufacturer} ({config.profiles[manufacturer].payload})"] = median_rate(run, repeat)
    return out


def bench_models(config, repeat: int, n: int = 20_000) -> dict[str, float]:
    from river import anomaly, compose, preprocessing

    normalizer = Normalizer(config)
    readings = [r.values for sm in LineSimulator(T0, SimulatorSettings(faults=())).messages(n)
                if isinstance(r := normalizer.normalize(sm.message), Reading) and r.machine == "extruder-1"]

    def ours():
        model = MachineModel("extruder-1", config.detection.anomaly)
        t = time.perf_counter()
        for x in readings:
            model.score_one(x)
        return len(readings), time.perf_counter() - t

    def bare_river():
        model = compose.Pipeline(preprocessing.StandardScaler(), anomaly.HalfSpaceTrees(n_trees=25, height=8,
                                                                                         window_size=250, seed=1))
        t = time.perf_counter()
        for x in readings:
            model.score_one(x)
            model.learn_one(x)
        return len(readings), time.perf_counter() - t

    return {"linewatch MachineModel.score_one (5 sensors)": median_rate(ours, repeat),
            "river StandardScaler|HalfSpaceTrees score_one+learn_one": median_rate(bare_river, repeat)}


def bench_kafka(config, bootstrap: str, repeat: int, seconds: int) -> dict[str, float]:
    from kafka import KafkaConsumer

    from linewatch.alerts.store import AlertStore
    from linewatch.metrics import Metrics
    from linewatch.pipeline import Pipeline
    from linewatch.runner import Runner
    from linewatch.settings import Settings
    from linewatch.sources.kafka import KafkaSink, KafkaSource, ensure_topics, raw_producer

    tag = uuid.uuid4().hex[:8]
    prefix, qc = f"bench{tag}.raw.", f"bench{tag}.qc"
    ensure_topics(bootstrap, [f"{prefix}{m}" for m in config.machines] + [qc], 8)
    producer = raw_producer(bootstrap)
    total = 0
    t = time.perf_counter()
    for sm in LineSimulator(T0, SimulatorSettings(faults=()), prefix, qc).messages(seconds):
        producer.send(sm.message.topic, key=sm.message.key, value=sm.message.value)
        total += 1
    producer.flush()
    produce_rate = total / (time.perf_counter() - t)
    producer.close()

    def raw_consume():
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                 auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000)
        consumer.subscribe(pattern=f"^(bench{tag}\\.raw\\..+|bench{tag}\\.qc)$")
        n, t0 = 0, None
        while n < total:
            for msgs in consumer.poll(timeout_ms=500).values():
                t0 = t0 or time.perf_counter()
                n += len(msgs)
        elapsed = time.perf_counter() - t0
        consumer.close()
        return n, elapsed

    def worker():
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(kafka_bootstrap=bootstrap, consumer_group=f"bench-{uuid.uuid4().hex[:6]}",
                                raw_topic_prefix=prefix, qc_topic=qc, dlq_topic=f"bench{tag}.dlq",
                                alerts_topic=f"bench{tag}.alerts", database_url=f"sqlite:///{tmp}/a.db")
            source, sink, store = KafkaSource(settings), KafkaSink(settings), AlertStore(settings.database_url)
            normalizer = Normalizer(config, raw_prefix=prefix, qc_topic=qc)
            runner = Runner(source, Pipeline(config, Metrics(), normalizer=normalizer), store, [sink])
            n, t0 = 0, None
            while n < total:
                out = runner.step()
                if out:
                    t0 = t0 or time.perf_counter() - 0.0
                    n += out.messages
            elapsed = time.perf_counter() - t0
            source.close(), sink.close(), store.close()
            return n, elapsed

    return {"produce (kafka-python, acks=all, idempotent)": produce_rate,
            "raw kafka-python consume": median_rate(raw_consume, repeat),
            "linewatch worker end to end (consume, normalise, score, store, commit)": median_rate(worker, repeat)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--line-seconds", type=int, default=12_000, help="simulated line seconds for the Kafka run")
    p.add_argument("--skip-kafka", action="store_true")
    args = p.parse_args()
    config = load_config()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"command: scripts/bench {' '.join(sys.argv[1:])}".rstrip())
    sections = [("normalisation alone (readings/s, one core)", bench_normalize(config, args.repeat)),
                ("anomaly model per reading (readings/s, one core)", bench_models(config, args.repeat))]
    bootstrap = os.environ.get("LINEWATCH_KAFKA_BOOTSTRAP")
    if bootstrap and not args.skip_kafka:
        sections.append((f"through the local broker {bootstrap} ({args.line_seconds * 5} messages, msgs/s)",
                         bench_kafka(config, bootstrap, args.repeat, args.line_seconds)))
    for title, rows in sections:
        print(f"\n{title}, median of {args.repeat}")
        for name, rate in rows.items():
            print(f"  {name:<75} {rate:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
