"""Every Prometheus metric linewatch exports, defined once.

Names follow Prometheus conventions: ``linewatch_`` prefix, ``_total`` for counters, base units
(seconds, ratio 0-1) and bounded labels (line, machine, kind, severity, reason; never unit ids or
timestamps). One ``Metrics`` per registry, so each test can use a fresh ``CollectorRegistry``.
"""

from __future__ import annotations

import time

from prometheus_client import (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, Counter, Gauge,
                               Histogram, Info)

SKIP_REASONS = ("duplicate", "out_of_order", "late")
DATA_QUALITY_CHECKS = ("out_of_range", "stuck", "missing", "clock", "schema")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, process_metrics: bool = False):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_metrics:  # memory, CPU, open files, GC: once per process, not per test registry
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                r.register(collector)
        from linewatch import __version__

        Info("linewatch_build", "Version of linewatch running.", registry=r).info({"version": __version__})
        self.readings = Counter("linewatch_readings_total",
                                "Sensor readings normalised (skipped duplicates included; see readings_skipped).",
                                ["line", "machine"], registry=r)
        self.readings_in_blocks = Counter(
            "linewatch_readings_in_blocks_total",
            "Readings taken in blocks (a machine's run of a batch normalised, checked and scored at once); the "
            "rest of linewatch_readings_total went one by one: aggregation, open data-quality alerts, bad input.",
            ["line", "machine"], registry=r)
        self.qc_results = Counter("linewatch_qc_results_total", "QC pass/fail results received.",
                                  ["line", "result"], registry=r)
        self.qc_unattributed = Counter("linewatch_qc_unattributed_total",
                                       "QC results the genealogy could not link to the machines that made the "
                                       "unit (no ids, unit or batch not seen): they count for the line only.",
                                       ["line", "reason"], registry=r)
        self.qc_replayed = Counter("linewatch_qc_replayed_total",
                                   "QC results seen before (same unit or batch, test, time and verdict: a re-send "
                                   "or a replay), recognised and not counted again.", ["line"], registry=r)
        self.rejected = Counter("linewatch_rejected_total", "Messages rejected to the dead-letter topic, by reason.",
                                ["reason"], registry=r)
        self.skipped = Counter("linewatch_readings_skipped_total",
                               "Readings not scored: duplicate, out_of_order, or late for their aggregation period.",
                               ["reason"], registry=r)
        self.data_quality = Counter("linewatch_data_quality_issues_total",
                                    "Readings with a data-quality problem, by check "
                                    "(out_of_range, stuck, missing, clock, schema).",
                                    ["line", "machine", "check"], registry=r)
        self.anomaly_score = Gauge("linewatch_anomaly_score",
                                   "Latest anomaly score of a machine, relative to its threshold (1 = threshold).",
                                   ["line", "machine"], registry=r)
        self.anomaly_threshold = Gauge("linewatch_anomaly_threshold",
                                       "Anomaly threshold of a machine on the score's scale (1 once calibrated).",
                                       ["line", "machine"], registry=r)
        self.failure_rate = Gauge("linewatch_failure_rate_ratio", "Failure rate of a line's recent units (0-1).",
                                  ["line"], registry=r)
        self.failure_rate_baseline = Gauge("linewatch_failure_rate_baseline_ratio",
                                           "Baseline failure rate of a line learned in phase I (0-1).",
                                           ["line"], registry=r)
        self.failure_rate_limit = Gauge("linewatch_failure_rate_upper_limit_ratio",
                                        "p-chart upper 3-sigma limit for the recent-units window (0-1).",
                                        ["line"], registry=r)
        self.failure_rate_cusum_limit = Gauge("linewatch_failure_rate_cusum_limit",
                                              "Decision limit of a line's failure-rate CUSUM.", ["line"], registry=r)
        self.failure_rate_statistic = Gauge("linewatch_failure_rate_cusum", "CUSUM statistic of a line's failure rate.",
                                            ["line"], registry=r)
        self.alerts_fired = Counter("linewatch_alerts_fired_total", "Alerts fired.", ["kind", "severity"], registry=r)
        self.alert_verdicts = Counter("linewatch_alert_verdicts_total",
                                      "Verdicts people gave on alerts (true_alarm, false_alarm, new_normal, unclear), "
                                      "counted by the API that took them; machine is empty for a line's own alerts.",
                                      ["line", "machine", "kind", "verdict"], registry=r)
        self.model_version = Gauge("linewatch_model_version",
                                   "The version of the machine's normal its model is on (GET /api/v1/machines/{id}/models; "
                                   "0: none learned yet).", ["line", "machine"], registry=r)
        self.alerts_open = Gauge("linewatch_alerts_open", "Alerts currently open (firing or acknowledged).",
                                 ["kind", "severity"], registry=r)
        self.batch_seconds = Histogram("linewatch_batch_processing_seconds",
                                       "Time to normalise, score and store one consumed batch.", registry=r,
                                       buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.batch_size = Histogram("linewatch_batch_messages", "Messages in one consumed batch.", registry=r,
                                    buckets=(1, 10, 50, 100, 500, 1000, 5000))
        self.durable_write_failures = Counter("linewatch_durable_write_failures_total",
                                              "Failed attempts to store alerts, write DLQ/alert records or save a "
                                              "checkpoint (each is retried; offsets wait).", ["what"], registry=r)
        self.latency = Histogram("linewatch_reading_latency_seconds",
                                 "From a message entering the source (Kafka record time) to its batch being scored.",
                                 registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.consumer_lag = Gauge("linewatch_consumer_lag_messages",
                                  "Messages on a partition not yet consumed by this worker.",
                                  ["topic", "partition"], registry=r)
        self.checkpoint_age = Gauge("linewatch_state_checkpoint_age_seconds",
                                    "Seconds since detector state was last checkpointed (the offsets committed with it).",
                                    registry=r)
        self.refused_checkpoints = Counter("linewatch_refused_checkpoints_total",
                                           "Checkpoint rows refused because the stored state had learned further into "
                                           "the same partition (another worker read on; this one reloaded it).",
                                           registry=r)
        self.withheld_events = Counter("linewatch_alert_events_withheld_total",
                                       "Alert events not announced because the store had already resolved the "
                                       "episode (a replay of old data, or a person resolved it through another "
                                       "worker): stored as resolved, never paged again.", ["kind"], registry=r)
        self.checkpoint_bytes = Gauge("linewatch_state_checkpoint_bytes", "Size of the last detector-state checkpoint.",
                                      registry=r)
        self.last_checkpoint: float | None = None
        self.checkpoint_age.set_function(
            lambda: float("nan") if self.last_checkpoint is None else time.time() - self.last_checkpoint)
        self.last_reading = Gauge("linewatch_last_reading_timestamp_seconds",
                                  "Line time of the latest reading of a machine (Unix seconds).",
                                  ["line", "machine"], registry=r)

    def initialise(self, machines: list[tuple[str, str]], reasons: tuple[str, ...]) -> None:
        """Create the known label combinations at zero, so dashboards show 0 instead of "No data"
        and ratio rules can be evaluated before the first rejection."""
        for reason in reasons:
            self.rejected.labels(reason)
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
        for line, machine in machines:
            self.readings.labels(line, machine)
            self.readings_in_blocks.labels(line, machine)
            self.model_version.labels(line, machine)
            for check in DATA_QUALITY_CHECKS:
                self.data_quality.labels(line, machine, check)
        for what in ("store", "sinks", "checkpoint"):
            self.durable_write_failures.labels(what)
