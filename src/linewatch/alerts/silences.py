"""Silences: a machine or an alert kind muted for a while, with who and why.

Silenced alerts are still recorded (the history must be complete) but not announced: the terminal
and the webhook skip them, the board shows them muted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.domain import AlertEvent, AlertEventType, Silence


class Silencer:
    """Marks newly fired alerts that an active silence covers; reads silences at most every few seconds."""

    def __init__(self, store: AlertStore, refresh_seconds: float = 5.0):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._cache: list[Silence] = []
        self._loaded = -1e18

    def invalidate(self) -> None:
        self._loaded = -1e18

    def apply(self, events: Sequence[AlertEvent], book: AlertBook) -> None:
        fired = [ev for ev in events if ev.type is AlertEventType.FIRED]
        if not fired:
            return
        now = time.monotonic()
        if now - self._loaded > self.refresh_seconds:
            self._cache = self.store.silences(active_at=datetime.now(timezone.utc))
            self._loaded = now
        if not self._cache:
            return
        wall = datetime.now(timezone.utc)
        for ev in fired:
            silence = next((s for s in self._cache if s.matches(ev.alert, wall)), None)
            if silence is None:
                continue
            ev.alert.silence_id = silence.id
            found = book.find(ev.alert.id)
            if found:
                found[1].silence_id = silence.id
