"""Assembles a running linewatch: pipeline, store, sinks, HTTP server, and the runner between them."""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from linewatch.alerts.broadcast import Broadcaster
from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.publish import KafkaActionPublisher
from linewatch.alerts.silences import Silencer
from linewatch.alerts.sync import renew_since_checkpoint
from linewatch.alerts.webhook import WebhookSender
from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.api.connections import with_request_deadline
from linewatch.config import PlantConfig
from linewatch.detect.state import StateStore
from linewatch.metrics import Metrics
from linewatch.normalize.normalizer import Normalizer
from linewatch.pipeline import Pipeline
from linewatch.runner import Runner, Sink
from linewatch.sources.contracts import PartitionedSource, Source
from linewatch.settings import Settings

log = logging.getLogger(__name__)


class HttpServer:
    """uvicorn in a background thread, so the consumer loop keeps the main thread (and Ctrl-C)."""

    def __init__(self, app: Any, host: str, port: int, request_timeout: float = 10.0, idle_timeout: float = 5.0,
                 max_connections: int | None = 1000):
        # Live event streams (wall boards) never finish by themselves: give open responses one second
        # on shutdown, then close them, so boards notice the restart and reconnect. A connection that
        # sends no complete request in time is closed (api/connections.py); past max_connections uvicorn
        # answers 503 instead of taking on more.
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                   access_log=False, lifespan="off", timeout_graceful_shutdown=1,
                                                   http=with_request_deadline(request_timeout),
                                                   timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # a float is fine
                                                   limit_concurrency=max_connections))
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self.host = host

    def start(self, timeout: float = 15.0) -> None:
        # The consumer loop and the HTTP server share one interpreter lock. A shorter switch interval
        # (default 5 ms) lets the server answer between the loop's steps, which keeps wall-screen and
        # Grafana latency low while a batch is scored.
        sys.setswitchinterval(0.001)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the HTTP server could not start on {self.host}:{self.port} "
                                   "(is the port in use? choose another with --port)")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start within 15 s")
            time.sleep(0.05)

    @property
    def port(self) -> int:
        if self.server.started and self.server.servers:
            return self.server.servers[0].sockets[0].getsockname()[1]
        return self.server.config.port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Service:
    settings: Settings
    config: PlantConfig
    metrics: Metrics
    store: AlertStore
    pipeline: Pipeline
    runner: Runner
    http: HttpServer | None
    webhook: WebhookSender | None = None
    publisher: KafkaActionPublisher | None = None

    def stop(self) -> None:
        self.runner.stop_requested.set()

    def close(self) -> None:
        """After the runner has returned: stop serving, flush the webhook, release the store."""
        if self.http:
            self.http.stop()
        if self.webhook:
            self.webhook.close()
        if self.publisher:
            self.publisher.close()
        self.store.close()


def settle_memory() -> None:
    """Tell the garbage collector that what exists now (config, trees, models, libraries) lives for
    the whole run, and collect less often while batches churn out short-lived readings.

    The cyclic collector otherwise walks every long-lived object again and again as readings come and
    go; a worker spends several per cent of its time there (docs/benchmarks.md). Readings hold no
    reference cycles, so reference counting frees them as before; only the cycle search runs rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def build_service(settings: Settings, config: PlantConfig, source: Source, sinks: Sequence[Sink],
                  on_events=None, with_http: bool = True, stop: threading.Event | None = None) -> Service:
    metrics = Metrics(process_metrics=True)
    store = AlertStore(settings.database_url)
    broadcaster = Broadcaster(max_clients=settings.max_stream_clients)
    silencer = Silencer(store)
    escalate = config.detection.escalate_after_seconds
    book = AlertBook(store.open_alerts(), escalate_after=None if escalate is None else timedelta(seconds=escalate))

    webhook = WebhookSender(settings.webhook_url, settings.external_url) if settings.webhook_url else None

    def announce(events) -> None:
        broadcaster.publish(events)
        if webhook:
            webhook(events)
        if on_events:
            on_events(events)

    normalizer = Normalizer(config, max_bytes=settings.max_payload_bytes, raw_prefix=settings.raw_topic_prefix,
                            qc_topic=settings.qc_topic)
    pipeline = Pipeline(config, metrics, book, normalizer)
    pipeline.versions_on_record(store.latest_versions())  # a model made afresh numbers its versions on
    state = StateStore(store.engine)
    if not isinstance(source, PartitionedSource):
        # one source of everything: continue where it left off, with the new normals given since
        renew_since_checkpoint(pipeline, store, pipeline.import_state(state.load(), store.alerts_by_id).journal)
    # a Kafka worker loads the state of the partitions it is assigned, when they are assigned
    runner = Runner(source, pipeline, store, sinks, announce, silencer, state, settings.checkpoint_seconds, stop)
    http = publisher = None
    if with_http:
        if isinstance(source, PartitionedSource):  # a Kafka worker: people's actions go to the alerts topic too
            assert settings.kafka_bootstrap  # it consumes from there
            publisher = KafkaActionPublisher(settings.kafka_bootstrap, settings.alerts_topic)
        app = create_app(store, pipeline, metrics, is_ready=runner.ready.is_set, broadcaster=broadcaster,
                         on_silences_changed=silencer.invalidate, api_token=settings.api_token,
                         protect_reads=settings.protect_reads, read_token=settings.read_token,
                         cors_origins=settings.cors_origins,
                         max_body_bytes=settings.max_body_bytes, publish_actions=publisher)
        readiness_with_reason(app, store, runner)
        http = HttpServer(app, settings.http_host, settings.http_port, settings.http_request_timeout_seconds,
                          settings.http_idle_timeout_seconds, settings.http_max_connections)
    return Service(settings, config, metrics, store, pipeline, runner, http, webhook, publisher)


def readiness_with_reason(app: FastAPI, store: AlertStore, runner: Runner) -> None:
    """/readyz that also says why the worker is not ready (the database or the broker is away, the
    worker has not started or has stopped), replacing the app's plain one. ``store`` is false while a
    write to the database is failing, even if the database still answers a query.

    The body keeps the app's fields (``ready``, ``worker``, ``store``) and adds ``reason`` (null when
    ready); 503 whenever ``ready`` is false, so orchestrators and load balancers take the worker out.
    """
    app.router.routes[:] = [r for r in app.router.routes if not (isinstance(r, APIRoute) and r.path == "/readyz")]

    @app.get("/readyz", tags=["health"], responses={503: {"description": "the worker or the store is not ready; "
                                                                         "`reason` says why"}})
    def readyz() -> JSONResponse:
        """The worker is consuming and the alert store answers; if not, ``reason`` says why."""
        worker, why = runner.readiness()
        db = store.ping() and not runner.store_failing()  # answering is not enough: the last write must have worked
        if why is None and not db:
            why = "the database does not answer"
        body = {"ready": worker and db, "worker": worker, "store": db, "reason": why}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)


EXIT_UNFINISHED = 3  # stopped before the batch in hand was durable: not a clean stop


def install_stop_signals(service: Service) -> None:
    """SIGINT/SIGTERM finish the current batch, then stop; a second Ctrl-C stops at once.

    The stop is honoured within ``settings.stop_timeout_seconds`` whatever the worker is waiting for:
    every call to the broker and the database is bounded and gives way to a stop request, and should
    anything still hold the worker past the limit, a watchdog prints where every thread was and exits
    with status 3. Nothing is committed on that path, so the batch in hand is replayed (at least once).
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        if service.runner.stop_requested.is_set():
            raise KeyboardInterrupt
        service.stop()
        _start_watchdog(service.settings.stop_timeout_seconds, signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _start_watchdog(seconds: float, why: str) -> None:
    def watch() -> None:
        time.sleep(seconds)
        print(f"linewatch: {why} received {seconds:g} s ago and the worker has not stopped; exiting now with "
              f"status {EXIT_UNFINISHED}, committing nothing more (the batch in hand is replayed). Where each "
              "thread was:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(EXIT_UNFINISHED)

    threading.Thread(target=watch, name="stop-watchdog", daemon=True).start()
