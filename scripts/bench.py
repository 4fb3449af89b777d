"""Benchmarks for docs/benchmarks.md: run by scripts/bench, never asserted in tests.

Measures, side by side in one run on this machine:
  - normalisation alone, per manufacturer profile (readings/s, one core);
  - the per-machine anomaly model's cost per reading, next to river's bare HalfSpaceTrees pipeline;
  - the whole pipeline through the real local broker: produce a simulated line, then time one worker
    consuming, normalising, scoring, storing and committing it, next to kafka-python's raw consume rate
    on the same topics;
  - with --scaling, 1 then 2 `linewatch run` processes on the same topics; with --latency, reading
    produced -> alert visible in the API at a paced ingest rate; with --api, the HTTP API under wrk load
    while a worker ingests; with --versions, 1,000 machines x 20 model versions in the alert database
    (the --*-only forms run just that section).
Each figure is the median of --repeat runs, except where a section says "one run".
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
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
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
gc_defaults = gc.get_threshold()


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
    """8-sensor readings: river reading by reading beside linewatch's batch model, same readings, same seed."""
    import numpy as np

    from linewatch.detect.reference import RiverMachineModel

    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 8)) * np.arange(1, 9) + 100.0
    x[rng.integers(1000, n, 40), rng.integers(0, 8, 40)] += 60.0  # some outliers, so the rescoring path runs
    sensors = [f"sensor_{i}" for i in range(8)]
    readings = [dict(zip(sensors, row)) for row in x.tolist()]
    settings = config.detection.anomaly
    scores: dict[str, np.ndarray] = {}

    def river():
        model = RiverMachineModel("m", settings, seed=3)
        t = time.perf_counter()
        verdicts = [model.score_one(r) for r in readings]
        elapsed = time.perf_counter() - t
        scores["river"] = np.array([v.score for v in verdicts])
        return n, elapsed

    def batches(size: int):
        def run():
            model = MachineModel("m", settings, seed=3)
            model.score_batch(readings[:1])  # learns its sensors
            t = time.perf_counter()
            got = [model.score_array(x[i:i + size]).score for i in range(1, n, size)]
            elapsed = time.perf_counter() - t
            scores[f"batch {size}"] = np.concatenate([[0.0], *got])
            return n - 1, elapsed
        return run

    def dict_batches():
        model = MachineModel("m", settings, seed=3)
        t = time.perf_counter()
        for i in range(0, n, 500):
            model.score_batch(readings[i:i + 500])
        return n, time.perf_counter() - t

    from linewatch.detect.mewma import MewmaModel, MewmaSettings

    def mewma(knobs: MewmaSettings, plant=settings):
        def run():
            model = MewmaModel("m", plant, mewma=knobs)
            model.score_batch(readings[:plant.warmup_readings + plant.calibration_readings])  # calibrated
            t = time.perf_counter()
            for i in range(0, n, 500):
                model.score_array(x[i:i + 500])
            return n, time.perf_counter() - t
        return run

    # the MEWMA as it was before issue 11 (EWMA T² only, the first outlier raises the alarm) beside the default
    before = MewmaSettings(shewhart=False, difference_trending=False, mean_learning_rate=0.01)
    out = {"linewatch MewmaModel.score_array, batches of 500, pre-issue-11 knobs":
           median_rate(mewma(before, settings.model_copy(update={"debounce_k": 1, "debounce_n": 1})), repeat),
           "linewatch MewmaModel.score_array, batches of 500, defaults without the dispersion chart":
           median_rate(mewma(settings.mewma.model_copy(update={"dispersion_smoothing": 0.0})), repeat),
           "linewatch MewmaModel.score_array, batches of 500, defaults (the production model)":
           median_rate(mewma(settings.mewma), repeat)}
    out |= {"river RiverMachineModel.score_one, reading by reading (8 sensors)": median_rate(river, repeat),
           "linewatch MachineModel.score_array, batches of 100": median_rate(batches(100), repeat),
           "linewatch MachineModel.score_array, batches of 1000": median_rate(batches(1000), repeat),
           "linewatch MachineModel.score_batch, dicts, batches of 500": median_rate(dict_batches, repeat)}
    worst = max(float(np.max(np.abs(scores[k] - scores["river"]))) for k in scores if k != "river")
    print(f"largest score difference from river over {n:,} readings: {worst:.3g}", file=sys.stderr)
    if worst > 1e-9:
        raise SystemExit(f"batch scores differ from river's by {worst:.3g} (> 1e-9)")
    return out


MEMORY_PROBE = """
import sys, numpy as np
import linewatch.service, linewatch.runner, linewatch.sources.kafka  # everything a worker imports
from linewatch.config import AnomalySettings
from linewatch.detect.anomaly import MachineModel
from linewatch.detect.reference import RiverMachineModel

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

kind, machines = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
x = rng.normal(size=(800, 8)) * np.arange(1, 9) + 100.0
rows = [dict((f"sensor_{i}", v) for i, v in enumerate(r)) for r in x.tolist()]
before = rss_mb()
models = []
for m in range(machines):
    if kind == "batch":
        model = MachineModel(f"machine-{m}", AnomalySettings())
        model.score_batch(rows)
    else:
        model = RiverMachineModel(f"machine-{m}", AnomalySettings())
        for r in rows:
            model.score_one(r)
    models.append(model)
assert all(mdl.phase == "monitoring" for mdl in models)
print(rss_mb(), rss_mb() - before)
"""


def bench_memory() -> dict[str, float]:
    """Resident memory of a process with every worker import and N machines' models, each past calibration."""
    import subprocess

    def probe(kind: str, machines: int) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, kind, str(machines)], capture_output=True,
                             text=True, check=True).stdout.split()
        return float(out[0]), float(out[1])

    total, models = probe("batch", 1000)
    river_total, river_models = probe("river", 100)
    return {"linewatch, 1,000 machines: resident MB (whole process)": total,
            "linewatch, 1,000 machines: MB for the models": models,
            "river objects, 100 machines: resident MB (whole process)": river_total,
            "river objects, 100 machines: MB for the models (x10 for 1,000)": river_models}


def bench_versions(config, machines: int = 1000, per_machine: int = 20) -> dict[str, float]:
    """What recording every version of every machine's normal costs: the size of one version's state and
    of a machine's checkpoint with its Lineage, and 1,000 machines x 20 versions in a SQLite alert
    database (file size, save time, listing one machine's versions)."""
    import pickle
    from datetime import timedelta

    from linewatch.alerts.store import AlertStore
    from linewatch.detect.versions import version_id
    from linewatch.pipeline import Pipeline
    from linewatch.metrics import Metrics

    pipeline = Pipeline(config, Metrics())
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(900)]
    out = []
    for i in range(0, len(msgs), 500):
        out += pipeline.process(msgs[i:i + 500]).versions
    v = next(x for x in out if x.machine == "extruder-1")  # 5 sensors, MEWMA, past calibration
    model = pipeline.models["extruder-1"]
    with_lineage = len(pickle.dumps(model, protocol=5))
    lineage = model.__dict__.pop("lineage")
    without = len(pickle.dumps(model, protocol=5))
    model.lineage = lineage
    results = {"one version's state (extruder, 5 sensors): bytes": len(v.state),
               "a machine's model in its checkpoint, with its Lineage: bytes": with_lineage,
               "the same without the Lineage: bytes": without}
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "versions.db")
        store = AlertStore(f"sqlite:///{db}")
        try:
            started = time.perf_counter()
            for n in range(1, per_machine + 1):
                batch = [dataclasses.replace(v, id=version_id(f"machine-{m}", None, n, v.made_at + timedelta(hours=n)),
                                             machine=f"machine-{m}", version=n,
                                             made_at=v.made_at + timedelta(hours=n))
                         for m in range(machines)]
                store.save_versions(batch, keep=per_machine)
            saving = time.perf_counter() - started
            listing = []
            for m in range(0, machines, machines // 20):
                t = time.perf_counter()
                assert len(store.model_versions(f"machine-{m}")) == per_machine
                listing.append(time.perf_counter() - t)
        finally:
            store.close()
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    count = machines * per_machine
    results.update({f"{count:,} versions ({machines:,} machines x {per_machine}): database MB": size / 2**20,
                    "saving them, one transaction per 1,000: versions/s": count / saving,
                    "listing one machine's 20 versions: median ms": statistics.median(listing) * 1000})
    return results


def bench_kafka(config, bootstrap: str, repeat: int, seconds: int) -> dict[str, float]:
    from kafka import KafkaConsumer

    from linewatch.alerts.store import AlertStore
    from linewatch.metrics import Metrics
    from linewatch.pipeline import Pipeline
    from linewatch.runner import Runner
    from linewatch.service import settle_memory
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
        n, t0, cpu0 = 0, None, 0.0
        while n < total:
            for msgs in consumer.poll(timeout_ms=500).values():
                if t0 is None:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                n += len(msgs)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        consumer.close()
        raw_cpu.append(n / cpu)
        return n, elapsed

    # the plant's model (the MEWMA since issue 11) beside the Half-Space Trees default it replaced
    detection = config.detection.model_copy(
        update={"anomaly": config.detection.anomaly.model_copy(update={"model": "halfspace"})})
    halfspace_config = dataclasses.replace(config, detection=detection)

    def worker(columnar: bool = True, plant=config):
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(kafka_bootstrap=bootstrap, consumer_group=f"bench-{uuid.uuid4().hex[:6]}",
                                raw_topic_prefix=prefix, qc_topic=qc, dlq_topic=f"bench{tag}.dlq",
                                alerts_topic=f"bench{tag}.alerts", database_url=f"sqlite:///{tmp}/a.db")
            source, sink, store = KafkaSource(settings), KafkaSink(settings), AlertStore(settings.database_url)
            normalizer = Normalizer(plant, raw_prefix=prefix, qc_topic=qc)
            runner = Runner(source, Pipeline(plant, Metrics(), normalizer=normalizer, columnar=columnar), store, [sink])
            settle_memory()  # as `linewatch run` does once everything long-lived exists
            n, t0, cpu0 = 0, None, 0.0
            while n < total:
                out = runner.step()
                if out:
                    if t0 is None:
                        t0, cpu0 = time.perf_counter(), time.process_time()
                    n += out.messages
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            (worker_cpu if columnar and plant is config else []).append(n / cpu)  # others' not reported
            source.close(), sink.close(), store.close()
            gc.unfreeze()  # the next run starts as this one did
            gc.set_threshold(*gc_defaults)
            return n, elapsed

    # Alone, the raw consumer drains each fetch at once and then waits for the next one, so its rate on
    # the wall clock follows the broker's responsiveness (62k-125k msgs/s in one session here); its rate
    # per CPU second of this process (client and its IO thread) is the client's real ceiling.
    raw_cpu: list[float] = []
    worker_cpu: list[float] = []
    runs = {"raw kafka-python consume": raw_consume,
            "linewatch worker end to end (consume, normalise, score, store, commit)": worker,
            "… the same, every message read alone (Pipeline(columnar=False))": lambda: worker(columnar=False),
            "… the same with the Half-Space Trees model (the default before issue 11)":
                lambda: worker(plant=halfspace_config)}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):  # interleaved, so a noisy neighbour weighs on every row alike
        for name, fn in runs.items():
            n, seconds = fn()
            rates[name].append(n / seconds)
    out = {"produce (kafka-python, acks=all, idempotent)": produce_rate}
    out.update({name: statistics.median(r) for name, r in rates.items()})
    raw = out["raw kafka-python consume"]
    out["worker as a share of raw consume (median of the runs' ratios)"] = statistics.median(
        w / r for w, r in zip(rates["linewatch worker end to end (consume, normalise, score, store, commit)"],
                              rates["raw kafka-python consume"]))
    out["raw kafka-python consume per CPU second (the client's ceiling)"] = statistics.median(raw_cpu)
    out["worker per CPU second"] = statistics.median(worker_cpu)
    out["worker as a share of the ceiling, both per CPU second (median of the runs' ratios)"] = statistics.median(
        w / r for w, r in zip(worker_cpu, raw_cpu))
    assert raw > 0
    return out


def _metric_sum(url: str, name: str) -> float:
    import urllib.request

    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def bench_scaling(bootstrap: str, line_seconds: int) -> dict[str, float]:
    """The same topics (8 partitions each) consumed by 1, then 2 worker processes of one group.

    Each worker is ``linewatch run`` with its own SQLite (no handover is measured here); throughput
    is messages / (first message processed -> last message processed), rebalances included.
    """
    import subprocess

    from linewatch.sources.kafka import ensure_topics, raw_producer

    config = load_config()
    tag = uuid.uuid4().hex[:8]
    prefix, qc = f"scale{tag}.raw.", f"scale{tag}.qc"
    ensure_topics(bootstrap, [f"{prefix}{m}" for m in config.machines] + [qc], 8)
    producer = raw_producer(bootstrap)
    total = 0
    for sm in LineSimulator(T0, SimulatorSettings(faults=()), prefix, qc).messages(line_seconds):
        producer.send(sm.message.topic, key=sm.message.key, value=sm.message.value)
        total += 1
    producer.flush()
    producer.close()
    linewatch = os.path.join(os.path.dirname(sys.executable), "linewatch")
    out = {}
    for workers in (1, 2):
        env = {**os.environ, "LINEWATCH_KAFKA_BOOTSTRAP": bootstrap, "LINEWATCH_RAW_TOPIC_PREFIX": prefix,
               "LINEWATCH_QC_TOPIC": qc, "LINEWATCH_DLQ_TOPIC": f"scale{tag}.dlq",
               "LINEWATCH_ALERTS_TOPIC": f"scale{tag}.alerts", "LINEWATCH_CONSUMER_GROUP": f"scale-{tag}-{workers}"}
        with tempfile.TemporaryDirectory() as tmp:
            urls, procs = [], []
            for i in range(workers):
                port = _free_port()
                urls.append(f"http://127.0.0.1:{port}")
                procs.append(subprocess.Popen([linewatch, "run", "--port", str(port)],
                                              env={**env, "LINEWATCH_DATABASE_URL": f"sqlite:///{tmp}/w{i}.db"},
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            try:
                first = None
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    done = sum(_metric_sum(u, "linewatch_batch_messages_sum") for u in urls)
                    now = time.monotonic()
                    if done > 0 and first is None:
                        first = now
                    if done >= total:
                        break
                    time.sleep(0.1)
                else:
                    raise SystemExit(f"{workers} worker(s) did not finish {total} messages in 600 s")
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(30)
        out[f"{workers} worker process(es), msgs/s"] = total / (now - first)
    out["2 workers / 1 worker"] = out["2 worker process(es), msgs/s"] / out["1 worker process(es), msgs/s"]
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readings_total(url: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("linewatch_readings_total{"))


def _paced_producer(bootstrap: str, prefix: str, qc: str, rate: int, seconds: int, ready) -> None:
    """Produce the simulated line at ``rate`` readings/s from messages made in advance, so the producer
    costs little CPU during the measurement (in a plant the machines are elsewhere)."""
    from linewatch.sources.kafka import ensure_topics, raw_producer

    config = load_config()
    ensure_topics(bootstrap, [f"{prefix}{m}" for m in config.machines] + [qc], 8)
    sim = LineSimulator(T0, SimulatorSettings(), prefix, qc)
    messages = [sm.message for sm in sim.messages(seconds * rate // 4)]
    producer = raw_producer(bootstrap)
    ready.set()
    per_tick = max(1, int(rate * 1.25 / 20))  # 20 ticks a second; 5 messages per 4 readings
    start = time.monotonic()
    for i in range(0, len(messages), per_tick):
        for m in messages[i:i + per_tick]:
            producer.send(m.topic, key=m.key, value=m.value)
        wait = start + (i // per_tick + 1) / 20 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    producer.flush()
    producer.close()


def bench_alert_latency(bootstrap: str, seconds: int, rate: int) -> dict[str, float]:
    """From a reading produced to the alert it raises being visible in the API, at ``rate`` readings/s.

    The simulated line runs ~1,250x faster than real time (5 messages per line second), with a
    die-pressure spike on extruder-1 every 600 line seconds; each spike raises a fresh alert once
    the last has cleared. The producer notes when it sent each spike reading; a poller asks
    GET /api/v1/alerts every 20 ms and notes when each alert first appears. Latency = first seen -
    sent time of the reading the alert started at (the alert's ``started_at``), so it includes
    Kafka, the worker's batch, the store and the API, plus up to 20 ms of polling.
    """
    import json
    import subprocess
    import threading
    import urllib.request

    from linewatch.sources.kafka import ensure_topics, raw_producer
    from linewatch.sources.simulator import Fault

    config = load_config()
    tag = uuid.uuid4().hex[:8]
    prefix, qc = f"lat{tag}.raw.", f"lat{tag}.qc"
    ensure_topics(bootstrap, [f"{prefix}{m}" for m in config.machines] + [qc], 8)
    line_seconds = seconds * rate // 4
    faults = tuple(Fault("spike", "extruder-1", start=float(t), duration=4.0, sensor="die_pressure", magnitude=80.0)
                   for t in range(3000, line_seconds, 600))
    windows = [(T0.timestamp() + f.start, T0.timestamp() + f.start + f.duration) for f in faults]
    messages = [(sm.ts, sm.message) for sm in LineSimulator(T0, SimulatorSettings(faults=faults), prefix, qc).messages(line_seconds)]
    sent: dict[tuple[str, float], float] = {}
    first_seen: dict[str, tuple[float, str, float]] = {}
    done = threading.Event()
    env = {**os.environ, "LINEWATCH_KAFKA_BOOTSTRAP": bootstrap, "LINEWATCH_RAW_TOPIC_PREFIX": prefix,
           "LINEWATCH_QC_TOPIC": qc, "LINEWATCH_DLQ_TOPIC": f"lat{tag}.dlq", "LINEWATCH_ALERTS_TOPIC": f"lat{tag}.alerts",
           "LINEWATCH_CONSUMER_GROUP": f"lat-{tag}"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"

    def produce() -> None:
        producer = raw_producer(bootstrap)
        per_tick = max(1, int(rate * 1.25 / 50))  # 50 ticks a second; 5 messages per 4 readings
        start = time.monotonic()
        for i in range(0, len(messages), per_tick):
            for ts, m in messages[i:i + per_tick]:
                t = ts.timestamp()
                if m.key == b"extruder-1" and m.topic != qc and any(a <= t < b for a, b in windows):
                    sent[("extruder-1", t)] = time.time()
                producer.send(m.topic, key=m.key, value=m.value)
            wait = start + (i // per_tick + 1) / 50 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        producer.flush()
        producer.close()

    def poll() -> None:
        while not done.is_set():
            try:
                body = json.loads(urllib.request.urlopen(f"{url}/api/v1/alerts?kind=anomaly&limit=20", timeout=2).read())
            except OSError:
                time.sleep(0.02)
                continue
            now = time.time()
            for a in body["alerts"]:
                if a["id"] not in first_seen:
                    started = datetime.fromisoformat(a["started_at"].replace("Z", "+00:00")).timestamp()
                    first_seen[a["id"]] = (now, a["machine"], started)
            time.sleep(0.02)

    linewatch = os.path.join(os.path.dirname(sys.executable), "linewatch")
    with tempfile.TemporaryDirectory() as tmp:
        env["LINEWATCH_DATABASE_URL"] = f"sqlite:///{tmp}/alerts.db"
        worker = subprocess.Popen([linewatch, "run", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.5)
            time.sleep(3)  # the consumer group settles
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            produce()
            time.sleep(3)
            done.set()
            poller.join(5)
        finally:
            worker.terminate()
            worker.wait(30)
    latencies = sorted(seen - sent[(machine, started)] for seen, machine, started in first_seen.values()
                       if (machine, started) in sent)
    if len(latencies) < 20:
        raise SystemExit(f"only {len(latencies)} alerts were matched to their readings; the latency run failed")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {"alerts measured": len(latencies), "p50 produced -> visible (ms)": pct(0.5),
            "p90 produced -> visible (ms)": pct(0.9), "p99 produced -> visible (ms)": pct(0.99),
            "max produced -> visible (ms)": latencies[-1] * 1000}


def bench_api_under_load(bootstrap: str, seconds: int, rate: int) -> dict[str, float]:
    """GET /api/v1/alerts?status=firing with wrk while one worker ingests ``rate`` readings/s from Kafka."""
    import re
    import shutil
    import subprocess
    import urllib.request

    if not shutil.which("wrk"):
        raise SystemExit("the API benchmark needs wrk (Debian: apt-get install wrk)")
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "LINEWATCH_KAFKA_BOOTSTRAP": bootstrap, "LINEWATCH_RAW_TOPIC_PREFIX": f"api{tag}.raw.",
           "LINEWATCH_QC_TOPIC": f"api{tag}.qc", "LINEWATCH_DLQ_TOPIC": f"api{tag}.dlq",
           "LINEWATCH_ALERTS_TOPIC": f"api{tag}.alerts", "LINEWATCH_CONSUMER_GROUP": f"api-{tag}"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    linewatch = os.path.join(os.path.dirname(sys.executable), "linewatch")
    with tempfile.TemporaryDirectory() as tmp:
        env["LINEWATCH_DATABASE_URL"] = f"sqlite:///{tmp}/alerts.db"
        import multiprocessing

        ready = multiprocessing.Event()
        producer = multiprocessing.Process(target=_paced_producer, args=(
            bootstrap, env["LINEWATCH_RAW_TOPIC_PREFIX"], env["LINEWATCH_QC_TOPIC"], rate, seconds + 60, ready))
        producer.start()
        ready.wait(120)
        worker = subprocess.Popen([linewatch, "run", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.5)
            time.sleep(20)  # past warm-up: the line has alerts, the worker has caught up
            before, t0 = _readings_total(url), time.monotonic()
            # paced like wall screens and dashboards polling: each of 14 connections waits 10 ms between
            # requests (a little over 1,000 requests/s offered), rather than a closed loop that takes every free cycle
            pace = os.path.join(tmp, "pace.lua")
            with open(pace, "w") as f:
                f.write("function delay()\n  return 10\nend\n")
            out = subprocess.run(["wrk", "-t2", "-c14", f"-d{seconds}s", "--latency", "-s", pace,
                                  f"{url}/api/v1/alerts?status=firing"], capture_output=True, text=True).stdout
            ingest = (_readings_total(url) - before) / (time.monotonic() - t0)
            firing = len(__import__("json").loads(urllib.request.urlopen(url + "/api/v1/alerts?status=firing").read())["alerts"])
        finally:
            producer.terminate()
            producer.join(30)
            worker.terminate()
            worker.wait(30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"GET /api/v1/alerts?status=firing (requests/s)": rps, "  p50 latency (ms)": ms(" 50"),
            "  p99 latency (ms)": ms(" 99"), "readings ingested per second meanwhile": ingest,
            "firing alerts in each answer": firing}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--line-seconds", type=int, default=12_000, help="simulated line seconds for the Kafka run")
    p.add_argument("--skip-kafka", action="store_true")
    p.add_argument("--kafka-only", action="store_true", help="only the run through the broker (raw consume and worker)")
    p.add_argument("--api", action="store_true", help="also load the HTTP API while a worker ingests from Kafka")
    p.add_argument("--api-only", action="store_true", help="only the HTTP API run (implies --api)")
    p.add_argument("--api-seconds", type=int, default=20)
    p.add_argument("--api-rate", type=int, default=5000, help="readings/s the worker ingests during the API run")
    p.add_argument("--latency", action="store_true", help="also measure produced -> alert visible in the API")
    p.add_argument("--latency-only", action="store_true", help="only the alert latency run")
    p.add_argument("--latency-seconds", type=int, default=40)
    p.add_argument("--scaling", action="store_true", help="also compare 1 and 2 worker processes on one topic set")
    p.add_argument("--scaling-only", action="store_true", help="only the 1 -> 2 worker processes run")
    p.add_argument("--versions", action="store_true", help="also 1,000 machines x 20 model versions in the database")
    p.add_argument("--versions-only", action="store_true", help="only the model versions run")
    args = p.parse_args()
    config = load_config()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"command: scripts/bench {' '.join(sys.argv[1:])}".rstrip())
    only = args.api_only or args.latency_only or args.scaling_only or args.versions_only
    sections = [] if only or args.kafka_only else [("normalisation alone (readings/s, one core)", bench_normalize(config, args.repeat)),
                ("anomaly model per reading (readings/s, one core)", bench_models(config, args.repeat)),
                ("memory with every model past calibration (8 sensors each), one run", bench_memory())]
    bootstrap = os.environ.get("LINEWATCH_KAFKA_BOOTSTRAP")
    if bootstrap and not args.skip_kafka and (args.kafka_only or not only):
        sections.append((f"through the local broker {bootstrap} ({args.line_seconds * 5} messages, msgs/s)",
                         bench_kafka(config, bootstrap, args.repeat, args.line_seconds)))
    if bootstrap and (args.scaling or args.scaling_only):
        sections.append((f"1 -> 2 worker processes, same consumer group, {args.line_seconds * 5} messages over "
                         f"8 partitions per topic ({bootstrap}, one run each)",
                         bench_scaling(bootstrap, args.line_seconds)))
    if bootstrap and (args.latency or args.latency_only):
        sections.append((f"reading produced -> alert visible in the API, worker ingesting {args.api_rate} readings/s "
                         f"from {bootstrap} ({args.latency_seconds} s, one run)",
                         bench_alert_latency(bootstrap, args.latency_seconds, args.api_rate)))
    if args.versions or args.versions_only:
        sections.append(("model versions (one run)", bench_versions(config)))
    if bootstrap and (args.api or args.api_only):
        sections.append((f"HTTP API under load (wrk -t2 -c14, 10 ms between requests per connection, "
                         f"{args.api_seconds} s, worker ingesting "
                         f"{args.api_rate} readings/s from {bootstrap})",
                         bench_api_under_load(bootstrap, args.api_seconds, args.api_rate)))
    for title, rows in sections:
        print(f"\n{title}" if "one run" in title else f"\n{title}, median of {args.repeat}")
        for name, rate in rows.items():
            print(f"  {name:<75} {rate:>12,.2f}" if rate < 10 else f"  {name:<75} {rate:>12,.1f}" if rate < 100
                  else f"  {name:<75} {rate:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
