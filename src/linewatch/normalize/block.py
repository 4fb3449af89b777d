"""A run of one machine's messages normalised at once, into columns.

Message by message, the normaliser spends most of its time on Python work that repeats for every
message: finding the machine and its profile, walking paths, building a dict, a datetime and a
source. A batch from Kafka holds runs of one machine's messages (one topic and key), so here that
work is done once per run, and times and values become arrays that the data-quality checks and the
anomaly model take whole (``linewatch.pipeline``).

Only the common case is read this way: every message decodes to an object with the same fields,
names the same machine, carries its mapped sensors as finite numbers (each sensor in all messages or
in none), well-formed unit and batch ids if any, one recipe (or none) for the whole run, and a time
before the clock-skew horizon. Anything else
returns None and the run goes message by message through ``Normalizer.normalize``, which gives each
bad message its reason. Either way the outcome is the same readings and the same normaliser state
(``tests/normalize/test_block.py`` compares both).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from linewatch.config import Machine
from linewatch.domain import EPOCH, ONE_MS, QcResult, RawMessage, ReadingBlock, Source
from linewatch.normalize.normalizer import SCHEMA_CHECK_EVERY, Normalizer
from linewatch.normalize.profile import CompiledProfile, PayloadError, dig, leaf_paths

# times outside (1970, 2242) are left to the message-by-message path, which explains them; up to 2**33 s
# a float second holds the millisecond that datetime.fromtimestamp rounds to
LATEST_MS = 2**33 * 1000
_EARLIEST_MS = 86_400_000  # ISO times: a day after the epoch, so no UTC offset takes one before it
DIVISOR = {"epoch_s": 1, "epoch_ms": 1000.0, "epoch_us": 1_000_000.0}
NUMBERS = frozenset({float, int})
_NOTHING: dict[str, Any] = {}
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z")
_ISO_LOCAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?")
_NAIVE_EPOCH = datetime(1970, 1, 1)
_SHORT_RUN_MS = 6 * 3600 * 1000  # no time zone changes its offset twice within this


@dataclass(frozen=True, slots=True)
class Survey:
    """What a run of messages holds, found before anything of it is normalised."""

    machines: frozenset[str]  # the machines whose readings it holds (of the messages that name a known one)
    payloads: list[Any]  # each message decoded, None where it does not decode to an object


def survey(normalizer: Normalizer, msgs: Sequence[RawMessage]) -> Survey:
    """Decode a run's messages and find which machines they are about, as ``Normalizer.normalize``
    would (the machine is looked up only for a message that decodes to an object, as there).

    A machine whose readings come in two runs of one batch (two keys, or several partitions) must
    go message by message: a block of one run would be taken whole, before the other's readings
    that lie between its own."""
    n = normalizer
    payloads: list[Any] = []
    for m in msgs:
        try:
            p = orjson.loads(m.value) if len(m.value) <= n.max_bytes else None
        except orjson.JSONDecodeError:
            p = None
        payloads.append(p if type(p) is dict else None)
    first = next((m for m, p in zip(msgs, payloads) if p is not None), None)
    if first is None:
        return Survey(frozenset(), payloads)
    try:
        machine = n._machine(first)
    except PayloadError:
        return Survey(frozenset(), payloads)
    profile = n.profiles[machine.manufacturer]
    if profile.machine_from != "field":
        return Survey(frozenset({machine.id}), payloads)
    decoded = [p for p in payloads if p is not None]
    try:
        ids = _column(decoded, profile.machine_keys)
    except AttributeError:  # something other than an object on the way: walk it as normalize does
        ids = [dig(p, profile.machine_keys) for p in decoded]
    named = {str(v) for v in ids if v is not None}
    return Survey(frozenset(n.aliases[v] for v in named if v in n.aliases), payloads)


def read_block(normalizer: Normalizer, msgs: Sequence[RawMessage], payloads: list[Any] | None = None) -> ReadingBlock | None:
    """The run's readings as one block, or None when any message needs the message-by-message path.

    ``msgs`` share a topic, partition and key (``payloads``: their ``survey``, when made). Nothing in
    the normaliser changes unless a block is returned; then its state is what normalising the
    messages one by one would have left.
    """
    try:
        return _read(normalizer, msgs, payloads)
    except (AttributeError, OverflowError, ValueError):  # not an object on a field's path; numbers past any range
        return None


def read_qc_block(normalizer: Normalizer, msgs: Sequence[RawMessage]) -> list[QcResult] | None:
    """A QC station's run of results decoded at once, or None when any message needs the
    message-by-message path. The results are still applied one by one, in arrival order (the
    genealogy links them to readings as they come); what is saved is the decoding. Changes nothing
    in the normaliser (QC results leave nothing there)."""
    try:
        decoded = _decode(normalizer, msgs, qc=True, payloads=None)
        if decoded is None:
            return None
        machine, profile, payloads = decoded
        return _qc_results(normalizer, msgs, machine, profile, payloads)
    except (AttributeError, OverflowError, ValueError):
        return None


def _decode(n: Normalizer, msgs: Sequence[RawMessage], qc: bool,
            payloads: list[Any] | None) -> tuple[Machine, CompiledProfile, list] | None:
    """The machine (or QC station) of a run, its profile and its payloads, if every message decodes
    to an object and names the same machine."""
    first = msgs[0]
    if (first.topic == n.qc_topic) != qc or not (qc or first.topic.startswith(n.raw_prefix)):
        return None
    if payloads is None:
        try:
            payloads = [orjson.loads(m.value) for m in msgs if len(m.value) <= n.max_bytes]
        except orjson.JSONDecodeError:
            return None
    if len(payloads) != len(msgs) or set(map(type, payloads)) != {dict}:
        return None
    try:  # looked up once a message decodes, as Normalizer.normalize does
        machine = n._machine(first)
    except PayloadError:
        return None
    profile = n.profiles[machine.manufacturer]
    if profile.machine_from == "field":
        column = _column(payloads, profile.machine_keys)
        named = {str(v) for v in column}  # as normalize reads an id: its text (7 and 7.0 are two names)
        if None in column or len(named) != 1:
            return None
        resolved = n.aliases.get(named.pop())
        if resolved != machine.id:  # unknown, or another machine: normalize says which, message by message
            return None
    return machine, profile, payloads


def _qc_results(n: Normalizer, msgs: Sequence[RawMessage], machine: Machine, profile: CompiledProfile,
                payloads: list[dict[str, Any]]) -> list[QcResult] | None:
    if profile.qc is None:
        return None
    ts_ms = _times(profile, payloads, None, alone=True)
    if ts_ms is None or len(ts_ms) == 0 or int(ts_ms.min()) < n.earliest_ms:  # a reset clock: said per message
        return None
    newest = EPOCH + timedelta(milliseconds=int(ts_ms.max()))
    if newest > n._horizon and newest > n._refresh_horizon():
        return None
    verdicts = _column(payloads, profile.qc_verdict_keys)
    kinds = set(map(type, verdicts))
    if not kinds <= {str, int}:  # true/false, null and the like: the message says what is wrong
        return None
    passed_by_verdict = {}
    for verdict in set(verdicts):
        token = str(verdict).upper()
        if token not in profile.qc_pass and token not in profile.qc_fail:
            return None
        passed_by_verdict[verdict] = token in profile.qc_pass
    passed = [passed_by_verdict[v] for v in verdicts]
    none = [None] * len(payloads)
    units = _ids(_column(payloads, profile.qc_unit_keys)) if profile.qc_unit_keys else none
    batches = _ids(_column(payloads, profile.qc_batch_keys)) if profile.qc_batch_keys else none
    if units is None or batches is None:
        return None
    defects = _column(payloads, profile.qc_defect_keys) if profile.qc_defect_keys else none
    tests = _column(payloads, profile.qc_test_keys) if profile.qc_test_keys else none
    line, machine_id, default_test, manufacturer = machine.line, machine.id, profile.qc.test, profile.manufacturer
    topic, partition = msgs[0].topic, msgs[0].partition
    return [QcResult(EPOCH + timedelta(milliseconds=ms), line, ok, default_test if test is None or test == "" else str(test),
                     Source(manufacturer, topic, partition, m.offset), machine_id, unit, batch,
                     None if defect is None or ok else str(defect))
            for ms, ok, test, m, unit, batch, defect in zip(ts_ms.tolist(), passed, tests, msgs, units, batches, defects)]


def _ids(raw: list[Any]) -> list[str | None] | None:
    """Unit or batch ids as ``identifier`` reads them; None when one is not a string or an integer."""
    if not set(map(type, raw)) <= {str, int, type(None)}:
        return None
    return [None if v is None else str(v) if type(v) is int else v if v.strip() else None for v in raw]


def _read(normalizer: Normalizer, msgs: Sequence[RawMessage], payloads: list[Any] | None) -> ReadingBlock | None:
    n = normalizer
    decoded = _decode(n, msgs, qc=False, payloads=payloads)
    if decoded is None:
        return None
    machine, profile, payloads = decoded
    ids: list[list[str | None] | None] = []
    for keys in (profile.recipe_keys, profile.unit_id_keys, profile.batch_id_keys):
        column = _ids(_column(payloads, keys)) if keys else None
        if keys and column is None:
            return None  # an id that is not one: its message says so
        ids.append(None if column is None or column.count(None) == len(column) else column)
    recipes, unit_ids, batch_ids = ids
    if recipes is not None and len(set(recipes)) != 1:
        return None  # the recipe changes within the run: each part has its own model, read one by one
    if not _schema_unchanged(n, machine.id, profile, payloads):
        return None

    previous = n.last_ts.get(machine.id)
    ts_ms = _times(profile, payloads, previous)
    if ts_ms is None or len(ts_ms) == 0 or int(ts_ms.min()) < n.earliest_ms:  # a reset clock: said per message
        return None
    newest_ms = int(ts_ms.max())
    newest = EPOCH + timedelta(milliseconds=newest_ms)
    if newest > n._horizon and newest > n._refresh_horizon():
        return None  # from the future: a clock problem, reported per message

    sensors, values = _values(profile, payloads)
    if values is None or not sensors:
        return None
    cal = n.calibration.get(machine.id)
    if cal:
        for j, sensor in enumerate(sensors):
            if sensor in cal:
                scale, offset = cal[sensor]
                with np.errstate(over="ignore", invalid="ignore"):
                    values[:, j] = values[:, j] * scale + offset
        if not np.isfinite(values).all():
            return None

    # commit: what normalising them one by one leaves behind
    if previous is None or newest > previous:
        n.last_ts[machine.id] = newest
    n.last_raw[machine.id] = msgs[-1].value
    count = n.schema_counter.get(machine.id, 0)
    if profile.payload != "tags":
        n.schema_counter[machine.id] = count + len(msgs)
    if profile.payload == "tags" or (profile.payload == "nested" and -count % SCHEMA_CHECK_EVERY < len(msgs)):
        n.fields_seen.setdefault(machine.id, set())  # as a look for new fields does
    return ReadingBlock(machine=machine.id, line=machine.line, manufacturer=profile.manufacturer,
                        topic=msgs[0].topic, partition=msgs[0].partition, offsets=[m.offset for m in msgs],
                        ts_ms=ts_ms, sensors=sensors, values=values,
                        recipe=None if recipes is None else recipes[0], unit_ids=unit_ids, batch_ids=batch_ids)


def _column(payloads: list[dict[str, Any]], keys: tuple[str, ...]) -> list[Any]:
    """The value at ``keys`` in each payload (None where absent). Something other than an object on
    the way raises AttributeError: the run then goes message by message."""
    if len(keys) == 1:
        key = keys[0]
        return [p.get(key) for p in payloads]
    if len(keys) == 2:
        a, b = keys
        return [p.get(a, _NOTHING).get(b) for p in payloads]
    if len(keys) == 3:
        a, b, c = keys
        return [p.get(a, _NOTHING).get(b, _NOTHING).get(c) for p in payloads]
    return [dig(p, keys) for p in payloads]


def _schema_unchanged(n: Normalizer, machine: str, profile: Any, payloads: list[dict[str, Any]]) -> bool:
    """No payload carries a field the machine has not sent before (``Normalizer._watch_schema``
    would report it); what the normaliser notes on the way is left for the commit."""
    seen = n.fields_seen.get(machine, set())
    if profile.payload == "tags":
        allowed = profile.known_tags | seen
        for p in payloads:
            tags = dig(p, profile.tags_keys) or []
            if not isinstance(tags, list):
                return False
            for t in tags:
                if isinstance(t, dict) and isinstance(t.get("tag"), str) and t["tag"] not in allowed:
                    return False
        return True
    top = n.top_keys.get(machine)
    if top is None:  # the machine's first messages: its fields are noted message by message
        return False
    for p in payloads:
        if p.keys() != top:
            return False
    if profile.payload == "flat":
        return True
    count = n.schema_counter.get(machine, 0)
    for i in range(-count % SCHEMA_CHECK_EVERY, len(payloads), SCHEMA_CHECK_EVERY):  # the thorough looks
        if {p for p in leaf_paths(payloads[i]) if p not in profile.known_fields} - seen:
            return False
    return True


def _times(profile: Any, payloads: list[dict[str, Any]], previous: datetime | None,
           alone: bool = False) -> np.ndarray | None:
    """Milliseconds since the epoch, exactly as ``CompiledProfile.timestamp`` reads each message.
    ``alone``: only if no message needs the machine's previous time (an ambiguous local time)."""
    fmt = profile.ts_format
    if fmt.startswith("epoch"):
        raw = _column(payloads, profile.ts_keys)
        kinds = set(map(type, raw))
        if not kinds <= NUMBERS:
            return None
        if fmt == "epoch_ms" and kinds == {int}:
            ms = np.array(raw, dtype=np.int64)  # round(raw / 1000, 3) seconds is exactly raw ms
        else:
            divisor = DIVISOR[fmt]
            seconds = np.array([round(r if divisor == 1 else r / divisor, 3) for r in raw], dtype=np.float64)
            if not ((seconds > 0) & (seconds < LATEST_MS / 1000)).all():
                return None
            ms = np.rint(seconds * 1000.0).astype(np.int64)
        if ms.min() <= 0 or ms.max() >= LATEST_MS:
            return None
        return ms
    raw = _column(payloads, profile.ts_keys)
    iso = _iso_times(raw, profile.tz)
    if iso is not None or alone:
        return iso
    out = np.empty(len(payloads), dtype=np.int64)
    last = previous
    try:
        for i, p in enumerate(payloads):
            ts = profile.timestamp(p, last)
            if last is None or ts > last:
                last = ts
            out[i] = (ts - EPOCH) // ONE_MS
    except PayloadError:
        return None
    return out


def _iso_times(raw: list[Any], tz: ZoneInfo | None) -> np.ndarray | None:
    """ISO-8601 times of one plain layout (``2026-01-05T06:00:00.100``, ending in Z for UTC or naive
    local times in ``tz``) parsed by numpy at once; None for anything else, read one by one. Local
    times are read at once only when the run is short and its ends are in the same, unambiguous UTC
    offset (the hour that repeats when clocks go back needs the message-by-message reading)."""
    if set(map(type, raw)) != {str}:
        return None
    utc = raw[0].endswith("Z")
    if not all(map((_ISO_UTC if utc else _ISO_LOCAL).fullmatch, raw)):
        return None
    if utc:
        raw = [r[:-1] for r in raw]
    elif tz is None:
        return None
    try:
        ms = np.array(raw, dtype="datetime64[ms]").astype(np.int64)
    except ValueError:  # a month 13 and the like: the message says which
        return None
    if ms.min() <= _EARLIEST_MS or ms.max() >= LATEST_MS:  # numpy reads year 0, datetime does not
        return None
    if utc:
        return ms
    first, last = int(ms.min()), int(ms.max())
    if last - first > _SHORT_RUN_MS:
        return None
    offsets = set()
    for end in (first, last):
        naive = _NAIVE_EPOCH + timedelta(milliseconds=end)
        offsets |= {naive.replace(tzinfo=tz, fold=0).utcoffset(), naive.replace(tzinfo=tz, fold=1).utcoffset()}
    if len(offsets) != 1:
        return None
    offset = offsets.pop()
    assert offset is not None
    return ms - offset // ONE_MS


def _values(profile: Any, payloads: list[dict[str, Any]]) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Sensor names and values (rows: messages) in canonical units, or None when any message has a
    value the message-by-message path would reject or a different set of sensors."""
    if profile.payload != "tags":
        names, columns = [], []
        for fm in profile.fields:
            raw = _column(payloads, fm.keys)
            kinds = set(map(type, raw))
            if kinds == {type(None)}:
                continue  # a sensor this machine does not send
            if not kinds <= NUMBERS:
                return (), None
            names.append(fm.sensor)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is found just below
                columns.append(np.array(raw, dtype=np.float64) * fm.conv.scale + fm.conv.offset)
        if not columns:
            return (), None
        values = np.column_stack(columns)
        if not np.isfinite(values).all():
            return (), None
        return tuple(names), values
    try:
        dicts = [profile.values(p) for p in payloads]
    except PayloadError:
        return (), None
    sensors = tuple(dicts[0])
    if any(d.keys() != dicts[0].keys() for d in dicts):
        return (), None
    values = np.array([[d[s] for s in sensors] for d in dicts], dtype=np.float64).reshape(len(dicts), len(sensors))
    return sensors, values
