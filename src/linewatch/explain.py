"""Sentences a person can read from a distance: what an alert is about, in the plant's words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from linewatch.config import SensorSpec
from linewatch.detect.anomaly import Contribution

UNIT_SYMBOLS = {"degC": "°C", "percent": "%", "g0": "g", "dimensionless": ""}
OUT_Z = 3.0  # a sensor further than this from its mean (in standard deviations) is "out of normal"


def sensor_label(name: str) -> str:
    return name.replace("_", " ")


def unit_symbol(unit: str) -> str:
    return UNIT_SYMBOLS.get(unit, unit)


def _fmt(value: float) -> str:
    mag = abs(value)
    return f"{value:.0f}" if mag >= 100 else f"{value:.1f}" if mag >= 10 else f"{value:.2f}"


def anomaly_summary(machine: str, contributions: Sequence[Contribution], catalogue: Mapping[str, SensorSpec]) -> str:
    """The sentence of an open anomaly alert: the values now, beside their normal range. E.g.
    "extruder-1: die pressure now 215 bar, normal 181–189; melt temperature normal".

    >>> from linewatch.config import SensorSpec
    >>> cat = {"die_pressure": SensorSpec(unit="bar", range=(0, 400)), "screw_speed": SensorSpec(unit="rpm", range=(0, 300))}
    >>> c = [Contribution("die_pressure", 215.2, 20.0, 180.6, 189.4), Contribution("screw_speed", 90.1, 0.2, 87.0, 93.0)]
    >>> anomaly_summary("extruder-1", c, cat)
    'extruder-1: die pressure now 215 bar, normal 181–189; screw speed normal'
    """
    out = _out_of_normal(contributions)
    parts = [f"{sensor_label(c.sensor)} now {_value(c, catalogue)}, normal {_fmt(c.normal_low)}–{_fmt(c.normal_high)}"
             for c in out]
    normal = [c for c in contributions if c not in out][:2]
    if normal:
        parts.append(" and ".join(sensor_label(c.sensor) for c in normal) + " normal")
    return f"{machine}: " + "; ".join(parts)


def resolved_anomaly_summary(machine: str, peak: Sequence[Mapping[str, Any]], catalogue: Mapping[str, SensorSpec]) -> str:
    """The sentence of a resolved anomaly alert: over, with the episode's worst reading called its peak,
    so it does not read as if the machine were still out of range. ``peak``: that reading's sensors as
    the alert's details give them (sensor, value, normal_low, normal_high, z).

    >>> from linewatch.config import SensorSpec
    >>> cat = {"dryer_air_temperature": SensorSpec(unit="degC", range=(0, 200))}
    >>> resolved_anomaly_summary("dryer-1", [{"sensor": "dryer_air_temperature", "value": 93.31, "normal_low": 83.7,
    ...                                       "normal_high": 86.3, "z": 9.1}], cat)
    'dryer-1: back to normal; peak dryer air temperature 93.3 °C (normal 83.7–86.3)'
    """
    out = _out_of_normal([Contribution(c["sensor"], c["value"], c["z"], c["normal_low"], c["normal_high"])
                          for c in peak])
    if not out:
        return f"{machine}: back to normal"
    return f"{machine}: back to normal; peak " + "; ".join(
        f"{sensor_label(c.sensor)} {_value(c, catalogue)} (normal {_fmt(c.normal_low)}–{_fmt(c.normal_high)})"
        for c in out)


def _out_of_normal(contributions: Sequence[Contribution]) -> list[Contribution]:
    """The sensors a sentence names: up to three out of normal, else the one that drove the score."""
    return [c for c in contributions if abs(c.z) >= OUT_Z][:3] or list(contributions[:1])


def _value(c: Contribution, catalogue: Mapping[str, SensorSpec]) -> str:
    unit = unit_symbol(catalogue[c.sensor].unit) if c.sensor in catalogue else ""
    return f"{_fmt(c.value)} {unit}".rstrip()


def failure_rate_summary(line: str, rate: float, baseline: float, since: datetime | None, first_unit: str | None,
                         units: int | None = None) -> str:
    """One sentence that says what the rate was measured over: the units since the change when the
    monitor knows when it changed, else the recent window (``units`` either way).

    >>> from datetime import datetime, timezone
    >>> failure_rate_summary("line-1", 0.198, 0.051, datetime(2026, 1, 5, 10, 42, tzinfo=timezone.utc), "U-1234", 412)
    'Failure rate 19.8% over the 412 units since 10:42 UTC (baseline 5.1%) on line-1, first flagged unit U-1234'
    >>> failure_rate_summary("line-1", 0.198, 0.051, None, None, 300)
    'Failure rate 19.8% over the last 300 units (baseline 5.1%) on line-1'
    """
    text = f"Failure rate {rate:.1%}"
    if since is not None:
        text += f" over the {units:,} units since {since:%H:%M} UTC" if units else f" since {since:%H:%M} UTC"
    elif units:
        text += f" over the last {units:,} units"
    text += f" (baseline {baseline:.1%}) on {line}"
    if first_unit:
        text += f", first flagged unit {first_unit}"
    return text
