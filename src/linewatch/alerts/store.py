"""The alert store, through SQLAlchemy: SQLite as the embedded default, PostgreSQL beside the line.

The schema is managed by Alembic migrations (``linewatch/alerts/migrations``), applied when a store
opens. Saving alert events is idempotent (replaying a batch leaves the same rows); people's actions
(acknowledge, resolve, new normal, silence) are separate methods that check the alert's state first
and append the action to a journal (``alert_actions``) in the same transaction. Every worker shares
the database; each reads the journal from where it last stopped (``actions_since``) to learn what
people did through another worker's API.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, Integer, LargeBinary, String, and_, create_engine,
                        event, func, or_, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, defer, mapped_column

from linewatch.alerts.verdicts import Judged
from linewatch.detect.versions import ACTIVE, REJECTED, SUPERSEDED, ModelVersion, Recorded, version_id
from linewatch.domain import (Alert, AlertEvent, AlertEventType, AlertKind, AlertStatus, AlertVerdict, Severity,
                              Silence)

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
    # whether the sinks have this state (migration 0005): false from the worker's write until
    # ``announced`` is called, true for a person's action; None (older rows) counts as announced
    announced: Mapped[bool | None] = mapped_column(Boolean)
    # a person's judgement of what the alert was (migration 0006; ``AlertVerdict`` values)
    verdict: Mapped[str | None] = mapped_column(String(16))
    verdict_by: Mapped[str | None] = mapped_column(String(128))
    verdict_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict_note: Mapped[str | None] = mapped_column(String(1000))


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


class ModelVersionRow(Base):
    """One version of a machine's normal (migration 0007; ``linewatch.detect.versions``)."""

    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    machine: Mapped[str] = mapped_column(String(128))
    line: Mapped[str] = mapped_column(String(128))
    recipe: Mapped[str] = mapped_column(String(128))  # "" when the readings name none
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(32))
    made_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(String(1000))
    made_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    learned_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    readings: Mapped[int] = mapped_column(BigInteger)
    threshold: Mapped[float | None] = mapped_column(Float)
    normal_ranges: Mapped[dict[str, Any]] = mapped_column(JSON)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the quality gate's decision, if it ran
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CounterRow(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ActionRow(Base):
    """One thing a person did, in the order the actions committed (``seq``)."""

    __tablename__ = "alert_actions"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(16))
    alert_id: Mapped[str | None] = mapped_column(String(36))
    silence_id: Mapped[str | None] = mapped_column(String(36))
    line: Mapped[str | None] = mapped_column(String(128))
    machine: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str | None] = mapped_column(String(32))
    by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(String(1000))
    verdict: Mapped[str | None] = mapped_column(String(16))  # the verdict the action gave (migration 0006)
    # the model version a person activated, and its recipe ("" for none) (migration 0007)
    recipe: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[int | None] = mapped_column(Integer)


ACKNOWLEDGE, RESOLVE, NEW_NORMAL, SILENCE, END_SILENCE = "acknowledge", "resolve", "new_normal", "silence", "end_silence"
VERDICT = "verdict"  # a verdict given on its own, after the alert was resolved or while it is open
ACTIVATE = "activate"  # a person put an earlier version of a machine's normal back in use (a rollback)
_ACTIONS_COUNTER = "alert_actions"


@dataclass(frozen=True, slots=True)
class Action:
    """A person's action as journalled: ``acknowledge``, ``resolve``, ``new_normal`` (an anomaly
    open alert's machine relearns and the alert is resolved), ``verdict``, ``silence`` or
    ``end_silence``. ``verdict`` is the judgement the action gave, if any."""

    seq: int
    action: str
    at: datetime
    by: str | None = None
    note: str | None = None
    alert_id: str | None = None
    silence_id: str | None = None
    line: str | None = None
    machine: str | None = None
    kind: str | None = None
    verdict: AlertVerdict | None = None
    recipe: str | None = None  # for ``activate``: the recipe (None: readings naming none) and the version
    model_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.action, "by": self.by, "note": self.note,
                "verdict": None if self.verdict is None else self.verdict.value,
                "at": self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


class AlertNotFound(LookupError):
    pass


class AlertConflict(ValueError):
    """The action does not fit the alert's state (e.g. acknowledging a resolved alert)."""


class VersionConflict(ValueError):
    """A model version cannot be put in use for the machine (another model kind, other sensors)."""


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _iso_text(ts: datetime | None) -> str:
    ts = _utc(ts)
    return "at an unknown time" if ts is None else "since " + ts.isoformat(timespec="seconds").replace("+00:00", "Z")


def _to_alert(r: AlertRow) -> Alert:
    return Alert(id=r.id, kind=AlertKind(r.kind), severity=Severity(r.severity), line=r.line, machine=r.machine,
                 sensor=r.sensor, status=AlertStatus(r.status), started_at=_utc(r.started_at),  # type: ignore[arg-type]
                 last_seen_at=_utc(r.last_seen_at), summary=r.summary, details=r.details or {},  # type: ignore[arg-type]
                 ended_at=_utc(r.ended_at), acked_by=r.acked_by, acked_at=_utc(r.acked_at), ack_note=r.ack_note,
                 resolved_by=r.resolved_by, silence_id=r.silence_id, verdict=_verdict(r.verdict),
                 verdict_by=r.verdict_by, verdict_at=_utc(r.verdict_at), verdict_note=r.verdict_note)


def _to_version(r: ModelVersionRow, kept: bool, with_state: bool) -> ModelVersion:
    return ModelVersion(id=r.id, machine=r.machine, line=r.line, recipe=r.recipe or None, version=r.version,
                        kind=r.kind, settings=r.settings, reason=r.reason, made_by=r.made_by, note=r.note,
                        made_at=_utc(r.made_at), readings=r.readings, learned_from=_utc(r.learned_from),  # type: ignore[arg-type]
                        threshold=r.threshold, normal_ranges=r.normal_ranges, calibration=r.calibration, gate=r.gate,
                        state=(r.state or b"") if with_state else b"", status=r.status, state_kept=bool(kept))


def _version_of(details: dict[str, Any] | None) -> int | None:
    version = (details or {}).get("model_version")
    return version if isinstance(version, int) else None


def _check_fits(what: str, machine: str, version_kind: str, normal_ranges: dict[str, Any], kind: str,
                sensors: Iterable[str] | None) -> None:
    """VersionConflict unless a version of ``version_kind`` watching ``normal_ranges``' sensors can run on
    ``machine`` as the plant is configured now."""
    if version_kind != kind:
        raise VersionConflict(f"{what} was learned by a {version_kind} model; the plant runs {kind} models "
                              "(detection.anomaly.model), which cannot take its state.")
    if sensors is not None and set(normal_ranges) != set(sensors):
        then, now = set(normal_ranges), set(sensors)
        raise VersionConflict(f"{what} watched other sensors than {machine}'s profile maps now "
                              f"(only then: {', '.join(sorted(then - now)) or 'none'}; "
                              f"only now: {', '.join(sorted(now - then)) or 'none'}).")


def _filtered(stmt: Any, machine: str | None, line: str | None, since: datetime | None,
              until: datetime | None) -> Any:
    """Alerts of one machine and line, started in [since, until) (each filter only when given)."""
    if machine:
        stmt = stmt.where(AlertRow.machine == machine)
    if line:
        stmt = stmt.where(AlertRow.line == line)
    if since:
        stmt = stmt.where(AlertRow.started_at >= since)
    if until:
        stmt = stmt.where(AlertRow.started_at < until)
    return stmt


def _gate_text(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "no figures recorded"
    parts = [f"it would have raised an alert on {gate.get('alarms')} of {gate.get('readings')} readings in shadow"]
    if gate.get("implausible"):
        parts.append(f"implausible bands: {'; '.join(gate['implausible'])}")
    return "; ".join(parts)


def _verdict(value: str | None) -> AlertVerdict | None:
    return None if value is None else AlertVerdict(value)


def _to_silence(r: SilenceRow) -> Silence:
    return Silence(id=r.id, starts_at=_utc(r.starts_at), ends_at=_utc(r.ends_at), created_by=r.created_by,  # type: ignore[arg-type]
                   reason=r.reason, created_at=_utc(r.created_at), line=r.line, machine=r.machine,  # type: ignore[arg-type]
                   kind=None if r.kind is None else AlertKind(r.kind))


_MIGRATING = threading.Lock()
MIGRATION_LOCK = 0x6C696E6577617463  # "linewatc": the PostgreSQL advisory lock that serialises migrations


@dataclass(frozen=True, slots=True)
class Saved:
    """What a save means for the worker: the events it may announce, those it must not (``withheld``),
    and the alerts its book should close because the store holds them as over (``over``)."""

    announce: list[AlertEvent]
    withheld: list[AlertEvent] = field(default_factory=list)
    over: frozenset[str] = frozenset()


def announceable(events: Sequence[AlertEvent], closed: dict[str, Alert]) -> Saved:
    """The events that may be announced, given the alerts the store had already resolved and
    announced (``closed``).

    An episode the store has closed is never announced again, whatever the worker believes: a worker
    that replays old data from a stale state, or has not yet read that a person resolved it, would
    otherwise page people about something that is over. (A resolution the store holds but the sinks
    never got, after a crash between the two writes, is not in ``closed``: the replay sends it.)

    ``over``: alerts the worker should stop holding open. One a person resolved is over (its
    condition, if it persists, is a new alert). One the condition resolved stays open while the worker
    replays up to that resolution, so the replay makes the same decisions; an event past the stored
    end is news, not a replay, and the worker's episode is over too.
    """
    if not closed:
        return Saved(list(events))
    kept, withheld, over = [], [], set()
    for ev in events:
        stored = closed.get(ev.alert.id)
        if stored is None:
            kept.append(ev)
            continue
        withheld.append(ev)
        if ev.type is not AlertEventType.RESOLVED and (
                stored.resolved_by is not None or stored.ended_at is None
                or _utc(ev.alert.last_seen_at) > stored.ended_at):  # type: ignore[operator]
            over.add(ev.alert.id)
    return Saved(kept, withheld, frozenset(over))


def migrate(engine: Engine) -> None:
    """Bring the database schema to the latest Alembic revision.

    Workers started together on a new PostgreSQL database would otherwise race to create the same
    tables (one fails on a duplicate key of the catalogue): each migration holds an advisory lock for its
    transaction, so the second waits, then finds the schema at head and does nothing. Within one
    process, Alembic's context is global (not thread-safe): migrations take turns there too."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("linewatch.alerts") / "migrations"))
    with _MIGRATING, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
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
        self.engine: Engine = create_engine(url, pool_pre_ping=True, pool_timeout=DB_TIMEOUT_SECONDS,
                                            connect_args=_bounded_connect_args(url))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif url.startswith("postgresql"):
            event.listen(self.engine, "connect", _postgres_timeouts)
        migrate(self.engine)
        # where the journal of people's actions stood when this store opened: whatever was loaded
        # from the store after this (the open alerts) already reflects the actions up to here
        self.actions_at_open = self.last_action_seq()

    # ------------------------------------------------------------ the worker's side

    def save(self, events: Sequence[AlertEvent]) -> Saved:
        """Write the latest state of every alert the events touch, in one transaction. Returns the
        events fit to announce (``announceable``): none about an episode the store had already closed."""
        if not events:
            return Saved([])
        latest: dict[str, Alert] = {}
        for ev in events:
            latest[ev.alert.id] = ev.alert
        self.version += 1
        closed: dict[str, Alert] = {}
        with Session(self.engine) as session, session.begin():
            for alert in latest.values():
                row = session.get(AlertRow, alert.id)
                if row is None:
                    session.add(AlertRow(id=alert.id, kind=alert.kind.value, severity=alert.severity.value,
                                         status=alert.status.value, line=alert.line, machine=alert.machine,
                                         sensor=alert.sensor, started_at=alert.started_at,
                                         last_seen_at=alert.last_seen_at, ended_at=alert.ended_at,
                                         summary=alert.summary, details=alert.details, silence_id=alert.silence_id,
                                         announced=False))
                    continue
                if row.status == AlertStatus.RESOLVED.value:
                    if row.announced is not False:  # over, and the sinks know it
                        closed[alert.id] = _to_alert(row)
                    continue  # resolved (by the condition or by a person): an episode never reopens
                row.announced = False
                # The worker owns the condition; people own acknowledgement. Never undo an ack.
                row.severity = alert.severity.value
                row.last_seen_at = alert.last_seen_at
                row.summary = alert.summary
                row.details = alert.details
                if alert.status is AlertStatus.RESOLVED:
                    row.status = AlertStatus.RESOLVED.value
                    row.ended_at = alert.ended_at
        return announceable(events, closed)

    def announced(self, alert_ids: Iterable[str]) -> None:
        """The sinks have the latest state of these alerts (the batch that saved it is announced)."""
        ids = sorted(set(alert_ids))
        if not ids:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(update(AlertRow).where(AlertRow.id.in_(ids)).values(announced=True))

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

    @staticmethod
    def _journal(session: Session, action: str, at: datetime, by: str | None, note: str | None,
                 alert: AlertRow | None = None, silence: SilenceRow | None = None,
                 verdict: AlertVerdict | None = None) -> int:
        """Append a person's action to the journal, in the action's transaction; its sequence number.

        Incrementing the counter row locks it until the transaction ends, so actions commit in the
        order of their numbers and a reader never skips one that commits late. Called last in the
        transaction, so the lock is held for as short a time as possible."""
        session.flush()
        session.execute(update(CounterRow).where(CounterRow.name == _ACTIONS_COUNTER)
                        .values(value=CounterRow.value + 1))
        seq = session.scalar(select(CounterRow.value).where(CounterRow.name == _ACTIONS_COUNTER))
        assert seq is not None
        session.add(ActionRow(seq=seq, at=at, action=action, by=by, note=note,
                              alert_id=alert.id if alert else None, silence_id=silence.id if silence else None,
                              line=alert.line if alert else silence.line if silence else None,
                              machine=alert.machine if alert else silence.machine if silence else None,
                              kind=alert.kind if alert else silence.kind if silence else None,
                              verdict=None if verdict is None else verdict.value))
        return seq

    def acknowledge(self, alert_id: str, by: str, note: str | None, at: datetime) -> Alert:
        self.version += 1
        with Session(self.engine) as session, session.begin():
            row = self._open_row(session, alert_id, "; there is nothing to acknowledge")
            row.status, row.acked_by, row.acked_at, row.ack_note = AlertStatus.ACKNOWLEDGED.value, by, at, note
            self._journal(session, ACKNOWLEDGE, at, by, note, alert=row)
            return _to_alert(row)

    def resolve(self, alert_id: str, by: str, note: str | None, at: datetime,
                verdict: AlertVerdict | None = None) -> Alert:
        """Close the episode by hand, with the person's verdict if they give one. A verdict of "new
        normal" on an open anomaly alert is refused (AlertConflict): ``new_normal`` is the action that
        also makes the machine relearn, and a resolution that only said so would leave the old model
        raising the alert again."""
        self.version += 1
        with Session(self.engine) as session, session.begin():
            row = self._open_row(session, alert_id, "")
            if verdict is AlertVerdict.NEW_NORMAL and row.kind == AlertKind.ANOMALY.value and row.machine:
                raise AlertConflict(f"A new normal on anomaly alert {alert_id} is given with "
                                    f"POST /api/v1/alerts/{alert_id}/new-normal, which also makes "
                                    f"{row.machine}'s model relearn; resolving alone would not.")
            self._close(row, by, note, at)
            if verdict is not None:
                self._judge(row, verdict, by, note, at)
            self._journal(session, RESOLVE, at, by, note, alert=row, verdict=verdict)
            return _to_alert(row)

    def judge(self, alert_id: str, verdict: AlertVerdict, by: str, note: str | None, at: datetime) -> Alert:
        """Record what an alert was, open or resolved: a destructive test's result often comes back
        after the episode is over. A later verdict replaces an earlier one; the journal keeps both.
        "New normal" on an open anomaly alert is refused, as in ``resolve``."""
        self.version += 1
        with Session(self.engine) as session, session.begin():
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise AlertNotFound(alert_id)
            if (verdict is AlertVerdict.NEW_NORMAL and row.kind == AlertKind.ANOMALY.value and row.machine
                    and row.status != AlertStatus.RESOLVED.value):
                raise AlertConflict(f"Alert {alert_id} is open: a new normal is given with "
                                    f"POST /api/v1/alerts/{alert_id}/new-normal, which also makes "
                                    f"{row.machine}'s model relearn.")
            self._judge(row, verdict, by, note, at)
            self._journal(session, VERDICT, at, by, note, alert=row, verdict=verdict)
            return _to_alert(row)

    @staticmethod
    def _judge(row: AlertRow, verdict: AlertVerdict, by: str, note: str | None, at: datetime) -> None:
        row.verdict, row.verdict_by, row.verdict_at, row.verdict_note = verdict.value, by, at, note

    @staticmethod
    def _close(row: AlertRow, by: str, note: str | None, at: datetime) -> None:
        row.status, row.ended_at, row.resolved_by = AlertStatus.RESOLVED.value, at, by
        row.announced = True  # a person's action: the API announces it
        if note:
            row.ack_note = note if not row.ack_note else f"{row.ack_note}\n{note}"

    def new_normal(self, alert_id: str, by: str, note: str | None, at: datetime) -> Alert:
        """The anomaly alert's machine behaves as it now should: resolve the open alert (the note says
        "new normal"), and journal the action so the worker that owns the machine's model makes it
        relearn. Only an open anomaly alert on a machine qualifies (AlertConflict otherwise): a resolved
        one says nothing about how the machine behaves now, and relearning from it would leave no trace
        on any alert."""
        self.version += 1
        with Session(self.engine) as session, session.begin():
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise AlertNotFound(alert_id)
            if row.kind != AlertKind.ANOMALY.value or not row.machine:
                raise AlertConflict("Only an anomaly alert on a machine can be marked as the new normal.")
            if row.status == AlertStatus.RESOLVED.value:
                raise AlertConflict(f"Alert {alert_id} is resolved ({_iso_text(row.ended_at)}): a new normal is "
                                    "given on an open anomaly alert, while the machine behaves the new way.")
            self._close(row, by, f"new normal: {note}" if note else "new normal", at)
            self._judge(row, AlertVerdict.NEW_NORMAL, by, note, at)
            self._journal(session, NEW_NORMAL, at, by, note, alert=row, verdict=AlertVerdict.NEW_NORMAL)
            return _to_alert(row)

    def add_silence(self, *, line: str | None, machine: str | None, kind: AlertKind | None, starts_at: datetime,
                    ends_at: datetime, created_by: str, reason: str, at: datetime) -> Silence:
        silence = Silence(id=str(uuid.uuid4()), starts_at=starts_at, ends_at=ends_at, created_by=created_by,
                          reason=reason, created_at=at, line=line, machine=machine, kind=kind)
        with Session(self.engine) as session, session.begin():
            row = SilenceRow(id=silence.id, line=line, machine=machine, kind=None if kind is None else kind.value,
                             starts_at=starts_at, ends_at=ends_at, created_by=created_by, reason=reason, created_at=at)
            session.add(row)
            self._journal(session, SILENCE, at, created_by, reason, silence=row)
        return silence

    def end_silence(self, silence_id: str, at: datetime, by: str | None = None) -> Silence:
        with Session(self.engine) as session, session.begin():
            row = session.get(SilenceRow, silence_id)
            if row is None:
                raise AlertNotFound(silence_id)
            if _utc(row.ends_at) > at:  # type: ignore[operator]
                row.ends_at = at
            self._journal(session, END_SILENCE, at, by, None, silence=row)
            return _to_silence(row)

    # ------------------------------------------------------------ the journal of people's actions

    def last_action_seq(self) -> int:
        """The sequence number of the latest person's action (0: none yet)."""
        with Session(self.engine) as session:
            return int(session.scalar(select(CounterRow.value).where(CounterRow.name == _ACTIONS_COUNTER)) or 0)

    def actions_since(self, seq: int, limit: int = 1000) -> list[Action]:
        """People's actions after ``seq``, oldest first: one indexed query that returns nothing when
        nobody did anything, cheap enough for every batch."""
        stmt = select(ActionRow).where(ActionRow.seq > seq).order_by(ActionRow.seq).limit(limit)
        with Session(self.engine) as session:
            return [Action(seq=r.seq, action=r.action, at=_utc(r.at), by=r.by, note=r.note,  # type: ignore[arg-type]
                           alert_id=r.alert_id, silence_id=r.silence_id, line=r.line, machine=r.machine,
                           kind=r.kind, verdict=_verdict(r.verdict), recipe=r.recipe or None,
                           model_version=r.model_version) for r in session.scalars(stmt)]

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

    def alerts_by_id(self, ids: Iterable[str]) -> dict[str, Alert]:
        """The stored alerts among ``ids`` (a worker taking over a checkpoint asks which were acknowledged
        or resolved by a person since)."""
        ids = list(ids)
        if not ids:
            return {}
        with Session(self.engine) as session:
            return {r.id: _to_alert(r) for r in session.scalars(select(AlertRow).where(AlertRow.id.in_(ids)))}

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
        stmt = _filtered(stmt, machine, line, since, until)
        if after:
            ts, alert_id = after
            stmt = stmt.where(or_(AlertRow.started_at < ts, and_(AlertRow.started_at == ts, AlertRow.id > alert_id)))
        with Session(self.engine) as session:
            return [_to_alert(r) for r in session.scalars(stmt)]

    def judgements(self, *, line: str | None = None, machine: str | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> list[Judged]:
        """Every alert started in [since, until) with what people judged it and when they first acted:
        the columns ``linewatch.alerts.verdicts.summarise`` needs, not whole rows."""
        stmt = _filtered(select(AlertRow.line, AlertRow.machine, AlertRow.kind, AlertRow.started_at,
                                AlertRow.verdict, AlertRow.acked_at, AlertRow.resolved_by, AlertRow.ended_at,
                                AlertRow.details), machine, line, since, until)
        with Session(self.engine) as session:
            return [Judged(line=r.line, machine=r.machine, kind=r.kind, started_at=_utc(r.started_at),  # type: ignore[arg-type]
                           verdict=_verdict(r.verdict), acked_at=_utc(r.acked_at), resolved_by=r.resolved_by,
                           ended_at=_utc(r.ended_at), model_version=_version_of(r.details),
                           recipe=(r.details or {}).get("recipe"))
                    for r in session.execute(stmt)]

    # ------------------------------------------------------------ model versions

    def save_versions(self, versions: Sequence[ModelVersion], keep: int = 20, since: datetime | None = None) -> None:
        """Record the versions the worker's models learned, in one transaction; each becomes the one in
        use for its machine and recipe, and the one before it is superseded. Idempotent: a replayed
        batch makes the same versions with the same ids, and saving one again changes nothing.

        ``since``: when the worker began the batch that learned them. A version a person activated after
        that is the one the worker's model is now (the activation reached it after the batch), so the
        batch's version is recorded as superseded rather than replacing the person's choice.

        Retention: past the ``keep`` newest versions of a machine and recipe, a version's state is
        dropped (never the one in use). Its record stays, so an old alert still says what was normal
        when it was raised."""
        if not versions:
            return
        now = datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            for v in versions:
                if session.get(ModelVersionRow, v.id) is not None:
                    continue
                recipe = v.recipe or ""
                status = v.status
                mine = (ModelVersionRow.machine == v.machine, ModelVersionRow.recipe == recipe)
                if status == ACTIVE and since is not None and session.scalar(select(func.count()).where(
                        *mine, ModelVersionRow.activated_at >= since)):
                    status = SUPERSEDED  # a person's rollback came after this batch began: theirs stands
                if status == ACTIVE:  # a rejected candidate leaves the version in use alone
                    session.execute(update(ModelVersionRow).where(*mine, ModelVersionRow.status == ACTIVE)
                                    .values(status=SUPERSEDED))
                    session.flush()
                session.add(ModelVersionRow(
                    id=v.id, machine=v.machine, line=v.line, recipe=recipe, version=v.version, kind=v.kind,
                    settings=v.settings, reason=v.reason, made_by=v.made_by, note=v.note, made_at=v.made_at,
                    learned_from=v.learned_from, readings=v.readings, threshold=v.threshold,
                    normal_ranges=v.normal_ranges, calibration=v.calibration, gate=v.gate, state=v.state or None,
                    status=status, recorded_at=now))
                session.flush()
                kept = select(ModelVersionRow.id).where(
                    ModelVersionRow.machine == v.machine, ModelVersionRow.recipe == recipe,
                    ModelVersionRow.state.is_not(None)).order_by(ModelVersionRow.version.desc(),
                                                                 ModelVersionRow.made_at.desc()).offset(keep)
                old = [i for i in session.scalars(kept)]
                if old:
                    session.execute(update(ModelVersionRow).where(ModelVersionRow.id.in_(old),
                                                                  ModelVersionRow.status != ACTIVE).values(state=None))

    def activate_version(self, machine: str, recipe: str | None, version: int, *, by: str, note: str | None,
                         at: datetime, kind: str, sensors: Iterable[str] | None = None) -> ModelVersion:
        """Put an earlier version of a machine's normal back in use (a rollback), and journal it so the
        worker that owns the machine swaps its model. Refused with VersionConflict, changing nothing,
        for a version learned by another kind of model than the plant runs (``kind``), for one whose
        sensors differ from those the machine's profile maps now (``sensors``), and for one whose state
        retention has dropped; AlertNotFound when the machine and recipe have no such version."""
        rkey = recipe or ""
        with Session(self.engine) as session, session.begin():
            rows = list(session.scalars(select(ModelVersionRow).where(
                ModelVersionRow.machine == machine, ModelVersionRow.recipe == rkey,
                ModelVersionRow.version == version).order_by(ModelVersionRow.made_at.desc())))
            if not rows:
                raise AlertNotFound(f"{machine} v{version}")
            row = rows[0]
            what = f"{machine} version {version}" + (f" (recipe {recipe})" if recipe else "")
            _check_fits(what, machine, row.kind, row.normal_ranges, kind, sensors)
            if row.status == REJECTED:
                raise VersionConflict(f"{what} was rejected by the quality gate when it was learned "
                                      f"({_gate_text(row.gate)}) and is kept only as a record.")
            if row.state is None:
                raise VersionConflict(f"{what} is kept only as a record: retention dropped its state "
                                      "(detection.anomaly.keep_versions), so it cannot be put back in use.")
            session.execute(update(ModelVersionRow).where(
                ModelVersionRow.machine == machine, ModelVersionRow.recipe == rkey,
                ModelVersionRow.status == ACTIVE).values(status=SUPERSEDED))
            session.flush()
            row.status, row.activated_at = ACTIVE, at
            try:
                session.flush()
            except IntegrityError:  # a worker recorded a version of the machine at the same moment
                raise VersionConflict(f"{machine}'s versions changed while {what} was being activated; "
                                      "try again") from None
            seq = self._journal(session, ACTIVATE, at, by, note)
            action = session.get(ActionRow, seq)
            assert action is not None
            action.machine, action.line, action.recipe, action.model_version = machine, row.line, rkey, version
            return _to_version(row, True, False)

    def import_version(self, version: ModelVersion, *, by: str, note: str | None, at: datetime, kind: str,
                       sensors: Iterable[str] | None = None) -> ModelVersion:
        """Record ``version`` (from an export file, its ``machine``, ``recipe`` and state already those of
        the machine it is imported to) as that machine's next version and put it in use, journalled as
        an activation so the worker that owns the machine swaps its model. Refused with VersionConflict,
        changing nothing, for another model kind or other sensors than the machine's profile maps now.
        Its ``version`` number is replaced by the machine's next."""
        rkey = version.recipe or ""
        what = f"the imported version for {version.machine}"
        _check_fits(what, version.machine, version.kind, version.normal_ranges, kind, sensors)
        with Session(self.engine) as session, session.begin():
            number = int(session.scalar(select(func.max(ModelVersionRow.version)).where(
                ModelVersionRow.machine == version.machine, ModelVersionRow.recipe == rkey)) or 0) + 1
            session.execute(update(ModelVersionRow).where(
                ModelVersionRow.machine == version.machine, ModelVersionRow.recipe == rkey,
                ModelVersionRow.status == ACTIVE).values(status=SUPERSEDED))
            session.flush()
            vid = version_id(version.machine, version.recipe, number, version.made_at)
            row = ModelVersionRow(
                id=vid, machine=version.machine, line=version.line, recipe=rkey, version=number, kind=version.kind,
                settings=version.settings, reason=version.reason, made_by=by, note=note, made_at=version.made_at,
                learned_from=version.learned_from, readings=version.readings, threshold=version.threshold,
                normal_ranges=version.normal_ranges, calibration=version.calibration, gate=version.gate,
                state=version.state, status=ACTIVE, recorded_at=at, activated_at=at)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise VersionConflict(f"{version.machine}'s versions changed during the import; try again") from None
            seq = self._journal(session, ACTIVATE, at, by, note)
            action = session.get(ActionRow, seq)
            assert action is not None
            action.machine, action.line, action.recipe, action.model_version = version.machine, version.line, rkey, number
            return _to_version(row, True, False)

    def model_versions(self, machine: str, recipe: str | None = None, *, every_recipe: bool = False,
                       with_state: bool = False) -> list[ModelVersion]:
        """A machine's versions, newest first: of one recipe (None: readings naming none), or of all."""
        stmt = select(ModelVersionRow, ModelVersionRow.state.is_not(None)).where(ModelVersionRow.machine == machine)
        if not with_state:  # a listing reads the records, not the models' states
            stmt = stmt.options(defer(ModelVersionRow.state))
        if not every_recipe:
            stmt = stmt.where(ModelVersionRow.recipe == (recipe or ""))
        stmt = stmt.order_by(ModelVersionRow.version.desc(), ModelVersionRow.made_at.desc())
        with Session(self.engine) as session:
            return [_to_version(r, kept, with_state) for r, kept in session.execute(stmt)]

    def model_version(self, machine: str, version: int, recipe: str | None = None,
                      with_state: bool = False) -> ModelVersion | None:
        found = [v for v in self.model_versions(machine, recipe, with_state=with_state) if v.version == version]
        return found[0] if found else None

    def highest_version(self, machine: str, recipe: str | None) -> int:
        """The highest version number the machine and recipe have had (0: none)."""
        stmt = select(func.max(ModelVersionRow.version)).where(ModelVersionRow.machine == machine,
                                                               ModelVersionRow.recipe == (recipe or ""))
        with Session(self.engine) as session:
            return int(session.scalar(stmt) or 0)

    def latest_model_versions(self) -> dict[tuple[str, str | None], int]:
        """The newest version number per (machine, recipe): a model made afresh numbers on from it."""
        stmt = select(ModelVersionRow.machine, ModelVersionRow.recipe, func.max(ModelVersionRow.version)).group_by(
            ModelVersionRow.machine, ModelVersionRow.recipe)
        with Session(self.engine) as session:
            return {(m, r or None): int(n) for m, r, n in session.execute(stmt)}

    def latest_versions(self) -> dict[tuple[str, str | None], Recorded]:
        """The newest version per (machine, recipe), with when and why it was learned."""
        newest = select(ModelVersionRow.machine, ModelVersionRow.recipe,
                        func.max(ModelVersionRow.version).label("version")).group_by(
            ModelVersionRow.machine, ModelVersionRow.recipe).subquery()
        stmt = select(ModelVersionRow.machine, ModelVersionRow.recipe, ModelVersionRow.version,
                      ModelVersionRow.made_at, ModelVersionRow.reason).join(
            newest, (ModelVersionRow.machine == newest.c.machine) & (ModelVersionRow.recipe == newest.c.recipe)
            & (ModelVersionRow.version == newest.c.version)).order_by(ModelVersionRow.made_at)
        with Session(self.engine) as session:
            return {(m, r or None): Recorded(int(n), _utc(at), reason)  # type: ignore[arg-type]
                    for m, r, n, at, reason in session.execute(stmt)}

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


# Every call to the database is bounded: a server that has gone away (or a lock held elsewhere) makes
# a write fail within this long instead of hanging the worker, so the retry loop and a stop request
# stay in charge (docs/operations.md, "How a worker stops").
DB_TIMEOUT_SECONDS = 10


def _bounded_connect_args(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"timeout": DB_TIMEOUT_SECONDS}
    if url.startswith("postgresql"):  # libpq: connect timeout, and TCP keepalives for a silent network
        return {"connect_timeout": DB_TIMEOUT_SECONDS, "keepalives": 1, "keepalives_idle": 5,
                "keepalives_interval": 2, "keepalives_count": 3}
    return {}


def _postgres_timeouts(dbapi_connection: Any, _record: Any) -> None:
    # psycopg starts a transaction on the first statement; commit so the settings stay for the session
    cur = dbapi_connection.cursor()
    cur.execute(f"SET statement_timeout = {DB_TIMEOUT_SECONDS * 3 * 1000}")
    cur.execute(f"SET lock_timeout = {DB_TIMEOUT_SECONDS * 1000}")
    # a worker frozen inside a transaction (SIGSTOP, a VM paused, a stalled disk) would otherwise hold
    # its rows' locks for as long as it is frozen, and the partitions' new owner could save nothing:
    # the server ends such a session, and the frozen worker's write fails and is retried when it wakes
    cur.execute(f"SET idle_in_transaction_session_timeout = {DB_TIMEOUT_SECONDS * 1000}")
    cur.close()
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the HTTP API read while the worker writes; NORMAL sync is durable across process crashes.
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
