"""Where alert events and rejections go besides the store: the terminal, a local DLQ file, and the
alerts topic for what people do through the API.

The worker's own alert events reach ``linewatch.alerts`` through the runner's Kafka sink as
``{"event": <type>, "alert": {...}}`` keyed by the alert id. People's actions use the same envelope
with an ``action`` object saying what was done, by whom, why and when:

- acknowledge: ``{"event": "acknowledged", "alert": {...}, "action": {"type": "acknowledge", "by", "note", "at"}}``
- resolve: ``{"event": "resolved", "alert": {...}, "action": {"type": "resolve", ...}}``
- new normal: ``{"event": "resolved", "alert": {...}, "action": {"type": "new_normal", ...}}``
- silence: ``{"event": "silenced", "silence": {...}, "action": {"type": "silence", ...}}`` keyed by the silence id,
  and ``{"event": "unsilenced", ...}`` with ``"type": "end_silence"`` when it is ended early.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from linewatch.domain import Alert, AlertEvent, AlertEventType, AlertVerdict, Rejection, Silence

log = logging.getLogger(__name__)

_COLOURS = {"critical": "\033[1;31m", "warning": "\033[33m", "resolved": "\033[32m"}


def alert_line(ev: AlertEvent) -> str:
    """One readable line per alert event, e.g. ``06:15:02 FIRED    critical anomaly  extruder-1: ...``."""
    a = ev.alert
    ts = a.ended_at if ev.type is AlertEventType.RESOLVED and a.ended_at else a.last_seen_at
    text = f"{ts:%Y-%m-%d %H:%M:%S}Z {ev.type.value.upper():<9} {a.severity.value:<8} {a.kind.value:<12} {a.summary}"
    if ev.type is AlertEventType.RESOLVED and a.ended_at:
        text += f" (lasted {_duration((a.ended_at - a.started_at).total_seconds())})"
    return text


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


class TerminalPrinter:
    """Prints fired, escalated and resolved alerts as they happen (updates would flood a terminal)."""

    def __init__(self, stream: TextIO | None = None, colour: bool | None = None):
        self.stream = stream or sys.stdout
        self.colour = self.stream.isatty() if colour is None else colour

    def __call__(self, events: Sequence[AlertEvent]) -> None:
        for ev in events:
            if ev.type is AlertEventType.UPDATED or ev.alert.silence_id:
                continue
            text = alert_line(ev)
            if self.colour:
                key = "resolved" if ev.type is AlertEventType.RESOLVED else ev.alert.severity.value
                text = f"{_COLOURS[key]}{text}\033[0m"
            print(text, file=self.stream, flush=True)


class FileDeadLetters:
    """The in-process demo's dead-letter queue: JSON lines with the original bytes (base64) and the reason."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, rejections: Sequence[Rejection], events: Sequence[AlertEvent]) -> None:
        if not rejections:
            return
        with self.path.open("a", encoding="utf-8") as f:
            for r in rejections:
                f.write(json.dumps({"reason": r.reason, "detail": r.detail, "topic": r.source.topic,
                                    "partition": r.source.partition, "offset": r.source.offset,
                                    "key": r.key.decode("utf-8", "replace") if r.key else None,
                                    "value_base64": base64.b64encode(r.raw).decode()}) + "\n")
            f.flush()

    def close(self) -> None:
        pass


# ------------------------------------------------------------ people's actions on the alerts topic

Record = tuple[str, dict[str, Any]]  # (key, body)


def _action(kind: str, by: str | None, note: str | None, at: datetime) -> dict[str, Any]:
    return {"type": kind, "by": by, "note": note,
            "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


def alert_action_record(event: AlertEventType, alert: Alert, action: str, by: str | None, note: str | None,
                        at: datetime, verdict: AlertVerdict | None = None) -> Record:
    """The alerts-topic record of a person's action on an alert (same key and envelope as the worker's)."""
    return alert.id, {"event": event.value, "alert": alert.to_dict(),
                      "action": {**_action(action, by, note, at),
                                 "verdict": None if verdict is None else verdict.value}}


def silence_action_record(event: str, silence: Silence, action: str, by: str | None, note: str | None,
                          at: datetime) -> Record:
    """The alerts-topic record of a silence being set (``silenced``) or ended early (``unsilenced``)."""
    return silence.id, {"event": event, "silence": silence.to_dict(), "action": _action(action, by, note, at)}


class KafkaActionPublisher:
    """Sends people's actions to the alerts topic and waits for the broker's acknowledgement.

    A producer of its own (idempotent, acks=all, kafka-python's defaults), used from the API's
    threads; kafka-python's producer is thread-safe."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0, client_id: str = "linewatch-api"):
        from kafka import KafkaProducer

        self.topic, self.timeout = topic, timeout
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, linger_ms=0,
                                      max_block_ms=int(timeout * 1000))

    def __call__(self, records: Sequence[Record]) -> None:
        """Raises if the broker did not acknowledge every record within the timeout."""
        futures = [self.producer.send(self.topic, key=key.encode(), value=json.dumps(body).encode())
                   for key, body in records]
        self.producer.flush(timeout=self.timeout)
        for f in futures:
            f.get(timeout=self.timeout)

    def close(self) -> None:
        self.producer.close(timeout=self.timeout)
