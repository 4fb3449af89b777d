"""A manufacturer profile compiled for the hot path.

The YAML profile says where each value is and in which unit; compiling turns paths into key tuples
and units into (scale, offset) pairs once, so normalising a reading does no parsing of the profile.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from linewatch.config import Catalogue, ProfileSpec, QcSpec
from linewatch.normalize.units import Conversion, conversion

UTC = timezone.utc


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlist, _BRIEF.maxdict = 3, 80, 80, 6, 6


def brief(value: Any) -> str:
    """A payload value as a rejection's detail quotes it: cut to a few dozen characters and three
    levels, at a cost that does not grow with the value (a 2 MB string, a 1,000-deep list)."""
    return _BRIEF.repr(value)


class PayloadError(ValueError):
    """A payload that does not fit its profile; ``reason`` is the code counted in metrics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FieldMapping:
    sensor: str
    keys: tuple[str, ...]  # path into the payload (flat: one key)
    tag: str | None
    unit: str | None
    conv: Conversion  # vendor unit -> canonical unit, then calibration
    cal: Conversion  # calibration alone
    # the units a tag may name, each with its conversion to canonical units and calibration: the
    # mapping's unit, the catalogue's and the mapping's ``units``. Nothing else is parsed, ever.
    allowed: dict[str, Conversion]


def _keys(path: str | None) -> tuple[str, ...]:
    return tuple(path.split(".")) if path else ()


def dig(payload: Any, keys: tuple[str, ...]) -> Any:
    """Follow ``keys`` into nested dicts; None when any step is missing."""
    for k in keys:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(k)
        if payload is None:
            return None
    return payload


class CompiledProfile:
    """One manufacturer's payload layout, ready to read payloads."""

    def __init__(self, spec: ProfileSpec, catalogue: Catalogue):
        self.spec = spec
        self.manufacturer = spec.manufacturer
        self.payload = spec.payload
        self.machine_from = spec.machine_id.from_
        self.machine_keys = _keys(spec.machine_id.path)
        self.ts_keys = _keys(spec.timestamp.path)
        self.ts_format = spec.timestamp.format
        self.tz = ZoneInfo(spec.timestamp.timezone) if spec.timestamp.timezone else None
        self.tags_keys = _keys(spec.tags_path)
        self.unit_id_keys = _keys(spec.unit_id_path)
        self.batch_id_keys = _keys(spec.batch_id_path)
        self.recipe_keys = _keys(spec.recipe_path)
        self.canonical_units = {name: s.unit for name, s in catalogue.sensors.items()}
        self.fields: list[FieldMapping] = []
        # hot path for flat payloads: (key, sensor, scale, offset) with no path walking
        self.flat_fields: list[tuple[str, str, float, float]] = []
        self.by_tag: dict[str, FieldMapping] = {}
        for m in spec.sensors:
            target = self.canonical_units[m.sensor]
            base = conversion(m.unit, target) if m.unit else Conversion(1.0, 0.0)
            conv = Conversion(base.scale * m.scale, base.offset * m.scale + m.offset)
            allowed = {}
            for unit in dict.fromkeys([u for u in (m.unit, target, *m.units) if u]):
                c = conversion(unit, target)
                allowed[unit] = Conversion(c.scale * m.scale, c.offset * m.scale + m.offset)
            fm = FieldMapping(sensor=m.sensor, keys=_keys(m.path), tag=m.tag, unit=m.unit, conv=conv,
                              cal=Conversion(m.scale, m.offset), allowed=allowed)
            self.fields.append(fm)
            if len(fm.keys) == 1:
                self.flat_fields.append((fm.keys[0], fm.sensor, conv.scale, conv.offset))
            if m.tag:
                self.by_tag[m.tag] = fm
        # the fields the profile knows, so a vendor adding one is noticed (schema drift)
        self.known_fields: set[str] = {".".join(k) for k in (self.machine_keys, self.ts_keys, self.tags_keys,
                                                            self.unit_id_keys, self.batch_id_keys,
                                                            self.recipe_keys) if k}
        self.known_fields |= {".".join(f.keys) for f in self.fields if f.keys}
        self.known_tags: set[str] = {f.tag for f in self.fields if f.tag}
        self.qc: QcSpec | None = spec.qc
        if spec.qc:
            self.known_fields |= {p for p in (spec.qc.unit_id_path, spec.qc.batch_id_path, spec.qc.verdict_path,
                                              spec.qc.defect_path, spec.qc.test_path) if p}
        if spec.qc:
            self.qc_unit_keys = _keys(spec.qc.unit_id_path)
            self.qc_batch_keys = _keys(spec.qc.batch_id_path)
            self.qc_verdict_keys = _keys(spec.qc.verdict_path)
            self.qc_defect_keys = _keys(spec.qc.defect_path)
            self.qc_test_keys = _keys(spec.qc.test_path)
            self.qc_pass = {str(v).upper() for v in spec.qc.pass_values}
            self.qc_fail = {str(v).upper() for v in spec.qc.fail_values}

    # ------------------------------------------------------------ timestamps

    def timestamp(self, payload: dict[str, Any], previous: datetime | None = None) -> datetime:
        """The reading's time in UTC.

        Naive local times are read in the profile's time zone. In the hour that repeats when clocks go
        back, the same wall time happens twice; ``previous`` (the machine's last reading) decides which
        is meant: the one that keeps the machine's clock moving forward by the least.
        """
        raw = dig(payload, self.ts_keys)
        if raw is None:
            raise PayloadError("missing_field", f"timestamp field {'.'.join(self.ts_keys)!r} is missing")
        fmt = self.ts_format
        try:
            if fmt.startswith("epoch"):
                if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                    raise PayloadError("bad_timestamp", f"timestamp {brief(raw)} is not a number ({fmt})")
                seconds = raw if fmt == "epoch_s" else raw / 1000.0 if fmt == "epoch_ms" else raw / 1_000_000.0
                ts = datetime.fromtimestamp(round(seconds, 3), tz=UTC)
            else:
                if not isinstance(raw, str):
                    raise PayloadError("bad_timestamp", f"timestamp {brief(raw)} is not an ISO-8601 string")
                ts = datetime.fromisoformat(raw)
                if ts.tzinfo is None:
                    if self.tz is None:
                        raise PayloadError("bad_timestamp", f"timestamp {brief(raw)} has no UTC offset and the profile names no time zone")
                    ts = _local_to_utc(ts, self.tz, previous)
                ts = ts.astimezone(UTC)
                ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        except (ValueError, OverflowError, OSError) as exc:
            if isinstance(exc, PayloadError):
                raise
            raise PayloadError("bad_timestamp", f"timestamp {brief(raw)} cannot be read as {fmt}: {exc}") from None
        return ts

    # ------------------------------------------------------------ sensor values

    def values(self, payload: dict[str, Any]) -> dict[str, float]:
        if self.payload == "tags":
            return self._tag_values(payload)
        out: dict[str, float] = {}
        if len(self.flat_fields) == len(self.fields):
            get = payload.get
            for key, sensor, scale, offset in self.flat_fields:
                raw = get(key)
                if raw is None:
                    continue
                t = type(raw)
                if not ((t is float or t is int) and raw - raw == 0):  # the common case is a finite number
                    raw = _number(raw, sensor, key)
                v = raw * scale + offset
                if v - v != 0:
                    _overflow(sensor, key, raw)
                out[sensor] = v
            return out
        for fm in self.fields:
            raw = dig(payload, fm.keys)
            if raw is None:
                continue  # a sensor missing from one reading is a gap, not a bad message
            v = _number(raw, fm.sensor, ".".join(fm.keys)) * fm.conv.scale + fm.conv.offset
            if v - v != 0:
                _overflow(fm.sensor, ".".join(fm.keys), raw)
            out[fm.sensor] = v
        return out

    def _tag_values(self, payload: dict[str, Any]) -> dict[str, float]:
        tags = dig(payload, self.tags_keys)
        if not isinstance(tags, list):
            raise PayloadError("missing_field", f"tag list {'.'.join(self.tags_keys)!r} is missing or not a list")
        out: dict[str, float] = {}
        by_tag = self.by_tag
        for item in tags:
            if type(item) is not dict:
                raise PayloadError("bad_value", f"tag entry {brief(item)} is not an object")
            tag = item.get("tag")
            fm = by_tag.get(tag) if type(tag) is str else None
            if fm is None:
                continue
            value: Any = item.get("value")
            t = type(value)
            if not ((t is float or t is int) and value - value == 0):
                value = _number(value, fm.sensor, fm.tag or "")
            unit = item.get("unit")
            if unit is None and fm.unit is None:
                # nothing says which unit: reading 358.2 (kelvin) as 358.2 °C would be a quiet error
                raise PayloadError("bad_unit", f"tag {fm.tag!r} gives no unit, and the profile names none for it")
            if unit is None or unit == fm.unit:
                v = value * fm.conv.scale + fm.conv.offset
                if v - v != 0:
                    _overflow(fm.sensor, fm.tag or "", value)
                out[fm.sensor] = v
                continue
            conv = fm.allowed.get(unit) if type(unit) is str else None
            if conv is None:  # a dictionary look-up, whatever the text: units are never parsed from messages
                raise PayloadError("bad_unit", f"tag {fm.tag!r}: unit {brief(unit)} is not one its profile allows "
                                               f"({', '.join(fm.allowed)}); list it under the mapping's units: to "
                                               "accept it")
            v = value * conv.scale + conv.offset
            if v - v != 0:
                _overflow(fm.sensor, fm.tag or "", value)
            out[fm.sensor] = v
        return out


def _local_to_utc(naive: datetime, tz: ZoneInfo, previous: datetime | None) -> datetime:
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first  # not ambiguous (a time in the spring-forward gap is read with the offset before it)
    if previous is None:
        return first
    candidates = [t for t in (first, second) if t >= previous]
    return min(candidates) if candidates else first


MAX_LEAF_PATHS = 2_000  # a payload with more fields than this is read for its first ones only


def leaf_paths(payload: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every scalar in a nested payload, for noticing fields a profile does not know.

    Walked without recursion and cut at MAX_LEAF_PATHS, so a hostile payload (a thousand levels
    deep, or fifty thousand keys) costs no more than its own size and no stack.
    """
    if not isinstance(payload, dict):
        return {prefix} if prefix else set()
    out: set[str] = set()
    stack: list[tuple[str, dict]] = [(prefix, payload)]
    while stack:
        base, node = stack.pop()
        for k, v in node.items():
            path = f"{base}.{k}" if base else str(k)
            if isinstance(v, dict) and v:
                stack.append((path, v))
            else:
                out.add(path)
                if len(out) >= MAX_LEAF_PATHS:
                    return out
    return out


def identifier(raw: Any, what: str, where: tuple[str, ...]) -> str | None:
    """A unit or batch id as text: a string or an integer; None when absent or blank.

    Anything else (a number with a fraction, a list, an object, true/false) would become an id no other
    message can ever match, so genealogy would lose the link without a trace: it is rejected instead.
    """
    if raw is None:
        return None
    t = type(raw)
    if t is str:
        return raw if raw.strip() else None
    if t is int:
        return str(raw)
    raise PayloadError("bad_value", f"{what} ({'.'.join(where)}) is {brief(raw)}; an id must be a string or an integer")


def _overflow(sensor: str, where: str, raw: Any) -> None:
    raise PayloadError("not_finite", f"{sensor} ({where}) is {brief(raw)}, which is not a finite number in canonical units")


def _number(raw: Any, sensor: str, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise PayloadError("non_numeric", f"{sensor} ({where}) is {brief(raw)}, not a number")
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise PayloadError("not_finite", f"{sensor} ({where}) is {brief(raw)}")
    return value
