"""Alert episodes: what the operator would have seen, scored against labelled anomaly windows.

A per-row score swept over every threshold (NAB's protocol) says how well a detector ranks rows; a
plant sees something else: alerts, one per episode, raised and cleared by the production rules. This
module replays a model's verdicts through those rules (``Verdicts.alerting`` and the worker's own
``AlertBook`` with ``clear_after_seconds`` and ``clear_after_readings``), so a level shift that keeps the alarm on is one alert,
and counts per labelled window whether an alert was raised inside it, and how many alerts were
raised outside every window (false alerts). The fired rows are also scored by NAB as a binary
detector at a fixed threshold, so the figure sits beside the per-row score on the same scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from linewatch.alerts.lifecycle import AlertBook
from linewatch.detect.verdict import Verdicts
from linewatch.domain import AlertEventType, AlertKind, Severity
from linewatch.evaluate import nab

__all__ = ["Episodes", "episodes", "fired_rows", "score_alerts"]


@dataclass(frozen=True)
class Episodes:
    """Alert episodes of one series: the row each was raised at and the row it cleared at (None: still open)."""

    started: tuple[int, ...]
    ended: tuple[int | None, ...]

    def __len__(self) -> int:
        return len(self.started)


def episodes(verdicts: Verdicts, timestamps: Sequence[datetime] | pd.Series,
             clear_after: timedelta = timedelta(seconds=120), clear_readings: int = 1) -> Episodes:
    """Replay ``verdicts`` through the worker's anomaly-alert rule (``clear_after_seconds`` and
    ``clear_after_readings``) and return its episodes."""
    times = pd.DatetimeIndex(pd.to_datetime(list(timestamps))).to_pydatetime()
    raise_, quiet, disturbed = verdicts.alerting()
    book = AlertBook()
    key = (AlertKind.ANOMALY, "line", "machine", None)
    started: list[int] = []
    ended: list[int | None] = []
    for i in np.flatnonzero(raise_ | quiet | disturbed).tolist():
        ts = times[i]
        if raise_[i]:
            event = book.raise_(*key, ts, Severity.WARNING, "", {})
            if event.type is AlertEventType.FIRED:
                started.append(i)
                ended.append(None)
        elif disturbed[i]:
            book.disturbed(key)
        elif book.open and book.clear(AlertKind.ANOMALY, "line", "machine", None, ts, clear_after, clear_readings):
            ended[-1] = i
    return Episodes(tuple(started), tuple(ended))


def fired_rows(found: Episodes, n: int) -> np.ndarray:
    """1.0 on each row an alert was raised, else 0.0: the alerts as a NAB detector's scores."""
    out = np.zeros(n)
    out[list(found.started)] = 1.0
    return out


def score_alerts(frames: Mapping[str, pd.DataFrame], windows: Mapping[str, Sequence[tuple[Any, Any]]]) -> dict[str, Any]:
    """Over a corpus of frames with an ``alert`` column (1 where an alert was raised): alerts raised,
    windows with an alert raised inside them, alerts outside every window, and NAB's score with each
    alert as one detection (threshold fixed at 0.5, nothing swept)."""
    total = inside = found_windows = n_windows = rows = 0
    for rel, frame in frames.items():
        rows += len(frame)
        at = pd.to_datetime(frame["timestamp"]).to_numpy()[frame["alert"].to_numpy() > 0.5]
        hit = [(at >= np.datetime64(pd.Timestamp(a))) & (at <= np.datetime64(pd.Timestamp(b)))
               for a, b in windows.get(rel, ())]
        n_windows += len(hit)
        total += len(at)
        inside += int(np.any(hit, axis=0).sum()) if hit else 0
        found_windows += sum(bool(h.any()) for h in hit)
    binary = {rel: (frame["timestamp"], frame["alert"].to_numpy(dtype=float)) for rel, frame in frames.items()}
    scores = nab.score_corpus(binary, {rel: list(windows[rel]) for rel in frames},
                              thresholds={name: 0.5 for name in nab.PROFILES})
    return {"alerts": total, "alerts_in_windows": inside, "false_alerts": total - inside,
            "windows": n_windows, "windows_with_alert": found_windows,
            "false_alerts_per_10k_rows": round(1e4 * (total - inside) / rows, 2) if rows else None,
            "nab": {name: r.score for name, r in scores.items()}}
