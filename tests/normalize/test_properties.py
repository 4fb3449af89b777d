"""Property-based tests per manufacturer profile (hypothesis).

Valid payloads are built from a profile alone (no hand-written examples), so adding a vendor file adds
its properties too: random valid payloads normalise to catalogue units within tolerance, and random
mutations never raise and always end as exactly one reading or one rejection with a reason.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linewatch.config import PlantConfig, load_config
from linewatch.domain import QcResult, RawMessage, Reading, Rejection
from linewatch.normalize.normalizer import REASONS, Normalizer
from linewatch.normalize.profile import CompiledProfile

UTC = timezone.utc
CONFIG: PlantConfig = load_config()
NORMALIZER = Normalizer(CONFIG)
MACHINES = sorted(CONFIG.machines.values(), key=lambda m: m.id)
EXAMPLES = int(os.environ.get("LINEWATCH_HYPOTHESIS_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _put(payload: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for k in keys[:-1]:
        payload = payload.setdefault(k, {})
    payload[keys[-1]] = value


def _encode_ts(profile: CompiledProfile, ts: datetime) -> Any:
    fmt = profile.ts_format
    if fmt == "epoch_s":
        return ts.timestamp()
    if fmt == "epoch_ms":
        return int(round(ts.timestamp() * 1000))
    if fmt == "epoch_us":
        return int(round(ts.timestamp() * 1_000_000))
    if fmt == "iso":
        return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    tz = profile.tz or ZoneInfo("UTC")
    return ts.astimezone(tz).replace(tzinfo=None).isoformat(timespec="milliseconds")


def encode(machine_id: str, ts: datetime, values: dict[str, float]) -> tuple[str, bytes, bytes]:
    """A vendor payload for ``values`` (canonical units), built from the machine's profile alone."""
    machine = CONFIG.machines[machine_id]
    profile = NORMALIZER.profiles[machine.manufacturer]
    payload: dict[str, Any] = {}
    if profile.machine_from == "field":
        _put(payload, profile.machine_keys, machine.vendor_ids[0] if machine.vendor_ids else machine.id)
    _put(payload, profile.ts_keys, _encode_ts(profile, ts))
    tags = []
    for fm in profile.fields:
        if fm.sensor not in values:
            continue
        raw = (values[fm.sensor] - fm.conv.offset) / fm.conv.scale
        if fm.tag:
            tags.append({"tag": fm.tag, "value": raw} | ({"unit": fm.unit} if fm.unit else {}))
        else:
            _put(payload, fm.keys, raw)
    if profile.payload == "tags":
        _put(payload, profile.tags_keys, tags)
    return f"linewatch.raw.{machine_id}", json.dumps(payload).encode(), machine_id.encode()


@st.composite
def valid_readings(draw) -> tuple[str, datetime, dict[str, float]]:
    machine = draw(st.sampled_from(MACHINES))
    profile = CONFIG.profiles[machine.manufacturer]
    sensors = [m.sensor for m in profile.sensors]
    chosen = draw(st.lists(st.sampled_from(sensors), min_size=1, unique=True))
    values = {}
    for s in chosen:
        low, high = CONFIG.catalogue.sensors[s].range
        values[s] = draw(st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False))
    ms = draw(st.integers(min_value=0, max_value=5 * 365 * 86400 * 1000))
    ts = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return machine.id, ts, values


@PROPERTY
@given(valid_readings())
def test_valid_payloads_normalise_to_catalogue_units(case):
    machine_id, ts, values = case
    topic, value, key = encode(machine_id, ts, values)
    result = Normalizer(CONFIG).normalize(RawMessage(topic, value, key))
    assert isinstance(result, Reading), result
    assert result.machine == machine_id
    assert abs((result.ts - ts).total_seconds()) <= 0.001
    assert set(result.values) == set(values)
    for sensor, expected in values.items():
        span = CONFIG.catalogue.sensors[sensor].range[1] - CONFIG.catalogue.sensors[sensor].range[0]
        assert result.values[sensor] == pytest.approx(expected, rel=1e-9, abs=1e-9 * span)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=20), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _leaf_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _leaf_paths(v, prefix + (k,))] or [prefix]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _leaf_paths(v, prefix + (i,))] or [prefix]
    return [prefix]


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    obj[path[0]] = _set(obj[path[0]], path[1:], value)
    return obj


def _delete(obj: Any, path: tuple) -> None:
    for p in path[:-1]:
        obj = obj[p]
    if path:
        del obj[path[-1]]


@st.composite
def mutated(draw) -> tuple[str, bytes, bytes | None]:
    machine_id, ts, values = draw(valid_readings())
    topic, value, key = encode(machine_id, ts, values)
    kind = draw(st.sampled_from(["truncate", "retype", "delete", "extra", "huge", "encoding", "bytes", "key", "qc"]))
    payload = json.loads(value)
    if kind == "truncate":
        value = value[:draw(st.integers(min_value=0, max_value=max(0, len(value) - 1)))]
    elif kind == "retype":
        path = draw(st.sampled_from(_leaf_paths(payload)))
        value = json.dumps(_set(payload, path, draw(JSON_VALUES))).encode()
    elif kind == "delete":
        path = draw(st.sampled_from(_leaf_paths(payload)))
        _delete(payload, path)
        value = json.dumps(payload).encode()
    elif kind == "extra":
        payload[draw(st.text(min_size=1, max_size=10))] = draw(JSON_VALUES)
        value = json.dumps(payload).encode()
    elif kind == "huge":
        path = draw(st.sampled_from(_leaf_paths(payload)))
        huge = draw(st.sampled_from([10 ** 400, -10 ** 400, 1e308, -1e308, 2 ** 64, "1e999"]))
        value = json.dumps(_set(payload, path, huge)).encode() if not isinstance(huge, int) else \
            json.dumps(payload).encode().replace(b"}", b', "z": ' + str(huge).encode() + b"}", 1)
    elif kind == "encoding":
        text = json.dumps(payload, ensure_ascii=False) + "\u00e9\u2603"
        value = text.encode(draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"])), errors="replace")
    elif kind == "bytes":
        pos = draw(st.integers(min_value=0, max_value=len(value)))
        value = value[:pos] + draw(st.binary(min_size=1, max_size=8)) + value[pos:]
    elif kind == "key":
        key = draw(st.one_of(st.none(), st.binary(max_size=12)))
        topic = draw(st.sampled_from([topic, "linewatch.raw.", "linewatch.raw.nobody", "elsewhere"]))
    else:
        topic = "linewatch.qc"
    return topic, value, key


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_never_raise_and_end_as_exactly_one_outcome(case):
    topic, value, key = case
    result = NORMALIZER.normalize(RawMessage(topic, value, key, partition=0, offset=1))
    assert isinstance(result, (Reading, QcResult, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in REASONS and result.reason != "internal_error", result.detail
        assert result.detail and result.raw == value
    elif isinstance(result, Reading):
        assert result.values and all(v - v == 0 for v in result.values.values())  # finite numbers only


# ---------------------------------------------------------------- hostile input: bounded cost per message

UNIT_NAMES = ["K", "degC", "degF", "m", "min", "s", "%", "psi", "bar", "kelvin", "g0", "µm", "Ω"]
UNIT_STRINGS = st.one_of(
    st.text(max_size=40),
    st.recursive(st.sampled_from(UNIT_NAMES) | st.integers(min_value=-99, max_value=10 ** 12).map(str)
                 | st.sampled_from(["1e9999999", "(10**10)", "0x1F", "1_000", "inf", "nan"]),
                 lambda inner: st.tuples(inner, st.sampled_from(["**", "*", "/", " ", "^", "+", "-"]), inner)
                 .map("".join), max_leaves=12),
    st.sampled_from(["2**2**2**2**2**2**2*K", "9**9**9*K", "(10**10)**10**10*m", "1e9999999*K"]),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "K" * n),
    st.none() | st.booleans() | st.integers() | st.lists(st.text(max_size=3), max_size=3))
MACHINE_IDS = st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none(),
                        st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
                        st.sampled_from(["EXT-4471", "CW1", "SW-CUT-01", "dryer-1", "extruder-1", " EXT-4471 ", "ext-4471"]),
                        st.integers(min_value=1, max_value=100_000).map(lambda n: "E" * n))
HANG = 30  # seconds: no message may take anywhere near this (a power tower took minutes); not a timing test
MEMORY = 64 * 1024 * 1024  # bytes one small message may allocate at its peak


@st.composite
def hostile(draw) -> tuple[str, bytes, bytes | None, str]:
    """A valid reading of a random machine with one hostile part: a unit string (tag lists), a machine
    id (in the payload, the key or both) or deep nesting around a value. Returns the machine it is for."""
    machine_id, ts, values = draw(valid_readings())
    topic, value, key = encode(machine_id, ts, values)
    payload = json.loads(value)
    kind = draw(st.sampled_from(["unit", "machine", "nesting"]))
    if kind == "unit":
        tags = payload.get("tags") if isinstance(payload.get("tags"), list) else None
        if tags:
            for tag in tags:
                tag["unit"] = draw(UNIT_STRINGS)
        else:
            payload["unit"] = draw(UNIT_STRINGS)
    elif kind == "machine":
        named = draw(MACHINE_IDS)
        for path in _leaf_paths(payload):
            if path and path[-1] in ("machineId", "station", "id"):
                _set(payload, path, named)
        if draw(st.booleans()):
            key = json.dumps(named).encode()[:200_000] if not isinstance(named, str) else named.encode()
    else:
        depth = draw(st.integers(min_value=1, max_value=3_000))
        leaf: Any = draw(st.floats(allow_nan=False) | st.text(max_size=5))
        for _ in range(depth):
            leaf = [leaf] if draw(st.booleans()) else {"n": leaf}
        paths = _leaf_paths(payload)
        target = draw(st.sampled_from(paths + [("deep",)]))
        return topic, _dumps_deep(_set(payload, target, leaf) if target != ("deep",) else {**payload, "deep": leaf}), \
            key, machine_id
    return topic, json.dumps(payload).encode(), key, machine_id


def _dumps_deep(obj: Any) -> bytes:
    """json.dumps without its recursion limit (a gateway's encoder has none)."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return json.dumps(obj).encode()
    finally:
        sys.setrecursionlimit(limit)


class _Hang(Exception):
    pass


# each example is traced for memory (slow): a few hundred per run, fresh ones every run
@settings(max_examples=min(EXAMPLES, 400), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
@given(hostile())
def test_hostile_units_ids_and_nesting_cost_a_bounded_time_and_memory_and_end_as_one_outcome(case):
    import signal
    import tracemalloc

    topic, value, key, machine_id = case

    def hang(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG)
    tracemalloc.start()
    try:
        result = NORMALIZER.normalize(RawMessage(topic, value, key, partition=0, offset=1))
        _, peak = tracemalloc.get_traced_memory()
    except _Hang:
        pytest.fail(f"one message of {len(value)} bytes was still being read after {HANG} s: {value[:200]!r}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        tracemalloc.stop()
    assert peak < MEMORY, f"one message of {len(value)} bytes allocated {peak / 2**20:.0f} MiB"
    assert isinstance(result, (Reading, QcResult, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in REASONS and result.reason != "internal_error", result.detail
        assert len(result.detail) <= 500
    elif isinstance(result, Reading):  # a payload never speaks for another machine than its key and topic
        assert result.machine == machine_id and all(v - v == 0 for v in result.values.values())
