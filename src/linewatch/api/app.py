"""FastAPI application: what shop-floor displays, Grafana and people read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from linewatch import __version__
from linewatch.alerts.store import AlertStore
from linewatch.domain import AlertKind, AlertStatus, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline

STALE_AFTER = timedelta(seconds=60)  # a machine silent this long (on the line's clock) shows as stale


class StatusFilter(str, Enum):
    firing = AlertStatus.FIRING.value
    acknowledged = AlertStatus.ACKNOWLEDGED.value
    resolved = AlertStatus.RESOLVED.value


class KindFilter(str, Enum):
    anomaly = AlertKind.ANOMALY.value
    failure_rate = AlertKind.FAILURE_RATE.value
    data_quality = AlertKind.DATA_QUALITY.value
    stale_stream = AlertKind.STALE_STREAM.value


def create_app(store: AlertStore, pipeline: Pipeline, metrics: Metrics,
               is_ready: Callable[[], bool] = lambda: True) -> FastAPI:
    app = FastAPI(title="linewatch", version=__version__,
                  description="Streaming quality monitoring for production lines.")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The worker is consuming and the alert store answers."""
        worker, db = is_ready(), store.ping()
        body = {"ready": worker and db, "worker": worker, "store": db}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", tags=["health"])
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/alerts", tags=["alerts"])
    def list_alerts(status: list[StatusFilter] = Query(default=[]), kind: list[KindFilter] = Query(default=[]),
                    machine: str | None = None, line: str | None = None,
                    limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
        """Alerts, newest first."""
        alerts = store.query(status=[s.value for s in status], kind=[k.value for k in kind], machine=machine,
                             line=line, limit=limit)
        return {"alerts": [a.to_dict() for a in alerts], "count": len(alerts)}

    @app.get("/api/v1/alerts/{alert_id}", tags=["alerts"])
    def get_alert(alert_id: str) -> dict[str, Any]:
        alert = store.get(alert_id)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"No alert has id {alert_id!r}.")
        return alert.to_dict()

    @app.get("/api/v1/machines", tags=["machines"])
    def list_machines() -> dict[str, Any]:
        """Each machine's status: ok, warning, alarm, stale or waiting (no reading yet)."""
        machines, lines, open_alerts = pipeline.snapshot()
        newest = max((m.last_reading_at for m in machines if m.last_reading_at), default=None)
        worst: dict[str, Severity] = {}
        stale = {a.machine for a in open_alerts if a.kind is AlertKind.STALE_STREAM}
        for a in open_alerts:
            if a.machine and a.kind is not AlertKind.STALE_STREAM and (a.machine not in worst or a.severity is Severity.CRITICAL):
                worst[a.machine] = a.severity
        out = []
        for m in machines:
            if m.last_reading_at is None:
                state = "waiting"
            elif m.machine in stale or (newest is not None and newest - m.last_reading_at > STALE_AFTER):
                state = "stale"
            elif m.machine in worst:
                state = "alarm" if worst[m.machine] is Severity.CRITICAL else "warning"
            else:
                state = "ok"
            out.append({"machine": m.machine, "line": m.line, "kind": m.kind, "manufacturer": m.manufacturer,
                        "status": state, "model_phase": m.phase, "readings": m.readings,
                        "last_reading_at": _iso(m.last_reading_at),
                        "anomaly_score": None if m.score is None else round(m.score, 4),
                        "anomaly_threshold": m.threshold, "last_values": {k: round(v, 4) for k, v in m.last_values.items()}})
        line_out = [{"line": ls.line, "units": ls.units, "failure_rate": ls.failure_rate, "baseline": ls.baseline,
                     "upper_control_limit": ls.upper_control_limit, "cusum": ls.statistic, "cusum_limit": ls.limit,
                     "monitor_phase": ls.phase} for ls in lines]
        return {"machines": out, "lines": line_out}

    @app.get("/api/v1/machines/{machine_id}", tags=["machines"])
    def machine_detail(machine_id: str) -> dict[str, Any]:
        """The profile in use, the raw→canonical mapping with units and factors, the last raw and
        normalised sample: what was converted and how."""
        detail = pipeline.machine_detail(machine_id)
        if detail is None:
            raise HTTPException(status_code=404, detail=f"No machine has id {machine_id!r}; "
                                                        "GET /api/v1/machines lists them.")
        return detail

    return app


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
