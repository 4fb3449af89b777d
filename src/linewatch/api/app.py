"""FastAPI application: what shop-floor displays, Grafana and people read and do."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, model_validator

from linewatch import __version__
from linewatch.alerts.broadcast import BUSY_RETRY_MS, Broadcaster
from linewatch.alerts.publish import Record, alert_action_record, silence_action_record
from linewatch.alerts.sync import sync_people_actions
from linewatch.api.security import BodyLimit, ReadProtection, TokenGuard
from linewatch.alerts.store import (ACKNOWLEDGE, END_SILENCE, NEW_NORMAL, RESOLVE, SILENCE, VERDICT, AlertConflict,
                                    AlertNotFound, AlertStore, VersionConflict, decode_cursor, encode_cursor)
from linewatch.alerts.verdicts import summarise
from linewatch.domain import Alert, AlertEvent, AlertEventType, AlertKind, AlertStatus, AlertVerdict, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import MachineStatus, Pipeline

log = logging.getLogger(__name__)
UTC = timezone.utc
STATIC = Path(__file__).parent / "static"
CACHE_SECONDS = 1.0


class StatusFilter(str, Enum):
    firing = AlertStatus.FIRING.value
    acknowledged = AlertStatus.ACKNOWLEDGED.value
    resolved = AlertStatus.RESOLVED.value


class KindFilter(str, Enum):
    anomaly = AlertKind.ANOMALY.value
    failure_rate = AlertKind.FAILURE_RATE.value
    data_quality = AlertKind.DATA_QUALITY.value
    stale_stream = AlertKind.STALE_STREAM.value
    model = AlertKind.MODEL.value


class SeverityFilter(str, Enum):
    warning = Severity.WARNING.value
    critical = Severity.CRITICAL.value


class PersonAction(BaseModel):
    by: str = Field(min_length=1, max_length=128, description="who does it (name or badge number)")
    note: str | None = Field(None, max_length=1000)


class Resolution(PersonAction):
    verdict: AlertVerdict | None = Field(None, description="what the alert was, if the person can say: true_alarm, "
                                                           "false_alarm, unclear (a new normal has its own action)")


class Judgement(PersonAction):
    verdict: AlertVerdict = Field(description="what the alert was: true_alarm, false_alarm, new_normal (only on a "
                                              "resolved alert: an open one uses new-normal) or unclear")


class Activation(BaseModel):
    by: str = Field(min_length=1, max_length=128, description="who puts the version back in use")
    why: str = Field(min_length=1, max_length=1000, description="why (journalled with the action)")


MAX_SILENCE = timedelta(days=7)


class SilenceRequest(BaseModel):
    line: str | None = None
    machine: str | None = None
    kind: KindFilter | None = None
    minutes: float | None = Field(None, gt=0, le=MAX_SILENCE.total_seconds() / 60, description="how long, from now")
    ends_at: datetime | None = None
    by: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_end(self) -> "SilenceRequest":
        if (self.minutes is None) == (self.ends_at is None):
            raise ValueError("give exactly one of minutes or ends_at")
        if not (self.line or self.machine or self.kind):
            raise ValueError("a silence needs a line, a machine or a kind: silencing everything is not allowed")
        return self


class Problem(BaseModel):
    detail: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {401: "no or wrong API token", 403: "changes are disabled (no API token configured)",
            404: "no such alert, silence or machine", 409: "the action does not fit the alert's state",
            413: "request body too large", 503: "not ready, or too many live clients (Retry-After)"}
    return {c: {"model": Problem, "description": text[c]} for c in codes}


def machine_state(m: MachineStatus, open_alerts: list[Alert]) -> str:
    """ok, warning, alarm, stale, or waiting (no reading yet): what a tile on the wall shows."""
    mine = [a for a in open_alerts if a.machine == m.machine and a.silence_id is None]
    if m.last_reading_at is None:
        return "waiting"
    if any(a.kind is AlertKind.STALE_STREAM for a in mine):
        return "stale"
    if any(a.severity is Severity.CRITICAL for a in mine):
        return "alarm"
    if mine:
        return "warning"
    return "ok"


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_app(store: AlertStore, pipeline: Pipeline, metrics: Metrics,
               is_ready: Callable[[], bool] = lambda: True, broadcaster: Broadcaster | None = None,
               on_silences_changed: Callable[[], None] = lambda: None, api_token: str | None = None,
               protect_reads: bool = False, cors_origins: list[str] | None = None,
               max_body_bytes: int = 65536, read_token: str | None = None,
               publish_actions: Callable[[Sequence[Record]], None] | None = None) -> FastAPI:
    """``publish_actions``: where people's actions go besides the store and the live stream, e.g. a
    ``linewatch.alerts.publish.KafkaActionPublisher`` on the alerts topic (records as
    ``(key, body)``)."""
    guard = TokenGuard(api_token, protect_reads, read_token)
    write = [Depends(guard.writer)]  # reads are checked once, for every path, by ReadProtection below
    app = FastAPI(title="linewatch", version=__version__,
                  description="Streaming quality monitoring for production lines. Changes (acknowledge, "
                              "resolve, silence) need 'Authorization: Bearer <token>'.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    # every read, /metrics, /docs and the board included (the last middleware added runs first: CORS,
    # when configured, answers preflights and labels refusals before this looks at credentials)
    app.add_middleware(ReadProtection, guard=guard)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    hub = broadcaster or Broadcaster()
    app.state.broadcaster = hub

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return JSONResponse({"message": f"{where}: {first['msg']}", "detail": jsonable(list(errors))}, status_code=422)

    # ------------------------------------------------------------ health and metrics

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "the worker or the store is not ready"}})
    def readyz() -> JSONResponse:
        """The worker is consuming and the alert store answers."""
        worker, db = is_ready(), store.ping()
        body = {"ready": worker and db, "worker": worker, "store": db}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ alerts

    cache: dict[str, tuple[int, float, bytes]] = {}  # query -> (store version, time, response body)

    @app.get("/api/v1/alerts", tags=["alerts"], responses=_errors(401))
    async def list_alerts(request: Request, status: list[StatusFilter] = Query(default=[]),
                    kind: list[KindFilter] = Query(default=[]), severity: list[SeverityFilter] = Query(default=[]),
                    machine: str | None = None, line: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, cursor: str | None = None,
                    limit: int = Query(default=100, ge=1, le=1000)) -> Response:
        """Alerts, newest first. Pass ``next_cursor`` back as ``cursor`` for the next page.

        Every wall screen and dashboard polls the same few queries: answers are cached until this
        process writes an alert, and for at most a second (another worker may have written)."""
        key = str(request.query_params)
        hit = cache.get(key)
        now = time.monotonic()
        if hit and hit[0] == store.version and now - hit[1] < CACHE_SECONDS:
            return Response(hit[2], media_type="application/json")
        return await run_in_threadpool(_query_alerts, key, now, status, kind, severity, machine, line, since, until,
                                       cursor, limit)

    def _query_alerts(key: str, now: float, status: list[StatusFilter], kind: list[KindFilter],
                      severity: list[SeverityFilter], machine: str | None, line: str | None, since: datetime | None,
                      until: datetime | None, cursor: str | None, limit: int) -> Response:
        version = store.version
        after = None
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError as exc:
                raise invalid(("query", "cursor"), str(exc)) from None
        alerts = store.query(status=[s.value for s in status], kind=[k.value for k in kind],
                             severity=[s.value for s in severity], machine=machine, line=line,
                             since=_aware(since, ("query", "since")), until=_aware(until, ("query", "until")),
                             after=after, limit=limit)
        body = json.dumps({"alerts": [a.to_dict() for a in alerts], "count": len(alerts),
                           "next_cursor": encode_cursor(alerts[-1]) if len(alerts) == limit else None}).encode()
        if len(cache) > 256:
            cache.clear()
        cache[key] = (version, now, body)
        return Response(body, media_type="application/json")

    @app.get("/api/v1/alerts/stream", tags=["alerts"], responses=_errors(401, 503))
    async def alert_stream() -> StreamingResponse:
        """Server-Sent Events: one ``alert`` event per change, for live displays. 503 with Retry-After
        when as many displays as allowed (LINEWATCH_MAX_STREAM_CLIENTS) are connected."""
        if hub.full:
            raise HTTPException(status_code=503, headers={"Retry-After": str(BUSY_RETRY_MS // 1000)},
                                detail=f"{hub.max_clients} live clients are connected, the most allowed "
                                       "(LINEWATCH_MAX_STREAM_CLIENTS); retry later.")
        return StreamingResponse(hub.stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/v1/alerts/{alert_id}", tags=["alerts"], responses=_errors(401, 404))
    def get_alert(alert_id: str) -> dict[str, Any]:
        alert = store.get(alert_id)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"No alert has id {alert_id!r}.")
        return alert.to_dict()

    def learn() -> None:
        """Apply people's actions (this one, and any done through other workers) to this worker's
        alert book and models now, rather than at the consumer loop's next batch."""
        try:
            sync_people_actions(pipeline, store)
        except Exception:  # noqa: BLE001 - the action is stored; the consumer loop applies it next batch
            log.exception("could not apply people's actions to this worker's alert book yet")

    def announce(event: AlertEventType, alert: Alert, kind: str, action: PersonAction, at: datetime,
                 verdict: AlertVerdict | None = None) -> None:
        hub.publish([AlertEvent(event, alert)])
        publish([alert_action_record(event, alert, kind, action.by, action.note, at, verdict)])
        if verdict is not None:
            metrics.alert_verdicts.labels(alert.line, alert.machine or "", alert.kind.value, verdict.value).inc()

    def publish(records: Sequence[Record]) -> None:
        if publish_actions is None:
            return
        try:
            publish_actions(records)
        except Exception:  # noqa: BLE001 - the action is stored and applied; only its announcement failed
            log.exception("could not publish %d people's action record(s) to the alerts topic", len(records))

    @app.post("/api/v1/alerts/{alert_id}/ack", tags=["alerts"], dependencies=write, responses=_errors(401, 403, 404, 409, 413))
    def acknowledge(alert_id: str, action: PersonAction) -> dict[str, Any]:
        """Someone has seen it and is on it. A resolved alert cannot be acknowledged (409)."""
        now = datetime.now(UTC)
        alert = _act(lambda: store.acknowledge(alert_id, action.by, action.note, now), alert_id)
        learn()
        announce(AlertEventType.ACKNOWLEDGED, alert, ACKNOWLEDGE, action, now)
        return alert.to_dict()

    @app.post("/api/v1/alerts/{alert_id}/resolve", tags=["alerts"], dependencies=write, responses=_errors(401, 403, 404, 409, 413))
    def resolve(alert_id: str, action: Resolution) -> dict[str, Any]:
        """Close the episode by hand; if the condition persists, the next occurrence is a new alert.
        With a ``verdict``, say what it was: the machine's share of true alarms is its detector's
        live precision (``GET /api/v1/verdicts``). A verdict of new_normal on an open anomaly alert is
        a 409: use new-normal, which also makes the model relearn."""
        now = datetime.now(UTC)
        alert = _act(lambda: store.resolve(alert_id, action.by, action.note, now, action.verdict), alert_id)
        learn()
        announce(AlertEventType.RESOLVED, alert, RESOLVE, action, now, action.verdict)
        return alert.to_dict()

    @app.post("/api/v1/alerts/{alert_id}/verdict", tags=["alerts"], dependencies=write, responses=_errors(401, 403, 404, 409, 413))
    def judge(alert_id: str, action: Judgement) -> dict[str, Any]:
        """Say what an alert was, open or resolved (a destructive test's result often comes back after the
        episode ended). A later verdict replaces the earlier one; the journal keeps both."""
        now = datetime.now(UTC)
        alert = _act(lambda: store.judge(alert_id, action.verdict, action.by, action.note, now), alert_id)
        learn()
        announce(AlertEventType.UPDATED, alert, VERDICT, action, now, action.verdict)
        return alert.to_dict()

    @app.post("/api/v1/alerts/{alert_id}/new-normal", tags=["alerts"], dependencies=write, responses=_errors(401, 403, 404, 409, 413))
    def new_normal(alert_id: str, action: PersonAction) -> dict[str, Any]:
        """The machine's current behaviour is its new normal (new material, recipe change): the open
        alert is resolved and the machine's model relearns from now on instead of raising it again (on
        whichever worker owns the machine). 409 for an alert already resolved or not an anomaly."""
        now = datetime.now(UTC)
        alert = _act(lambda: store.new_normal(alert_id, action.by, action.note, now), alert_id)
        learn()
        announce(AlertEventType.RESOLVED, alert, NEW_NORMAL, action, now, AlertVerdict.NEW_NORMAL)
        return {**alert.to_dict(), "model_phase": "warming_up"}

    # ------------------------------------------------------------ silences

    @app.get("/api/v1/silences", tags=["silences"], responses=_errors(401))
    def list_silences(active: bool = False) -> dict[str, Any]:
        silences = store.silences(active_at=datetime.now(UTC) if active else None)
        return {"silences": [s.to_dict() for s in silences], "count": len(silences)}

    @app.post("/api/v1/silences", tags=["silences"], status_code=201, dependencies=write, responses=_errors(401, 403, 413))
    def add_silence(req: SilenceRequest) -> dict[str, Any]:
        """Mute a machine, a line or an alert kind for a while, saying who and why."""
        now = datetime.now(UTC)
        known_machines, known_lines = set(pipeline.normalizer.machines), set(pipeline.lines)
        # "" is not "every machine": a silence names what it mutes, or leaves the field out
        if req.machine is not None and req.machine not in known_machines:
            raise invalid(("body", "machine"), f"no machine has id {req.machine!r}")
        if req.line is not None and req.line not in known_lines:
            raise invalid(("body", "line"), f"no line is called {req.line!r}")
        ends = now + timedelta(minutes=req.minutes) if req.minutes else _aware(req.ends_at, ("body", "ends_at"))
        assert ends is not None
        if ends <= now:
            raise invalid(("body", "ends_at"), "the silence would already be over")
        if ends > now + MAX_SILENCE:  # the same cap however the end is given
            raise invalid(("body", "ends_at"), f"a silence lasts at most {MAX_SILENCE.days} days")
        silence = store.add_silence(line=req.line, machine=req.machine,
                                    kind=None if req.kind is None else AlertKind(req.kind.value),
                                    starts_at=now, ends_at=ends, created_by=req.by, reason=req.reason, at=now)
        on_silences_changed()
        publish([silence_action_record("silenced", silence, SILENCE, req.by, req.reason, now)])
        return silence.to_dict()

    @app.delete("/api/v1/silences/{silence_id}", tags=["silences"], dependencies=write, responses=_errors(401, 403, 404))
    def end_silence(silence_id: str, by: str | None = Query(default=None, min_length=1, max_length=128,
                                                             description="who ends it")) -> dict[str, Any]:
        now = datetime.now(UTC)
        try:
            silence = store.end_silence(silence_id, now, by)
        except AlertNotFound:
            raise HTTPException(status_code=404, detail=f"No silence has id {silence_id!r}.") from None
        on_silences_changed()
        publish([silence_action_record("unsilenced", silence, END_SILENCE, by, None, now)])
        return silence.to_dict()

    # ------------------------------------------------------------ lines and machines

    def _machines_view() -> tuple[list[dict[str, Any]], list[Any], list[Alert]]:
        machines, lines, open_alerts = pipeline.snapshot()
        out = []
        for m in machines:
            mine = [a for a in open_alerts if a.machine == m.machine]
            headline = max(mine, key=lambda a: (a.silence_id is None, a.severity is Severity.CRITICAL,
                                                a.last_seen_at), default=None)
            out.append({"machine": m.machine, "line": m.line, "kind": m.kind, "manufacturer": m.manufacturer,
                        "status": machine_state(m, open_alerts), "model_phase": m.phase, "recipe": m.recipe,
                        "model_version": m.model_version or None, "model_version_made_at": _iso(m.model_version_at),
                        "readings": m.readings,
                        "last_reading_at": _iso(m.last_reading_at),
                        "anomaly_score": None if m.score is None else round(m.score, 4),
                        "anomaly_threshold": m.threshold,
                        "last_values": {k: round(v, 4) for k, v in m.last_values.items()},
                        "open_alerts": len(mine),
                        "headline": None if headline is None else {"id": headline.id, "kind": headline.kind.value,
                                                                   "severity": headline.severity.value,
                                                                   "summary": headline.summary,
                                                                   "silenced": headline.silence_id is not None}})
        return out, lines, open_alerts

    @app.get("/api/v1/machines", tags=["machines"], responses=_errors(401))
    def list_machines() -> dict[str, Any]:
        """Each machine's status: ok, warning, alarm, stale or waiting (no reading yet)."""
        machines, lines, _ = _machines_view()
        return {"machines": machines, "lines": [_line_dict(ls) for ls in lines]}

    @app.get("/api/v1/lines", tags=["machines"], responses=_errors(401))
    def list_lines() -> dict[str, Any]:
        """Each line with its machines and its failure rate against baseline and limits."""
        machines, lines, open_alerts = _machines_view()
        out = []
        rank = {"waiting": 0, "ok": 1, "stale": 2, "warning": 3, "alarm": 4}
        for ls in lines:
            mine = [m for m in machines if m["line"] == ls.line]
            rate_alert = next((a for a in open_alerts if a.kind is AlertKind.FAILURE_RATE and a.line == ls.line
                               and a.silence_id is None), None)
            states = [m["status"] for m in mine] + (
                ["alarm" if rate_alert.severity is Severity.CRITICAL else "warning"] if rate_alert else [])
            out.append({**_line_dict(ls), "status": max(states, key=rank.__getitem__, default="waiting"),
                        "machines": mine,
                        "failure_rate_alert": None if rate_alert is None else rate_alert.to_dict()})
        return {"lines": out}

    @app.get("/api/v1/trends", tags=["machines"], responses=_errors(401))
    def machine_trends() -> dict[str, Any]:
        """Every machine's last hour (as ``/api/v1/machines/{id}/trend``), in one answer for the wall board."""
        return {"machines": [t for m in sorted(pipeline.machines) if (t := pipeline.machine_trend(m)) is not None]}

    @app.get("/api/v1/machines/{machine_id}/trend", tags=["machines"], responses=_errors(401, 404))
    def machine_trend(machine_id: str) -> dict[str, Any]:
        """The machine's last hour, one point per 30 s of reading time: its anomaly score against the
        threshold, and the value of the sensor that matters most now: the wall board's sparkline."""
        return _found(pipeline.machine_trend(machine_id), f"No machine is called {machine_id!r}.")

    @app.get("/api/v1/lines/{line}/p-chart", tags=["machines"], responses=_errors(401, 404))
    def line_p_chart(line: str) -> dict[str, Any]:
        """The line's failure rate per subgroup of units (the last 1,500 units) against its baseline and
        the subgroup's 3-sigma limit, with the start of an open failure-rate alarm: the wall board's p-chart."""
        return _found(pipeline.failure_rate_chart(line), f"No line is called {line!r}.")

    @app.get("/api/v1/machines/{machine_id}", tags=["machines"], responses=_errors(401, 404))
    def machine_detail(machine_id: str) -> dict[str, Any]:
        """The profile in use, the raw→canonical mapping with units and factors, the last raw and
        normalised sample: what was converted and how."""
        return _found(pipeline.machine_detail(machine_id),
                      f"No machine has id {machine_id!r}; GET /api/v1/machines lists them.")

    @app.get("/api/v1/machines/{machine_id}/history", tags=["machines"], responses=_errors(401, 404))
    def machine_history(machine_id: str, since: datetime | None = None,
                        limit: int = Query(default=200, ge=1, le=5000)) -> dict[str, Any]:
        """A machine's alerts, newest first, with how long each lasted and totals per kind."""
        if machine_id not in pipeline.normalizer.machines:
            raise HTTPException(status_code=404, detail=f"No machine has id {machine_id!r}.")
        alerts = store.query(machine=machine_id, since=_aware(since, ("query", "since")), limit=limit)
        totals: dict[str, dict[str, float]] = {}
        for a in alerts:
            t = totals.setdefault(a.kind.value, {"count": 0, "total_seconds": 0.0})
            t["count"] += 1
            t["total_seconds"] += a.duration_seconds
        for t in totals.values():
            t["mean_seconds"] = t["total_seconds"] / t["count"]
        verdicts = next(iter(summarise(store.judgements(machine=machine_id, since=_aware(since, ("query", "since"))))),
                        None)
        return {"machine": machine_id, "alerts": [a.to_dict() for a in alerts], "totals": totals,
                "verdicts": None if verdicts is None else verdicts.to_dict()}

    # ------------------------------------------------------------ versions of a machine's normal

    def _recipe(machine_id: str, recipe: str | None) -> str | None:
        if machine_id not in pipeline.normalizer.machines:
            raise HTTPException(status_code=404, detail=f"No machine has id {machine_id!r}.")
        if recipe is not None:
            return recipe or None
        status = pipeline.machines.get(machine_id)
        return None if status is None else status.recipe

    @app.get("/api/v1/machines/{machine_id}/models", tags=["machines"], responses=_errors(401, 404))
    def machine_models(machine_id: str, recipe: str | None = Query(
            default=None, max_length=128, description="the recipe's versions (default: the recipe being made now; "
                                                      "empty: readings that name none)")) -> dict[str, Any]:
        """Every version of the machine's normal, newest first: why and when each was learned, from which
        readings, its threshold, each sensor's normal band and how its thresholds were calibrated.
        ``live`` is the version in use; an anomaly alert names the one that raised it
        (``details.model_version``)."""
        chosen = _recipe(machine_id, recipe)
        versions = store.model_versions(machine_id, chosen)
        live = next((v.version for v in versions if v.status == "active"), None)
        # what people judged each version's alerts to be: its live precision
        judged = {s.model_version: s.to_dict() for s in summarise(
            [j for j in store.judgements(machine=machine_id)
             if j.kind == AlertKind.ANOMALY.value and j.recipe == chosen], per_version=True)}
        return {"machine": machine_id, "recipe": chosen, "live": live,
                "versions": [{**v.to_dict(), "alerts": judged.get(v.version)} for v in versions]}

    @app.get("/api/v1/machines/{machine_id}/models/{version}", tags=["machines"], responses=_errors(401, 404))
    def machine_model(machine_id: str, version: int, recipe: str | None = Query(default=None, max_length=128)
                      ) -> dict[str, Any]:
        """One version beside the one in use: each sensor's normal band then and now."""
        chosen = _recipe(machine_id, recipe)
        versions = store.model_versions(machine_id, chosen)
        found = next((v for v in versions if v.version == version), None)
        if found is None:
            raise HTTPException(status_code=404, detail=f"{machine_id} has no model version {version}"
                                                        f"{f' for recipe {chosen!r}' if chosen else ''}; "
                                                        f"GET /api/v1/machines/{machine_id}/models lists them.")
        live = next((v for v in versions if v.status == "active"), None)
        theirs = live.normal_ranges if live else {}
        sensors = sorted(set(found.normal_ranges) | set(theirs))
        return {"machine": machine_id, "recipe": chosen, "version": found.to_dict(),
                "live": None if live is None else live.to_dict(),
                "normal_ranges": [{"sensor": s, "this": found.normal_ranges.get(s), "live": theirs.get(s)}
                                  for s in sensors]}

    @app.post("/api/v1/machines/{machine_id}/models/{version}/activate", tags=["machines"], dependencies=write,
              responses=_errors(401, 403, 404, 409, 413))
    def activate_model(machine_id: str, version: int, action: Activation,
                       recipe: str | None = Query(default=None, max_length=128)) -> dict[str, Any]:
        """Put an earlier version of the machine's normal back in use (a rollback): the worker that owns
        the machine swaps its model for the one stored with the version, which monitors at once. 409,
        changing nothing, for a version learned by another model kind, one that watched other sensors
        than the machine's profile maps now, or one whose state retention dropped."""
        chosen = _recipe(machine_id, recipe)
        if recipe is None:  # "the recipe being made now" moves; a rollback names what it rolls back
            recipes = {v.recipe for v in store.model_versions(machine_id, every_recipe=True)}
            if len(recipes) > 1:
                raise invalid(("query", "recipe"), f"{machine_id} has versions for several recipes "
                                                   f"({', '.join(sorted(r or '(none)' for r in recipes))}): name "
                                                   "the one to roll back (recipe=, empty for readings naming none)")
        now = datetime.now(UTC)
        try:
            activated = store.activate_version(machine_id, chosen, version, by=action.by, note=action.why, at=now,
                                               kind=pipeline.config.detection.anomaly.model,
                                               sensors=pipeline.watched_sensors(machine_id))
        except AlertNotFound:
            raise HTTPException(status_code=404, detail=f"{machine_id} has no model version {version}"
                                                        f"{f' for recipe {chosen!r}' if chosen else ''}.") from None
        except VersionConflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        learn()
        return {**activated.to_dict(), "activated_by": action.by, "why": action.why}

    @app.get("/api/v1/verdicts", tags=["alerts"], responses=_errors(401))
    def verdicts(line: str | None = None, machine: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, per_version: bool = Query(
                     default=False, description="also per version of each machine's normal (anomaly alerts)")
                 ) -> dict[str, Any]:
        """Per machine (and per line for its own alerts): alerts raised, the verdicts people gave, the
        share judged true of those judged true or false (the detector's live precision) and the median
        time to a person's first response (acknowledging, or resolving by hand). ``per_version``: the
        same for each model version that raised alerts (``versions``)."""
        rows = store.judgements(line=line, machine=machine, since=_aware(since, ("query", "since")),
                                until=_aware(until, ("query", "until")))
        body: dict[str, Any] = {"machines": [s.to_dict() for s in summarise(rows)]}
        if per_version:
            body["versions"] = [s.to_dict() for s in summarise(rows, per_version=True)]
        return body

    # ------------------------------------------------------------ the wall board

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/board", include_in_schema=False)
        def board() -> FileResponse:
            return FileResponse(STATIC / "board.html", headers={"Cache-Control": "no-cache"})

        @app.get("/board/machines/{machine_id}", include_in_schema=False)
        def machine_page(machine_id: str) -> FileResponse:
            if machine_id not in pipeline.machines:
                raise HTTPException(status_code=404, detail=f"No machine is called {machine_id!r}.")
            return FileResponse(STATIC / "machine.html", headers={"Cache-Control": "no-cache"})

    return app


def invalid(loc: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors, for checks a schema cannot express."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error", "input": None}])


def _found(answer: dict[str, Any] | None, missing: str) -> dict[str, Any]:
    """The answer, or a 404 saying what is missing."""
    if answer is None:
        raise HTTPException(status_code=404, detail=missing)
    return answer


def _act(action: Callable[[], Alert], alert_id: str) -> Alert:
    try:
        return action()
    except AlertNotFound:
        raise HTTPException(status_code=404, detail=f"No alert has id {alert_id!r}.") from None
    except AlertConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


def _aware(ts: datetime | None, where: tuple[str, ...] = ("query",)) -> datetime | None:
    """The time in UTC; a time whose UTC falls outside years 1-9999 is a 422 naming the field."""
    if ts is None:
        return None
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:
        raise invalid(where, f"{ts.isoformat()} is outside the times linewatch can read (years 1-9999 in UTC)") from None


def _line_dict(ls: Any) -> dict[str, Any]:
    return {"line": ls.line, "units": ls.units, "failure_rate": ls.failure_rate, "window_units": ls.window_units,
            "baseline": ls.baseline,
            "upper_control_limit": ls.upper_control_limit, "cusum": ls.statistic, "cusum_limit": ls.limit,
            "monitor_phase": ls.phase}


def jsonable(errors: list[Any]) -> list[Any]:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors)
