"""`linewatch ...`: the command line.

    linewatch demo            the main job on embedded defaults (simulated line, SQLite, HTTP on :8000)
    linewatch run             the worker: consume Kafka, score, alert, serve HTTP
    linewatch simulate        the simulated line's payloads, to Kafka or stdout
    linewatch replay          a real dataset (SKAB, SECOM) as vendor payloads, to Kafka or stdout
    linewatch normalize       JSON lines of raw messages on stdin -> canonical readings or rejections
    linewatch check-config    validate configs/ and name file, line and problem for each error
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from linewatch import __version__
from linewatch.config import ConfigError, PlantConfig, load_config

UTC = timezone.utc


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linewatch", description="Streaming quality monitoring for production lines.")
    p.add_argument("--version", action="version", version=f"linewatch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the worker does")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("demo", help="run the main job on embedded defaults with a simulated line")
    d.add_argument("--duration", type=float, help="stop after this many seconds and print a summary")
    d.add_argument("--port", type=int, help="HTTP port (default 8000, or LINEWATCH_HTTP_PORT)")
    d.add_argument("--speed", type=float, default=60.0, help="how much faster than real time the line runs "
                   "until it catches up with now (default 60)")
    d.add_argument("--backfill", type=float, default=7200.0, help="line seconds simulated before now (default 7200)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--config-dir", type=Path)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run the worker against Kafka (LINEWATCH_KAFKA_BOOTSTRAP)")
    r.add_argument("--duration", type=float)
    r.add_argument("--port", type=int)
    r.add_argument("--config-dir", type=Path)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("simulate", help="publish the simulated line's payloads")
    s.add_argument("--to", choices=["stdout", "kafka"], default="stdout")
    s.add_argument("--seconds", type=float, default=3600.0, help="line seconds to simulate (default 3600)")
    s.add_argument("--speed", type=float, default=0.0, help="times real time; 0 = as fast as possible (default)")
    s.add_argument("--start", help="line time of the first reading (ISO-8601, default: --seconds before now)")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--no-faults", action="store_true", help="a healthy line, no injected faults")
    s.add_argument("--bootstrap", help="Kafka bootstrap (default LINEWATCH_KAFKA_BOOTSTRAP)")
    s.set_defaults(func=cmd_simulate)

    rp = sub.add_parser("replay", help="replay a real dataset (SKAB, SECOM) as vendor payloads")
    rp.add_argument("dataset", choices=["skab", "secom"])
    rp.add_argument("path", type=Path, help="the dataset directory (e.g. ../shared/datasets/skab) or one SKAB CSV file")
    rp.add_argument("--to", choices=["stdout", "kafka"], required=True)
    rp.add_argument("--speed", type=float, default=0.0, help="times the data's own clock; 0 = as fast as possible (default)")
    rp.add_argument("--bootstrap", help="Kafka bootstrap (default LINEWATCH_KAFKA_BOOTSTRAP)")
    rp.add_argument("--keep-secom-dates", action="store_true",
                    help="send SECOM's dates as the CSV has them (month and day swapped where the day is <= 12)")
    rp.set_defaults(func=cmd_replay)

    n = sub.add_parser("normalize", help="normalise JSON lines {topic,key,value} from stdin, one result line each")
    n.add_argument("--config-dir", type=Path)
    n.set_defaults(func=cmd_normalize)

    ev = sub.add_parser("evaluate", help="measure detection quality (results in docs/evaluation.md)")
    evs = ev.add_subparsers(dest="benchmark", required=True)
    fr = evs.add_parser("failure-rate", help="detection delay and in-control run length of the failure-rate monitor")
    fr.add_argument("--seeds", type=int, default=200)
    fr.add_argument("--p0", type=float, default=0.05)
    fr.add_argument("--steps", default="0.20,0.10,0.08", help="post-change failure rates, comma-separated")
    fr.add_argument("--json", action="store_true", help="print the full result as JSON")
    fr.set_defaults(func=cmd_evaluate_failure_rate)
    sk = evs.add_parser("skab", help="SKAB outlier F1 / FAR / MAR and changepoint NAB with the published protocol")
    sk.add_argument("path", type=Path, nargs="?", default=Path("../shared/datasets/skab"))
    sk.add_argument("--detector", choices=["mewma", "halfspace"], default="mewma",
                    help="mewma: multivariate EWMA / Hotelling T² (default); halfspace: Half-Space Trees + deviation")
    sk.add_argument("--exclude-thermal", action="store_true",
                    help="mewma without Temperature and Thermocouple (the pre-issue-11 comparison, chosen after "
                         "looking at the data; never the default)")
    sk.add_argument("--json", action="store_true")
    sk.set_defaults(func=cmd_evaluate_skab)
    se = evs.add_parser("secom", help="SECOM: ROC AUC of the per-unit score vs Pass/Fail, failure-rate alarms")
    se.add_argument("path", type=Path, nargs="?", default=Path("../shared/datasets/secom"))
    se.add_argument("--detector", choices=["halfspace", "mewma"], default="mewma",
                    help="mewma: multivariate EWMA / Hotelling T² (default); halfspace: Half-Space Trees + deviation")
    se.set_defaults(func=cmd_evaluate_secom)
    nab = evs.add_parser("nab", help="NAB-compatible score of linewatch (--data) or of other detectors (--scores)")
    source = nab.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="directory of timestamp,value CSVs: run linewatch's detector")
    source.add_argument("--scores", type=Path, help="directory of timestamp,value,anomaly_score CSVs to score")
    nab.add_argument("--windows", type=Path, required=True, help="labels in NAB's combined_windows.json format")
    nab.add_argument("--out", type=Path, default=Path("var/nab-scores"), help="where --data writes its scores")
    nab.add_argument("--detector", help="with --scores: NAB results layout <category>/<detector>_<file>.csv")
    nab.add_argument("--model", choices=["halfspace", "mewma"],
                     help="with --data: anomaly model (default: configs/plant.yaml's)")
    nab.add_argument("--json", action="store_true")
    nab.set_defaults(func=cmd_evaluate_nab)

    al = evs.add_parser("all", help="every benchmark in one table beside the published numbers")
    al.add_argument("--skab", type=Path, default=Path("../shared/datasets/skab"))
    al.add_argument("--secom", type=Path, default=Path("../shared/datasets/secom"))
    al.add_argument("--nab-data", type=Path, help="a NAB-format data directory (timestamp,value CSVs)")
    al.add_argument("--nab-windows", type=Path, help="its labels in NAB's combined_windows.json format")
    al.add_argument("--seeds", type=int, default=200, help="failure-rate simulation seeds (default 200)")
    al.add_argument("--no-synthetic", action="store_true", help="leave out the synthetic development set (about 1 min)")
    al.add_argument("--json", action="store_true", help="rows, timings and every benchmark's full result as JSON")
    al.set_defaults(func=cmd_evaluate_all)
    sy = evs.add_parser("synthetic", help="labelled synthetic series and process runs with a plant's fault shapes")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--model", choices=["halfspace", "mewma"], help="anomaly model (default: configs/plant.yaml's)")
    sy.add_argument("--write", type=Path, help="also keep the univariate set here as a NAB corpus "
                                                "(data/ and combined_windows.json)")
    sy.add_argument("--json", action="store_true")
    sy.set_defaults(func=cmd_evaluate_synthetic)

    from linewatch import cli_models

    cli_models.add_parser(sub, _settings, _config)

    c = sub.add_parser("check-config", help="validate plant, catalogue and manufacturer profiles")
    c.add_argument("--config-dir", type=Path)
    c.set_defaults(func=cmd_check_config)
    return p


# ---------------------------------------------------------------- helpers


def _settings(args: argparse.Namespace):
    from pydantic import ValidationError

    from linewatch.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:  # a setting that would start a weaker or broken service stops startup
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()))
            name = f"LINEWATCH_{where.upper()}" if where else "settings"
            print(f"linewatch: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None
    if getattr(args, "port", None) is not None:
        settings.http_port = args.port
    if getattr(args, "config_dir", None):
        settings.config_dir = args.config_dir
    return settings


def _config(directory: Path | None) -> PlantConfig | None:
    try:
        return load_config(directory)
    except ConfigError as exc:
        print(f"linewatch: the configuration has {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _summary(stats, wall: float) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.alerts_fired_by_kind.items())) or "none"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected_by_reason.items()))
    rejected = f"{stats.rejected}" + (f" ({reasons})" if reasons else "")
    return (f"summary: {wall:.0f} s, {stats.messages} messages: {stats.readings} readings processed, "
            f"{stats.qc_results} QC results, {rejected} rejected; alerts fired by kind: {kinds}")


# ---------------------------------------------------------------- commands


def cmd_evaluate_failure_rate(args: argparse.Namespace) -> int:
    from linewatch.evaluate.failure_rate import evaluate

    steps = tuple(float(s) for s in args.steps.split(","))
    result = evaluate(seeds=args.seeds, p0=args.p0, steps=steps)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ic = result["in_control"]
    print(f"in control at {ic['p0']:.0%}: ARL0 mean {ic['arl0_mean_units']:,.0f} units, median "
          f"{ic['arl0_median_units']:,.0f} ({ic['seeds']} seeds, baseline learned from "
          f"{result['settings']['baseline_units']} units)")
    for s in result["steps"]:
        print(f"{s['p0']:.0%} -> {s['p1']:.0%}: median delay {s['median_delay']:.0f} units, mean "
              f"{s['mean_delay']:.0f}, p90 {s['p90_delay']:.0f}; false alarms before the step "
              f"{s['false_alarms_before_step']}/{s['seeds']}, missed {s['missed']}")
    print(f"ADWIN backstop in control: {result['backstop_false_alarms_per_10k_units']:.3f} upward alarms "
          f"per 10,000 units")
    for name, delay in result["adwin_median_delay"].items():
        print(f"reference: river ADWIN (defaults) {name}: median delay {delay:.0f} units")
    return 0


def cmd_evaluate_skab(args: argparse.Namespace) -> int:
    from linewatch.evaluate.skab import evaluate

    try:
        from linewatch.evaluate.skab import EXCLUDED_THERMAL

        result = evaluate(args.path, detector=args.detector, mewma=EXCLUDED_THERMAL if args.exclude_thermal else None)
    except OSError as exc:
        print(f"linewatch evaluate skab: {exc}", file=sys.stderr)
        return 2
    o, cp = result["outlier"], result["changepoint"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        nab = cp["skab_nab"]
        print(f"detector {result['detector']}" + (f" ({result['note']})" if result.get("note") else ""))
        print(f"SKAB outliers over {o['files']} runs: F1 {o['f1']:.3f}, FAR {o['far_percent']:.2f} %, "
              f"MAR {o['mar_percent']:.2f} % (leaderboard best: Conv-AE F1 0.78, FAR 13.55 %, MAR 28.02 %)")
        print(f"SKAB changepoint NAB (SKAB's scorer): standard {nab['standard']:.2f}, low FP {nab['low_FP']:.2f}, "
              f"low FN {nab['low_FN']:.2f} (leaderboard best standard: MSCRED 32.42); {cp['detected']} of "
              f"{cp['windows']} windows found, {cp['false_positives']} false changepoints")
        print(f"same changepoints, linewatch's NAB (original sigmoid) scorer, standard: "
              f"{cp['linewatch_nab_standard']:.2f} (not comparable with SKAB's table)")
    return 0


def cmd_evaluate_secom(args: argparse.Namespace) -> int:
    from linewatch.evaluate.secom import evaluate

    try:
        result = evaluate(args.path, detector=args.detector)
    except OSError as exc:
        print(f"linewatch evaluate secom: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_evaluate_nab(args: argparse.Namespace) -> int:
    from linewatch.evaluate import nab

    try:
        if args.data:
            from linewatch.evaluate.detector import score_directory as run_linewatch

            from linewatch.evaluate.episodes import score_alerts

            frames = run_linewatch(args.data, args.windows, args.out, model_kind=args.model)
            windows = nab.load_windows(args.windows)
            results = nab.score_corpus({k: v for k, v in frames.items()}, windows)
            alerts = score_alerts(frames, windows)
        else:
            results, alerts = nab.score_directory(args.scores, args.windows, detector=args.detector), None
    except (OSError, ValueError) as exc:
        print(f"linewatch evaluate nab: {exc}", file=sys.stderr)
        return 2
    rows = {name: {"score": r.score, "threshold": r.threshold, "tp": r.tp, "fp": r.fp, "fn": r.fn, "tn": r.tn}
            for name, r in results.items()}
    if args.json:
        print(json.dumps(rows | ({"alerts": alerts} if alerts else {}), indent=2))
        return 0
    for name, r in results.items():
        print(f"{name:<20} {r.score:7.2f}  (threshold {r.threshold:.4f}; rows tp {r.tp} fp {r.fp} fn {r.fn})")
    if alerts:
        print(f"alerts (the production alert rule, each alert one detection): {alerts['alerts']} raised, "
              f"{alerts['windows_with_alert']} of {alerts['windows']} windows with an alert inside, "
              f"{alerts['false_alerts']} outside every window; NAB standard {alerts['nab']['standard']:.2f}")
    return 0


def cmd_evaluate_all(args: argparse.Namespace) -> int:
    from linewatch.evaluate.suite import evaluate_all, table

    try:
        result = evaluate_all(args.skab, args.secom, args.nab_data, args.nab_windows, seeds=args.seeds,
                              synthetic=not args.no_synthetic)
    except (OSError, ValueError) as exc:
        print(f"linewatch evaluate all: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


def cmd_evaluate_synthetic(args: argparse.Namespace) -> int:
    from linewatch.config import load_config
    from linewatch.evaluate.synthetic import evaluate

    model = args.model or load_config().detection.anomaly.model
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
    result = evaluate(model, seed=args.seed, work=args.write)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    uni, proc = result["univariate"], result["process"]
    print(f"anomaly model {model}, seed {args.seed}")
    print(f"univariate, {uni['series']} series, {uni['windows']} windows, NAB standard / low FP / low FN: "
          + " / ".join(f"{v:.2f}" for v in uni["linewatch"].values())
          + "; windowed Gaussian on the same: " + " / ".join(f"{v:.2f}" for v in uni["windowed_gaussian"].values()))
    alerts = uni["alerts"]
    print(f"  alerts: {alerts['alerts']} raised, {alerts['windows_with_alert']} of {alerts['windows']} windows with an "
          f"alert inside, {alerts['false_alerts']} outside every window; NAB standard {alerts['nab']['standard']:.2f}")
    for fault, row in alerts["per_fault"].items():
        print(f"  {fault:<20} alert inside the window {row['caught']} of {row['faults']}, "
              f"alerts per fault {row['alerts_per_fault']:.1f}")
    print(f"process, {proc['sensors']} sensors: false alarms on the normal run {100 * proc['false_alarm_rate']:.1f} %, "
          f"mean detection rate {proc['mean_detection_rate']:.2f}")
    for fault, rate in proc["detection_rate"].items():
        print(f"  {fault:<20} {rate:.2f}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args.config_dir)
    if config is None:
        return 2
    print(f"{config.directory}: ok — site {config.site}, {len(config.lines)} line(s), {len(config.machines)} machine(s), "
          f"{len(config.catalogue.sensors)} canonical sensors, {len(config.profiles)} manufacturer profile(s)")
    return 0


def cmd_normalize(args: argparse.Namespace) -> int:
    """JSON lines {topic, key, value} in, one outcome per line out, in memory bounded by the longest
    line allowed (a line longer than an envelope of the largest payload is skipped unread)."""
    import orjson

    from linewatch.domain import QcResult, RawMessage, Reading
    from linewatch.normalize.normalizer import DEFAULT_MAX_BYTES, Normalizer

    config = _config(args.config_dir)
    if config is None:
        return 2
    normalizer = Normalizer(config)
    out = sys.stdout
    # a payload of DEFAULT_MAX_BYTES may need six bytes per byte in JSON (\u00XX), plus the envelope
    max_line = 6 * DEFAULT_MAX_BYTES + 65_536
    for n, (raw_line, whole) in enumerate(_bounded_lines(sys.stdin.buffer, max_line), start=1):
        normalizer.schema_drift.clear()  # reported by the worker's pipeline; here nobody reads it
        if not whole:
            out.write(json.dumps({"line": n, "rejected": {"reason": "oversized",
                                  "detail": f"input line {n} is longer than {max_line:,} bytes; skipped unread"}}) + "\n")
            continue
        try:
            envelope = orjson.loads(raw_line)
            msg = RawMessage(topic=str(envelope["topic"]), value=str(envelope["value"]).encode("utf-8", "surrogateescape"),
                             key=None if envelope.get("key") is None else str(envelope["key"]).encode(), offset=n)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            out.write(json.dumps({"line": n, "rejected": {"reason": "bad_envelope",
                                  "detail": f"input line {n} is not a JSON object with topic, key, value "
                                            f"({str(exc)[:200]})"}}) + "\n")
            continue
        del envelope, raw_line  # the payload's bytes are in msg; keep one copy
        result = normalizer.normalize(msg)
        if isinstance(result, Reading):
            body = {"line": n, "reading": {"machine": result.machine, "line": result.line,
                                           "ts": result.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                           "values": result.values, "manufacturer": result.source.manufacturer}}
        elif isinstance(result, QcResult):
            body = {"line": n, "qc": {"machine": result.machine, "line": result.line,
                                      "ts": result.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                      "passed": result.passed, "test": result.test, "unit_id": result.unit_id,
                                      "batch_id": result.batch_id, "defect": result.defect}}
        else:
            body = {"line": n, "rejected": {"reason": result.reason, "detail": result.detail, "topic": msg.topic[:200]}}
        out.write(json.dumps(body) + "\n")
    out.flush()
    return 0


def _bounded_lines(stream, limit: int):
    """(line, True) for each line of at most ``limit`` bytes; (b"", False) for a longer one, whose
    rest is read and dropped in pieces, so no line ever costs more than ``limit`` bytes of memory."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line, True
            continue
        while line and not line.endswith(b"\n"):
            line = stream.readline(1 << 20)
        yield b"", False


def _publish(command: str, messages, topics: list[str], to: str, bootstrap: str | None, speed: float,
             total: int | None = None) -> int:
    """Send simulated or replayed messages to Kafka, or print them as JSON lines {topic, key, value}
    with the exact payload text; ``speed`` > 0 paces them on their own clock (X times real time)."""
    from tqdm import tqdm

    from linewatch.settings import Settings

    producer = None
    if to == "kafka":
        if not bootstrap:
            print(f"linewatch {command} --to kafka needs --bootstrap or LINEWATCH_KAFKA_BOOTSTRAP "
                  "(scripts/kafka-local start prints one)", file=sys.stderr)
            return 2
        from linewatch.sources.kafka import ensure_topics, raw_producer

        ensure_topics(bootstrap, topics, Settings().topic_partitions)
        producer = raw_producer(bootstrap)
    wall0, first, count = time.monotonic(), None, 0
    # disable=None: a bar when a person watches the terminal, silence in pipes and CI logs
    with tqdm(total=total, desc=command, unit="msg", file=sys.stderr, disable=None) as bar:
        for sm in messages:
            if speed > 0:
                first = first or sm.ts
                wait = (sm.ts - first).total_seconds() / speed - (time.monotonic() - wall0)
                if wait > 0:
                    time.sleep(wait)
            m = sm.message
            if producer is not None:
                producer.send(m.topic, key=m.key, value=m.value)
            else:
                sys.stdout.write(json.dumps({"topic": m.topic, "key": m.key.decode() if m.key else None,
                                             "value": m.value.decode()}) + "\n")
            count += 1
            bar.update()
    if producer is not None:
        from kafka.errors import KafkaTimeoutError

        try:
            producer.flush(timeout=60)
        except KafkaTimeoutError:
            print(f"{command}: the broker at {bootstrap} did not acknowledge every message within 60 s; "
                  f"some of the {count} may not have been produced", file=sys.stderr)
            return 1
        finally:
            producer.close(timeout=10)
        print(f"{command}: produced {count} messages to {bootstrap}", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from linewatch.settings import Settings
    from linewatch.sources.simulator import LineSimulator, SimulatorSettings

    settings = SimulatorSettings(seed=args.seed)
    if args.no_faults:
        settings.faults = ()
    start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC) - timedelta(seconds=args.seconds)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    topics = Settings()
    sim = LineSimulator(start, settings, topics.raw_topic_prefix, topics.qc_topic)
    names = [f"{topics.raw_topic_prefix}{m}" for m in settings.vendor_ids] + [topics.qc_topic]
    bootstrap = args.bootstrap or topics.kafka_bootstrap
    return _publish("simulate", sim.messages(seconds=args.seconds), names, args.to, bootstrap, args.speed)


def cmd_replay(args: argparse.Namespace) -> int:
    """Stream a real dataset through the same topics and profiles as a vendor's machines."""
    from linewatch.settings import Settings
    from linewatch.sources.replay import replay_secom, replay_skab

    settings = Settings()
    try:
        replay = (replay_skab(args.path, settings.raw_topic_prefix) if args.dataset == "skab"
                  else replay_secom(args.path, settings.raw_topic_prefix, settings.qc_topic,
                                    repair_dates=not args.keep_secom_dates))
    except (OSError, ValueError) as exc:
        print(f"linewatch replay: {exc}", file=sys.stderr)
        return 2
    return _publish(f"replay {args.dataset}", replay, list(replay.topics), args.to,
                    args.bootstrap or settings.kafka_bootstrap, args.speed, replay.total)


def cmd_run(args: argparse.Namespace) -> int:
    from linewatch.alerts.publish import TerminalPrinter
    from linewatch.service import EXIT_UNFINISHED, build_service, install_stop_signals, settle_memory
    from linewatch.sources.kafka import KafkaSink, KafkaSource, ensure_topics

    settings = _settings(args)
    config = _config(settings.config_dir)
    if config is None:
        return 2
    if not settings.kafka_bootstrap:
        print("linewatch run needs LINEWATCH_KAFKA_BOOTSTRAP (host:port of the broker); "
              "`linewatch demo` runs without Kafka", file=sys.stderr)
        return 2
    from kafka.errors import KafkaError

    try:
        ensure_topics(settings.kafka_bootstrap, [settings.qc_topic, settings.dlq_topic, settings.alerts_topic],
                      settings.topic_partitions)
    except KafkaError as exc:  # bounded: the admin client gives up after 30 s
        print(f"linewatch run: cannot reach the Kafka broker at {settings.kafka_bootstrap} ({exc}); "
              "is it running, and is LINEWATCH_KAFKA_BOOTSTRAP right?", file=sys.stderr)
        return 1
    source = KafkaSource(settings)
    stop = threading.Event()  # one stop request for the loop and for its waits on the broker
    sink = KafkaSink(settings, stop)
    service = build_service(settings, config, source, [sink], TerminalPrinter(), stop=stop)
    settle_memory()  # after everything long-lived exists
    install_stop_signals(service)
    assert service.http is not None
    service.http.start()
    print(f"linewatch worker: consuming {settings.kafka_bootstrap} as group {settings.consumer_group}; "
          f"API on http://{settings.http_host}:{service.http.port}", file=sys.stderr)
    wall = time.monotonic()
    try:
        stats = service.runner.run(duration=args.duration)
    finally:
        source.close()
        sink.close()
        service.close()
    print(_summary(stats, time.monotonic() - wall), file=sys.stderr)
    if stats.unfinished:  # a supervisor (systemd, docker) should see that this stop was not clean
        print(f"linewatch worker stopped during an outage ({stats.unfinished}); the batch in hand was not "
              "made durable and is replayed from the last checkpoint by the next worker", file=sys.stderr)
        return EXIT_UNFINISHED
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from linewatch.alerts.publish import FileDeadLetters, TerminalPrinter
    from linewatch.demo_operator import DemoOperator
    from linewatch.runner import Sink
    from linewatch.service import build_service, install_stop_signals, settle_memory
    from linewatch.sources.contracts import Source
    from linewatch.sources.inprocess import PacedSimulation
    from linewatch.sources.simulator import SimulatorSettings

    settings = _settings(args)
    config = _config(settings.config_dir)
    if config is None:
        return 2
    if "LINEWATCH_DATABASE_URL" not in os.environ:
        # each demo replays the same line from scratch, so it starts from an empty alert history
        demo_db = Path("var/demo.db")
        for stale in (demo_db, demo_db.with_suffix(".db-wal"), demo_db.with_suffix(".db-shm")):
            stale.unlink(missing_ok=True)
        settings.database_url = f"sqlite:///{demo_db}"
    if not settings.api_token:
        settings.api_token = secrets.token_urlsafe(18)  # the demo's own: printed below, valid while it runs
    if settings.protect_reads and not settings.read_token:
        settings.read_token = secrets.token_urlsafe(18)  # the wall board's, printed in its URL below
    stop = threading.Event()
    sim_settings = SimulatorSettings(seed=args.seed)
    simulation = PacedSimulation(sim_settings, backfill=args.backfill, speed=args.speed,
                                 raw_prefix=settings.raw_topic_prefix, qc_topic=settings.qc_topic)
    producer_thread = None
    closers = []
    source: Source
    sink: Sink
    if settings.kafka_bootstrap:
        from linewatch.sources.kafka import KafkaSink, KafkaSource, ensure_topics

        ensure_topics(settings.kafka_bootstrap, [f"{settings.raw_topic_prefix}{m}" for m in config.machines]
                      + [settings.qc_topic, settings.dlq_topic, settings.alerts_topic], settings.topic_partitions)
        source = KafkaSource(settings)
        sink = KafkaSink(settings, stop)
        closers += [source.close, sink.close]
        producer_thread = _SimulatorToKafka(simulation, settings.kafka_bootstrap)
        where = f"through Kafka at {settings.kafka_bootstrap}"
    else:
        source = simulation
        sink = FileDeadLetters(settings.dlq_file)
        where = "in-process (set LINEWATCH_KAFKA_BOOTSTRAP to go through a broker)"
    service = build_service(settings, config, source, [sink], TerminalPrinter(), stop=stop)
    settle_memory()  # after everything long-lived exists
    install_stop_signals(service)
    assert service.http is not None
    service.http.start()
    url = f"http://{settings.http_host}:{service.http.port}"
    print(f"linewatch demo — simulated {', '.join(config.lines)} with {len(config.machines)} machines from "
          f"{len(config.profiles)} manufacturers, {where}.\n"
          f"  line time starts {args.backfill / 3600:.1f} h ago and runs {args.speed:g}x until it reaches now\n"
          f"  alerts: {settings.database_url}   API: {url}/api/v1/alerts  {url}/api/v1/machines  {url}/metrics\n"
          f"  wall board: {url}/board{'?access_token=' + settings.read_token if settings.protect_reads else ''}"
          f"   API token for changes (ack, resolve, silence): {settings.api_token}\n"
          f"  injected faults: " + "; ".join(f.describe() for f in sim_settings.faults) + "\n"
          f"  a demo operator judges each resolved alert against them: {url}/api/v1/verdicts\n"
          "  Ctrl-C stops.", flush=True)
    if producer_thread:
        producer_thread.start()
    # judges each resolved alert against the faults the simulator injected (linewatch.demo_operator)
    near = "127.0.0.1" if settings.http_host in ("0.0.0.0", "", "::") else settings.http_host
    operator = DemoOperator(f"http://{near}:{service.http.port}", settings.api_token, sim_settings.faults,
                            simulation.sim_start)
    operator.start()
    wall = time.monotonic()
    try:
        stats = service.runner.run(duration=args.duration)
    finally:
        operator.stop()
        if producer_thread:
            producer_thread.stop()
        for close in closers:
            close()
        service.close()
    print(_summary(stats, time.monotonic() - wall), flush=True)
    return 0


class _SimulatorToKafka(threading.Thread):
    """Feeds the paced simulation into the broker, as the machines would."""

    def __init__(self, simulation, bootstrap: str):
        super().__init__(name="simulator", daemon=True)
        from linewatch.sources.kafka import raw_producer

        self.simulation = simulation
        self.producer = raw_producer(bootstrap)
        self.stopped = threading.Event()

    def run(self) -> None:
        from kafka.errors import KafkaError

        while not self.stopped.is_set():
            try:
                for m in self.simulation.next_batch():
                    self.producer.send(m.topic, key=m.key, value=m.value)
                self.producer.flush(timeout=10)
            except KafkaError as exc:  # the broker is away: the simulated line keeps trying, as machines do
                logging.getLogger(__name__).warning("simulator cannot produce to Kafka (%s); retrying", exc)
                self.stopped.wait(1.0)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=15)
        self.producer.close(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
