"""Alert lifecycle and deduplication.

One open alert per (kind, machine, sensor): repeats of a condition update it, a worsening condition
escalates it, and a condition that has been clear long enough resolves it. A new episode after
resolution is a new alert. Alert ids are derived from the episode (kind, line, machine, sensor, start
time), so a batch replayed after a crash updates the same alert instead of creating a duplicate.

People act on alerts through the API of any worker; the book learns of it by applying the store's
journal of people's actions (``apply``, driven by ``linewatch.alerts.sync``): an acknowledgement is
kept on later updates, a resolution by hand ends the episode here too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from copy import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from linewatch.domain import Alert, AlertEvent, AlertEventType, AlertKind, AlertStatus, AlertVerdict, Severity

_NAMESPACE = uuid.UUID("5b0c1f0e-8f53-4c55-a7d4-4c1a1b6e2f10")
_RANK = {Severity.WARNING: 0, Severity.CRITICAL: 1}
if TYPE_CHECKING:
    from linewatch.alerts.store import Action

AlertKey = tuple[AlertKind, str, str | None, str | None]  # kind, line, machine, sensor


def alert_id(kind: AlertKind, line: str, machine: str | None, sensor: str | None, started_at: datetime) -> str:
    """Deterministic id of one alert episode."""
    name = f"{kind.value}|{line}|{machine or ''}|{sensor or ''}|{started_at.isoformat()}"
    return str(uuid.uuid5(_NAMESPACE, name))


class AlertBook:
    """The open alerts, and the rules that turn conditions into alert events."""

    def __init__(self, open_alerts: Iterable[Alert] = (), escalate_after: timedelta | None = None):
        self.escalate_after = escalate_after  # a warning that persists this long becomes critical
        self.open: dict[AlertKey, Alert] = {}
        # how far the store's journal of people's actions has been applied (None: not yet read; the
        # first sync starts where the journal stood when the store opened)
        self.actions_seen: int | None = None
        # per open alert id: readings in a row that looked normal since it was last raised (counted only
        # where clearing asks for more than one, see ``clear``)
        self.quiet: dict[str, int] = {}
        for a in open_alerts:
            self.open[(a.kind, a.line, a.machine, a.sensor)] = a

    def raise_(self, kind: AlertKind, line: str, machine: str | None, sensor: str | None, ts: datetime,
               severity: Severity, summary: str, details: dict[str, Any]) -> AlertEvent:
        """The condition holds at ``ts``: fire a new alert or update the open one."""
        key = (kind, line, machine, sensor)
        alert = self.open.get(key)
        if alert is not None:
            self.quiet.pop(alert.id, None)
        if alert is None:
            alert = Alert(id=alert_id(kind, line, machine, sensor, ts), kind=kind, severity=severity, line=line,
                          machine=machine, sensor=sensor, status=AlertStatus.FIRING, started_at=ts,
                          last_seen_at=ts, summary=summary, details=details)
            self.open[key] = alert
            return AlertEvent(AlertEventType.FIRED, copy(alert))
        if self.escalate_after is not None and ts - alert.started_at >= self.escalate_after:
            severity = Severity.CRITICAL
        escalated = _RANK[severity] > _RANK[alert.severity]
        if escalated:
            alert.severity = severity
        alert.last_seen_at = max(alert.last_seen_at, ts)
        alert.summary = summary
        alert.details = details
        return AlertEvent(AlertEventType.ESCALATED if escalated else AlertEventType.UPDATED, copy(alert))

    def clear(self, kind: AlertKind, line: str, machine: str | None, sensor: str | None, ts: datetime,
              clear_after: timedelta, readings: int = 1) -> AlertEvent | None:
        """The condition does not hold at ``ts``: resolve the open alert once it has been clear long enough,
        ``clear_after`` since it was last raised and, when ``readings`` > 1, that many readings in a row."""
        key = (kind, line, machine, sensor)
        alert = self.open.get(key)
        if alert is None:
            return None
        if readings > 1:
            quiet = self.quiet[alert.id] = self.quiet.get(alert.id, 0) + 1
            if quiet < readings:
                return None
        if ts - alert.last_seen_at < clear_after:
            return None
        return self.resolve(key, ts)

    def disturbed(self, key: AlertKey) -> None:
        """A reading over the threshold that did not raise the alert (its alarm waits for the debounce):
        the fault still shows, so the quiet readings counted towards clearing start again."""
        alert = self.open.get(key)
        if alert is not None:
            self.quiet.pop(alert.id, None)

    def drop(self, key: AlertKey) -> None:
        """Close the open alert here without an event (the caller announces what happened)."""
        alert = self.open.pop(key, None)
        if alert is not None:
            self.quiet.pop(alert.id, None)

    def is_open(self, kind: AlertKind, line: str, machine: str | None = None, sensor: str | None = None) -> bool:
        """Whether an alert of this kind is open for this line, machine and sensor."""
        return (kind, line, machine, sensor) in self.open

    def open_for(self, kind: AlertKind, line: str, machine: str | None = None,
                 sensor: str | None = None) -> Alert | None:
        """The open alert of this kind for this line, machine and sensor, if any."""
        return self.open.get((kind, line, machine, sensor))

    def end(self, kind: AlertKind, line: str, machine: str | None, sensor: str | None,
            ts: datetime) -> list[AlertEvent]:
        """The condition is over at ``ts``: the open alert's resolution, or nothing if none is open.
        Asked once per reading (a stale stream ends with any reading), so nothing open costs one look-up."""
        key = (kind, line, machine, sensor)
        if key not in self.open:
            return []
        ev = self.resolve(key, ts)
        return [] if ev is None else [ev]

    def clear_each(self, kind: AlertKind, line: str, machine: str | None, sensors: Iterable[str | None],
                   ts: datetime, clear_after: timedelta) -> list[AlertEvent]:
        """``clear`` for each of these sensors' open alerts; asked once per reading, so a sensor with
        nothing open costs one look-up."""
        open_ = self.open
        out = []
        for sensor in sensors:
            if (kind, line, machine, sensor) in open_:
                ev = self.clear(kind, line, machine, sensor, ts, clear_after)
                if ev:
                    out.append(ev)
        return out

    def resolve(self, key: AlertKey, ts: datetime) -> AlertEvent | None:
        alert = self.open.pop(key, None)
        if alert is None:
            return None
        self.quiet.pop(alert.id, None)
        alert.status = AlertStatus.RESOLVED
        alert.ended_at = ts
        return AlertEvent(AlertEventType.RESOLVED, copy(alert))

    # ------------------------------------------------------------ checkpoints

    @staticmethod
    def owner(alert: Alert) -> str:
        """Whose checkpoint an open alert travels in: the line's for failure rates (its QC partition
        decides them), the machine's for everything else (its raw partition decides them)."""
        return f"line:{alert.line}" if alert.kind is AlertKind.FAILURE_RATE else f"machine:{alert.machine}"

    def owned_by(self, owner: str) -> list[Alert]:
        """The open alerts to checkpoint with ``owner``'s detector state (copies)."""
        return [copy(a) for a in self.open.values() if self.owner(a) == owner]

    def quiet_of(self, alerts: Iterable[Alert]) -> dict[str, int]:
        """The quiet readings counted towards clearing these alerts, to checkpoint with them."""
        return {a.id: self.quiet[a.id] for a in alerts if a.id in self.quiet}

    def restore(self, owner: str, alerts: Iterable[Alert], stored: dict[str, Alert],
                quiet: dict[str, int] | None = None) -> None:
        """Put back ``owner``'s open alerts as they stood at its checkpoint, so a replay of what came after
        makes the same decisions (and the same alert ids) as the first time, whatever the store saw since.

        ``stored`` is the store's latest word on those alerts: an acknowledgement made since is kept, and
        an alert a person resolved since stays resolved. One the condition resolved since stays open: the
        replay resolves it again, at the same reading.
        """
        self.forget({owner})
        for a in alerts:
            known = stored.get(a.id)
            if known is not None and known.resolved_by is not None:
                continue
            if known is not None and known.acked_by is not None:
                a.status, a.acked_by, a.acked_at, a.ack_note = (AlertStatus.ACKNOWLEDGED, known.acked_by,
                                                                known.acked_at, known.ack_note)
            if known is not None and known.verdict is not None:
                a.verdict, a.verdict_by, a.verdict_at, a.verdict_note = (known.verdict, known.verdict_by,
                                                                         known.verdict_at, known.verdict_note)
            self.open[(a.kind, a.line, a.machine, a.sensor)] = a
            if quiet and a.id in quiet:
                self.quiet[a.id] = quiet[a.id]

    def forget(self, owners: set[str]) -> None:
        """Forget the open alerts of ``owners`` (their detectors moved to another worker)."""
        for key in [k for k, a in self.open.items() if self.owner(a) in owners]:
            self.drop(key)

    def find(self, alert_id_: str) -> tuple[AlertKey, Alert] | None:
        for key, a in self.open.items():
            if a.id == alert_id_:
                return key, a
        return None

    def acknowledged(self, alert_id_: str, by: str, at: datetime, note: str | None) -> None:
        """Mirror an acknowledgement made through the API, so later updates keep it."""
        found = self.find(alert_id_)
        if found:
            a = found[1]
            a.status, a.acked_by, a.acked_at, a.ack_note = AlertStatus.ACKNOWLEDGED, by, at, note

    def judged(self, alert_id_: str, verdict: AlertVerdict, by: str | None, at: datetime, note: str | None) -> None:
        """Mirror a verdict given on an open alert, so its later updates carry it."""
        found = self.find(alert_id_)
        if found:
            a = found[1]
            a.verdict, a.verdict_by, a.verdict_at, a.verdict_note = verdict, by, at, note

    def resolved_by_person(self, alert_id_: str) -> None:
        """A person closed the episode (or the store holds it as over): if the condition is still
        there, the next one is a new alert."""
        found = self.find(alert_id_)
        if found:
            self.drop(found[0])

    def apply(self, action: "Action") -> str | None:
        """Mirror a person's action (from the store's journal, made through any worker's API) and
        advance ``actions_seen``. Returns the machine whose model must relearn for a "new normal"."""
        from linewatch.alerts.store import ACKNOWLEDGE, NEW_NORMAL, RESOLVE, VERDICT

        self.actions_seen = max(self.actions_seen or 0, action.seq)
        if action.alert_id is None:
            return None
        if action.action == ACKNOWLEDGE:
            self.acknowledged(action.alert_id, action.by or "", action.at, action.note)
        elif action.action in (RESOLVE, NEW_NORMAL):
            self.resolved_by_person(action.alert_id)
        elif action.action == VERDICT and action.verdict is not None:
            self.judged(action.alert_id, action.verdict, action.by, action.at, action.note)
        return action.machine if action.action == NEW_NORMAL else None
