"""The alert store, through SQLAlchemy: SQLite as the embedded default, PostgreSQL beside the line."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from linewatch.domain import Alert, AlertEvent, AlertKind, AlertStatus, Severity

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

    __table_args__ = (
        Index("ix_alerts_status_started", "status", "started_at"),
        Index("ix_alerts_machine", "machine"),
    )


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _to_alert(r: AlertRow) -> Alert:
    return Alert(id=r.id, kind=AlertKind(r.kind), severity=Severity(r.severity), line=r.line, machine=r.machine,
                 sensor=r.sensor, status=AlertStatus(r.status), started_at=_utc(r.started_at),  # type: ignore[arg-type]
                 last_seen_at=_utc(r.last_seen_at), summary=r.summary, details=r.details or {},  # type: ignore[arg-type]
                 ended_at=_utc(r.ended_at), acked_by=r.acked_by, acked_at=_utc(r.acked_at), ack_note=r.ack_note)


class AlertStore:
    """Durable alerts. ``save`` is idempotent: replaying the same events leaves the same rows."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)

    def save(self, events: Sequence[AlertEvent]) -> None:
        """Write the latest state of every alert the events touch, in one transaction."""
        if not events:
            return
        latest: dict[str, Alert] = {}
        for ev in events:
            latest[ev.alert.id] = ev.alert
        with Session(self.engine) as session, session.begin():
            for alert in latest.values():
                row = session.get(AlertRow, alert.id)
                if row is None:
                    session.add(AlertRow(id=alert.id, kind=alert.kind.value, severity=alert.severity.value,
                                         status=alert.status.value, line=alert.line, machine=alert.machine,
                                         sensor=alert.sensor, started_at=alert.started_at,
                                         last_seen_at=alert.last_seen_at, ended_at=alert.ended_at,
                                         summary=alert.summary, details=alert.details))
                    continue
                # The worker owns the condition; people own acknowledgement. Never undo an ack.
                row.severity = alert.severity.value
                row.last_seen_at = alert.last_seen_at
                row.summary = alert.summary
                row.details = alert.details
                if alert.status is AlertStatus.RESOLVED:
                    row.status = AlertStatus.RESOLVED.value
                    row.ended_at = alert.ended_at

    def get(self, alert_id: str) -> Alert | None:
        with Session(self.engine) as session:
            row = session.get(AlertRow, alert_id)
            return _to_alert(row) if row else None

    def query(self, *, status: Iterable[str] = (), kind: Iterable[str] = (), machine: str | None = None,
              line: str | None = None, limit: int = 100) -> list[Alert]:
        """Alerts, newest first, filtered."""
        stmt = select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.id).limit(limit)
        status, kind = list(status), list(kind)
        if status:
            stmt = stmt.where(AlertRow.status.in_(status))
        if kind:
            stmt = stmt.where(AlertRow.kind.in_(kind))
        if machine:
            stmt = stmt.where(AlertRow.machine == machine)
        if line:
            stmt = stmt.where(AlertRow.line == line)
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
