"""The alert store, through SQLAlchemy: SQLite as the embedded default, PostgreSQL beside the line.

The schema is managed by Alembic migrations (``linewatch/alerts/migrations``), applied when a store
opens. Saving alert events is idempotent (replaying a batch leaves the same rows); people's actions
(acknowledge, resolve, silence) are separate methods that check the alert's state first.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, DateTime, String, and_, create_engine, event, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from linewatch.domain import Alert, AlertEvent, AlertKind, AlertStatus, Severity, Silence

UTC = timezone.utc


class Base(DeclarativeBase):
    pass


class AlertRow(Base):
    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    line: Mapped[str] = mapped_column(String(128))
    machine: Mapped[str | None] = mapped_column(String(128))
    sensor: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[str] = mapped_column(String(1000))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    acked_by: Mapped[str | None] = mapped_column(String(128))
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ack_note: Mapped[str | None] = mapped_column(String(1000))
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    silence_id: Mapped[str | None] = mapped_column(String(36))


class SilenceRow(Base):
    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    line: Mapped[str | None] = mapped_column(String(128))
    machine: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str | None] = mapped_column(String(32))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertNotFound(LookupError):
    pass


class AlertConflict(ValueError):
    """The action does not fit the alert's state (e.g. acknowledging a resolved alert)."""


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _to_alert(r: AlertRow) -> Alert:
    return Alert(id=r.id, kind=AlertKind(r.kind), severity=Severity(r.severity), line=r.line, machine=r.machine,
                 sensor=r.sensor, status=AlertStatus(r.status), started_at=_utc(r.started_at),  # type: ignore[arg-type]
                 last_seen_at=_utc(r.last_seen_at), summary=r.summary, details=r.details or {},  # type: ignore[arg-type]
                 ended_at=_utc(r.ended_at), acked_by=r.acked_by, acked_at=_utc(r.acked_at), ack_note=r.ack_note,
                 resolved_by=r.resolved_by, silence_id=r.silence_id)


def _to_silence(r: SilenceRow) -> Silence:
    return Silence(id=r.id, starts_at=_utc(r.starts_at), ends_at=_utc(r.ends_at), created_by=r.created_by,  # type: ignore[arg-type]
                   reason=r.reason, created_at=_utc(r.created_at), line=r.line, machine=r.machine,  # type: ignore[arg-type]
                   kind=None if r.kind is None else AlertKind(r.kind))


def migrate(engine: Engine) -> None:
    """Bring the database schema to the latest Alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("linewatch.alerts") / "migrations"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def encode_cursor(alert: Alert) -> str:
    return base64.urlsafe_b64encode(f"{alert.started_at.isoformat()}|{alert.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError when the cursor was not made by encode_cursor."""
    try:
        started, alert_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return _utc(datetime.fromisoformat(started)), alert_id  # type: ignore[return-value]
    except Exception:
        raise ValueError(f"cursor {cursor!r} is not one this API handed out") from None


class AlertStore:
    """Durable alerts and silences."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.version = 0  # bumped on every write through this store, so readers can cache safely
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        migrate(self.engine)

    # ------------------------------------------------------------ the worker's side

    def save(self, events: Sequence[AlertEvent]) -> None:
        """Write the latest state of every alert the events touch, in one transaction."""
        if not events:
            return
        latest: dict[str, Alert] = {}
        for ev in events:
            latest[ev.alert.id] = ev.alert
        self.version += 1
        with Session(self.engine) as session, session.begin():
            for alert in latest.values():
                row = session.get(AlertRow, alert.id)
                if row is None:
                    session.add(AlertRow(id=alert.id, kind=alert.kind.value, severity=alert.severity.value,
                                         status=alert.status.value, line=alert.line, machine=alert.machine,
                                         sensor=alert.sensor, started_at=alert.started_at,
                                         last_seen_at=alert.last_seen_at, ended_at=alert.ended_at,
                                         summary=alert.summary, details=alert.details, silence_id=alert.silence_id))
                    continue
                if row.status == AlertStatus.RESOLVED.value:
                    continue  # resolved (by the condition or by a person): an episode never reopens
                # The worker owns the condition; people own acknowledgement. Never undo an ack.
                row.severity = alert.severity.value
                row.last_seen_at = alert.last_seen_at
                row.summary = alert.summary
                row.details = alert.details
                if alert.status is AlertStatus.RESOLVED:
                    row.status = AlertStatus.RESOLVED.value
                    row.ended_at = alert.ended_at

    # ------------------------------------------------------------ people's side

    @staticmethod
    def _open_row(session: Session, alert_id: str, conflict: str) -> AlertRow:
        """The alert's row for a person's action; it must exist and not be resolved."""
        row = session.get(AlertRow, alert_id)
        if row is None:
            raise AlertNotFound(alert_id)
        if row.status == AlertStatus.RESOLVED.value:
            raise AlertConflict(f"alert {alert_id} is already resolved{conflict}")
        return row

    def acknowledge(self, alert_id: str, by: str, note: str | None, at: datetime) -> Alert:
        self.version += 1
        with Session(self.engine) as session, session.begin():
            row = self._open_row(session, alert_id, "; there is nothing to acknowledge")
            row.status, row.acked_by, row.acked_at, row.ack_note = AlertStatus.ACKNOWLEDGED.value, by, at, note
            return _to_alert(row)

    def resolve(self, alert_id: str, by: str, note: str | None, at: datetime) -> Alert:
        self.version += 1
        with Session(self.engine) as session, session.begin():
            row = self._open_row(session, alert_id, "")
            row.status, row.ended_at, row.resolved_by = AlertStatus.RESOLVED.value, at, by
            if note:
                row.ack_note = note if not row.ack_note else f"{row.ack_note}\n{note}"
            return _to_alert(row)

    def add_silence(self, *, line: str | None, machine: str | None, kind: AlertKind | None, starts_at: datetime,
                    ends_at: datetime, created_by: str, reason: str, at: datetime) -> Silence:
        silence = Silence(id=str(uuid.uuid4()), starts_at=starts_at, ends_at=ends_at, created_by=created_by,
                          reason=reason, created_at=at, line=line, machine=machine, kind=kind)
        with Session(self.engine) as session, session.begin():
            session.add(SilenceRow(id=silence.id, line=line, machine=machine, kind=None if kind is None else kind.value,
                                   starts_at=starts_at, ends_at=ends_at, created_by=created_by, reason=reason,
                                   created_at=at))
        return silence

    def end_silence(self, silence_id: str, at: datetime) -> Silence:
        with Session(self.engine) as session, session.begin():
            row = session.get(SilenceRow, silence_id)
            if row is None:
                raise AlertNotFound(silence_id)
            if _utc(row.ends_at) > at:  # type: ignore[operator]
                row.ends_at = at
            return _to_silence(row)

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        stmt = select(SilenceRow).order_by(SilenceRow.starts_at.desc())
        if active_at is not None:
            stmt = stmt.where(SilenceRow.starts_at <= active_at, SilenceRow.ends_at > active_at)
        with Session(self.engine) as session:
            return [_to_silence(r) for r in session.scalars(stmt)]

    # ------------------------------------------------------------ reading

    def get(self, alert_id: str) -> Alert | None:
        with Session(self.engine) as session:
            row = session.get(AlertRow, alert_id)
            return _to_alert(row) if row else None

    def query(self, *, status: Iterable[str] = (), kind: Iterable[str] = (), severity: Iterable[str] = (),
              machine: str | None = None, line: str | None = None, since: datetime | None = None,
              until: datetime | None = None, after: tuple[datetime, str] | None = None,
              limit: int = 100) -> list[Alert]:
        """Alerts, newest first, filtered; ``after`` continues from a cursor (started_at, id)."""
        stmt = select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.id).limit(limit)
        status, kind, severity = list(status), list(kind), list(severity)
        if status:
            stmt = stmt.where(AlertRow.status.in_(status))
        if kind:
            stmt = stmt.where(AlertRow.kind.in_(kind))
        if severity:
            stmt = stmt.where(AlertRow.severity.in_(severity))
        if machine:
            stmt = stmt.where(AlertRow.machine == machine)
        if line:
            stmt = stmt.where(AlertRow.line == line)
        if since:
            stmt = stmt.where(AlertRow.started_at >= since)
        if until:
            stmt = stmt.where(AlertRow.started_at < until)
        if after:
            ts, alert_id = after
            stmt = stmt.where(or_(AlertRow.started_at < ts, and_(AlertRow.started_at == ts, AlertRow.id > alert_id)))
        with Session(self.engine) as session:
            return [_to_alert(r) for r in session.scalars(stmt)]

    def open_alerts(self) -> list[Alert]:
        """Alerts not yet resolved: the worker picks these up again after a restart."""
        return self.query(status=[AlertStatus.FIRING.value, AlertStatus.ACKNOWLEDGED.value], limit=100_000)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the HTTP API read while the worker writes; NORMAL sync is durable across process crashes.
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
