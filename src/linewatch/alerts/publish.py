"""Where alert events and rejections go besides the store: the terminal and a local DLQ file."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from linewatch.domain import AlertEvent, AlertEventType, Rejection

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
