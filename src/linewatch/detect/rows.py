"""From readings to a model's rows: its fixed, sorted set of sensors, in a numpy array.

Readings come as dicts (one per reading, message by message) or as blocks of columns (a run of
one machine's readings, ``linewatch.domain.ReadingBlock``); both models take either, in order. A
sensor missing from a reading keeps its last value, so a gap in one sensor does not look like a
jump to zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# readings as dicts, or a block: (its column names, its values with one row per reading)
Part = Sequence[Mapping[str, float]] | tuple[tuple[str, ...], np.ndarray]


def first_sensors(part: Part) -> tuple[str, ...]:
    """The sensors of a part's first reading (what a model starts with)."""
    if isinstance(part, tuple):
        return part[0]
    return tuple(part[0])


def model_rows(sensors: tuple[str, ...], last: dict[str, float], parts: Sequence[Part]) -> tuple[np.ndarray, dict[str, float]]:
    """The parts' readings as rows of ``sensors``, and each sensor's last value after them."""
    arrays = []
    previous: list[Any] = [last.get(s, 0.0) for s in sensors]  # floats: a None is replaced as it comes
    for part in parts:
        if isinstance(part, tuple):
            names, values = part
            column = {s: j for j, s in enumerate(names)}
            x = np.empty((len(values), len(sensors)))
            for k, s in enumerate(sensors):
                x[:, k] = values[:, column[s]] if s in column else previous[k]
        else:
            x = np.empty((len(part), len(sensors)))
            for i, reading in enumerate(part):
                row = [reading.get(s) for s in sensors]
                if None in row:
                    row = [p if v is None else v for v, p in zip(row, previous)]
                x[i] = previous = row
        if len(x):
            previous = x[-1].tolist()
        arrays.append(x)
    x = np.concatenate(arrays) if len(arrays) != 1 else arrays[0]
    return x, (dict(zip(sensors, previous)) if len(x) else last)
