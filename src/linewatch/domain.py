"""The canonical model: what every stage after normalisation sees.

Plain dataclasses with slots: they are created once per reading on the hot path, so they stay
small, and they carry the plant's words (machine, line, reading) rather than Kafka's.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)  # readings are kept to the millisecond


@dataclass(slots=True)  # not frozen: one is made per message, and frozen dataclasses construct slowly
class Source:
    """Where a message came from, so any decision can be traced back to the original bytes."""

    manufacturer: str
    topic: str
    partition: int = -1
    offset: int = -1


@dataclass(slots=True)
class Reading:
    """One sample of a machine's sensors, in canonical names and units."""

    machine: str
    line: str
    ts: datetime  # UTC, millisecond precision
    values: dict[str, float]
    source: Source
    unit_id: str | None = None
    batch_id: str | None = None
    recipe: str | None = None  # product/recipe being made: each gets its own anomaly model


@dataclass(slots=True)
class ReadingBlock:
    """A run of one machine's readings as columns: what ``linewatch.normalize.block`` makes of a run
    of messages from one topic and key, so later stages work on arrays instead of one dict each.

    Row ``i`` is the reading ``reading(i)`` returns, the one normalising message ``i`` alone gives.
    """

    machine: str
    line: str
    manufacturer: str
    topic: str
    partition: int
    offsets: list[int]
    ts_ms: np.ndarray  # int64 milliseconds since the epoch (UTC)
    sensors: tuple[str, ...]  # column names, in the order the profile reads them
    values: np.ndarray  # float64, one row per reading, canonical units
    recipe: str | None = None  # the run's one recipe
    unit_ids: list[str | None] | None = None  # per reading, when any has one
    batch_ids: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def ts(self, i: int) -> datetime:
        return EPOCH + timedelta(milliseconds=int(self.ts_ms[i]))

    def reading(self, i: int) -> Reading:
        return Reading(machine=self.machine, line=self.line, ts=self.ts(i),
                       values=dict(zip(self.sensors, self.values[i].tolist())),
                       source=Source(self.manufacturer, self.topic, self.partition, self.offsets[i]),
                       unit_id=None if self.unit_ids is None else self.unit_ids[i],
                       batch_id=None if self.batch_ids is None else self.batch_ids[i], recipe=self.recipe)

    def readings(self) -> list[Reading]:
        return [self.reading(i) for i in range(len(self))]


@dataclass(slots=True)
class QcResult:
    """One pass/fail verdict on a unit (part, bag) or batch."""

    ts: datetime
    line: str
    passed: bool
    test: str
    source: Source
    machine: str | None = None
    unit_id: str | None = None
    batch_id: str | None = None
    defect: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not be normalised: a reason code for counting and a sentence for people."""

    reason: str
    detail: str
    source: Source
    raw: bytes
    key: bytes | None = None
    machine: str | None = None  # when the message got far enough to say which machine sent it


class AlertKind(str, enum.Enum):
    ANOMALY = "anomaly"
    FAILURE_RATE = "failure_rate"
    DATA_QUALITY = "data_quality"
    STALE_STREAM = "stale_stream"
    MODEL = "model"  # about a machine's model itself: a relearned normal the quality gate kept out of use


class Severity(str, enum.Enum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertStatus(str, enum.Enum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertVerdict(str, enum.Enum):
    """What a person on the line judged an alert to be: the measure of each detector's live precision."""

    TRUE_ALARM = "true_alarm"  # something was wrong with the machine or the product
    FALSE_ALARM = "false_alarm"  # nothing was wrong: the detector should not have raised it
    NEW_NORMAL = "new_normal"  # the machine changed on purpose (material, recipe, sensor swapped)
    UNCLEAR = "unclear"  # nobody can tell (yet): counted as judged, in neither share


@dataclass(slots=True)
class Alert:
    """An episode of abnormal behaviour, one open per (kind, machine[, sensor])."""

    id: str
    kind: AlertKind
    severity: Severity
    line: str
    machine: str | None
    sensor: str | None
    status: AlertStatus
    started_at: datetime
    last_seen_at: datetime
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    ack_note: str | None = None
    resolved_by: str | None = None  # a person, when resolved by hand; None when the condition cleared
    silence_id: str | None = None  # fired while a silence was active: recorded, not announced
    verdict: AlertVerdict | None = None  # a person's judgement, given when resolving or afterwards
    verdict_by: str | None = None
    verdict_at: datetime | None = None
    verdict_note: str | None = None

    def __setstate__(self, state: Any) -> None:
        """Unpickle (checkpoints hold open alerts): fields added since the checkpoint was written take
        their defaults instead of being left unset."""
        slots = (state[1] if isinstance(state, tuple) else state) or {}
        for name, value in slots.items():
            setattr(self, name, value)
        if len(slots) < len(_ALERT_FIELDS):  # written before some fields existed
            for f in _ALERT_FIELDS:
                if f.name in slots:
                    continue
                if f.default is not MISSING:
                    setattr(self, f.name, f.default)
                elif f.default_factory is not MISSING:
                    setattr(self, f.name, f.default_factory())

    @property
    def duration_seconds(self) -> float:
        end = self.ended_at or self.last_seen_at
        return max(0.0, (end - self.started_at).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by the API, the alerts topic and the terminal."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "status": self.status.value,
            "line": self.line,
            "machine": self.machine,
            "sensor": self.sensor,
            "started_at": _iso(self.started_at),
            "last_seen_at": _iso(self.last_seen_at),
            "ended_at": _iso(self.ended_at),
            "summary": self.summary,
            "details": self.details,
            "acked_by": self.acked_by,
            "acked_at": _iso(self.acked_at),
            "ack_note": self.ack_note,
            "resolved_by": self.resolved_by,
            "silence_id": self.silence_id,
            "verdict": None if self.verdict is None else self.verdict.value,
            "verdict_by": self.verdict_by,
            "verdict_at": _iso(self.verdict_at),
            "verdict_note": self.verdict_note,
            "duration_seconds": round(self.duration_seconds, 3),
        }


_ALERT_FIELDS = fields(Alert)


class AlertEventType(str, enum.Enum):
    FIRED = "fired"
    UPDATED = "updated"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(slots=True)
class Silence:
    """Alerts matching (line, machine, kind; None matches any) between starts_at and ends_at are
    recorded but not announced: maintenance on a machine should not page anyone."""

    id: str
    starts_at: datetime
    ends_at: datetime
    created_by: str
    reason: str
    created_at: datetime
    line: str | None = None
    machine: str | None = None
    kind: AlertKind | None = None

    def matches(self, alert: "Alert", at: datetime) -> bool:
        return (self.starts_at <= at < self.ends_at and (self.line is None or self.line == alert.line)
                and (self.machine is None or self.machine == alert.machine)
                and (self.kind is None or self.kind == alert.kind))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "line": self.line, "machine": self.machine,
                "kind": None if self.kind is None else self.kind.value, "starts_at": _iso(self.starts_at),
                "ends_at": _iso(self.ends_at), "created_by": self.created_by, "reason": self.reason,
                "created_at": _iso(self.created_at)}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change to an alert; what the store persists and what publishers announce."""

    type: AlertEventType
    alert: Alert


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)  # not frozen: one is made per message consumed, and frozen dataclasses construct slowly
class RawMessage:
    """A message as it arrived, before anything was understood of it."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = None  # when it entered the pipeline's source (Kafka record time)
