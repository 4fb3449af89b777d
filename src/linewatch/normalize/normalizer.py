"""From a raw Kafka message to a canonical Reading, a QcResult, or a Rejection with a reason.

The normaliser never raises on input: whatever arrives ends as exactly one of the three, so the
consumer loop can account for every message. It keeps a little state per machine: the last
timestamp (to read the repeated hour at a DST change the right way) and the payload fields seen (to
report a vendor adding fields, once per machine).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from linewatch.config import Machine, PlantConfig
from linewatch.domain import EPOCH, ONE_MS, QcResult, RawMessage, Reading, Rejection, Source
from linewatch.normalize.profile import CompiledProfile, PayloadError, brief, dig, identifier, leaf_paths

RAW_TOPIC_PREFIX = "linewatch.raw."
QC_TOPIC = "linewatch.qc"
DEFAULT_MAX_BYTES = 1_048_576
SCHEMA_CHECK_EVERY = 200  # nested payloads: look for new fields every this many messages per machine
# unmapped fields remembered per machine: a gateway that invents a field name per message must not
# grow the worker's memory (past this, new names are no longer reported)
MAX_FIELDS_SEEN = 500
# a rejection's sentence travels in a DLQ header, a log line and the CLI's output: every one is cut here
MAX_DETAIL_CHARS = 500

# Reason codes: bounded, stable, used as a Prometheus label and a DLQ header.
REASONS = (
    "oversized", "not_utf8", "not_json", "not_object", "unknown_machine", "machine_mismatch", "unknown_topic",
    "missing_field", "bad_timestamp", "future_timestamp", "non_numeric", "not_finite", "bad_value", "bad_unit",
    "bad_verdict", "no_sensor_values", "qc_not_configured", "internal_error",
)


@dataclass(frozen=True, slots=True)
class SchemaDrift:
    """A machine's payload carries fields its profile does not map (reported, never rejected)."""

    machine: str
    line: str
    manufacturer: str
    fields: tuple[str, ...]


class Normalizer:
    """Applies the plant's manufacturer profiles to raw messages."""

    def __init__(self, config: PlantConfig, max_bytes: int = DEFAULT_MAX_BYTES, raw_prefix: str = RAW_TOPIC_PREFIX,
                 qc_topic: str = QC_TOPIC, clock: Any = time.time):
        self.config = config
        self.max_bytes = max_bytes
        self.raw_prefix = raw_prefix
        self.qc_topic = qc_topic
        self.clock = clock
        dq = config.detection.data_quality
        self.max_future = None if dq.max_future_seconds is None else timedelta(seconds=dq.max_future_seconds)
        self._future_limit_seconds = dq.max_future_seconds or 0.0  # for the message: a horizon needs a limit
        self.earliest = dq.earliest_timestamp  # before it: a reset clock
        self.earliest_ms = math.ceil((dq.earliest_timestamp - EPOCH) / ONE_MS)  # the first millisecond not before it
        self.profiles = {name: CompiledProfile(spec, config.catalogue) for name, spec in config.profiles.items()}
        self.machines: dict[str, Machine] = dict(config.machines)
        # every name a machine goes by (plant id and vendor ids) -> plant machine id
        self.aliases: dict[str, str] = {}
        for m in config.machines.values():
            self.aliases[m.id] = m.id
            for vid in m.vendor_ids:
                self.aliases[vid] = m.id
        self.calibration = {m.id: {s: (c.scale, c.offset) for s, c in m.calibration.items()}
                            for m in config.machines.values() if m.calibration}
        # per machine, checkpointed and handed over with it (Pipeline.export_state / import_state)
        self.last_ts: dict[str, datetime] = {}
        self.fields_seen: dict[str, set[str]] = {}
        self.top_keys: dict[str, frozenset[str]] = {}
        # per machine, not checkpointed on purpose (Pipeline.release forgets them with the rest): how often
        # the full schema check was skipped (a sampling counter: starting again from 0 only checks sooner)
        # and the last raw payload (what the machine page shows; the next message brings it back)
        self.schema_counter: dict[str, int] = {}
        self.last_raw: dict[str, bytes] = {}
        self.schema_drift: list[SchemaDrift] = []  # drained by the pipeline
        self._context: tuple[str, str | None] = ("", None)
        self._by_key_topic: dict[tuple[bytes | None, str], Machine] = {}
        self._horizon = datetime.min.replace(tzinfo=timezone.utc)  # readings later than this are from the future
        self._refresh_horizon()  # (manufacturer, machine) of the message at hand

    def normalize(self, msg: RawMessage) -> Reading | QcResult | Rejection:
        """One message in, exactly one outcome out."""
        self._context = ("", None)
        try:
            return self._normalize(msg)
        except PayloadError as exc:
            return self._reject(msg, exc.reason, exc.detail)
        except Exception as exc:  # a bug must not stop the line's monitoring: reject, keep the bytes
            return self._reject(msg, "internal_error", f"unexpected {type(exc).__name__}: {exc}")

    def _normalize(self, msg: RawMessage) -> Reading | QcResult | Rejection:
        is_qc = msg.topic == self.qc_topic
        if not is_qc and not msg.topic.startswith(self.raw_prefix):
            raise PayloadError("unknown_topic", f"topic {brief(msg.topic)} is neither {self.raw_prefix}* nor {self.qc_topic}")
        if len(msg.value) > self.max_bytes:
            raise PayloadError("oversized", f"payload is {len(msg.value)} bytes, the limit is {self.max_bytes}")
        try:
            payload = orjson.loads(msg.value)  # strict: UTF-8 only, no NaN/Infinity literals
        except orjson.JSONDecodeError as exc:
            try:
                msg.value.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise PayloadError("not_utf8", f"payload is not UTF-8 text (byte {bad.start}: {bad.reason})") from None
            raise PayloadError("not_json", f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(payload, dict):
            raise PayloadError("not_object", f"payload is a JSON {type(payload).__name__}, expected an object")

        machine = self._machine(msg)
        profile = self.profiles[machine.manufacturer]
        self._context = (profile.manufacturer, machine.id)
        if is_qc and profile.qc is None:
            raise PayloadError("qc_not_configured", f"{machine.id}'s profile ({profile.manufacturer}) has no qc section")
        if profile.machine_from == "field":
            named = dig(payload, profile.machine_keys)
            if named is None:
                raise PayloadError("missing_field", f"machine id field {'.'.join(profile.machine_keys)!r} is missing")
            resolved = self.aliases.get(str(named))
            if resolved is None:
                raise PayloadError("unknown_machine", f"machine {brief(named)} ({profile.manufacturer}) is not in plant.yaml")
            if resolved != machine.id:
                # a payload never speaks for another machine than its key or topic names (nor, so, is
                # it read with another manufacturer's profile)
                raise PayloadError("machine_mismatch", f"the payload names machine {brief(named)} ({resolved}) but "
                                                       f"its key and topic belong to {machine.id}")
            self._context = (profile.manufacturer, machine.id)
        source = Source(profile.manufacturer, msg.topic, msg.partition, msg.offset)
        ts = profile.timestamp(payload, self.last_ts.get(machine.id))
        if ts < self.earliest:
            raise PayloadError("bad_timestamp", f"timestamp {ts.isoformat(timespec='seconds')} is before "
                                                f"{self.earliest:%Y-%m-%d} (detection.data_quality.earliest_timestamp): "
                                                f"has {machine.id}'s clock been reset?")
        if ts > self._horizon and ts > self._refresh_horizon():
            ahead = ts.timestamp() - self.clock()
            raise PayloadError("future_timestamp", f"timestamp {ts:%Y-%m-%d %H:%M:%S}Z is {ahead:,.0f} s ahead of this "
                                                   f"server's clock (limit {self._future_limit_seconds:.0f} s): "
                                                   f"is {machine.id}'s clock or time zone set right?")
        if is_qc:
            return self._qc(profile, payload, machine, ts, source)
        values = profile.values(payload)
        if not values:
            raise PayloadError("no_sensor_values", f"none of {profile.manufacturer}'s mapped sensors is in the payload")
        cal = self.calibration.get(machine.id)
        if cal:
            for sensor, (scale, offset) in cal.items():
                if sensor in values:
                    v = values[sensor] * scale + offset
                    if v - v != 0:
                        raise PayloadError("not_finite", f"{sensor} is not finite after {machine.id}'s calibration")
                    values[sensor] = v
        self._watch_schema(machine, profile, payload)
        prev = self.last_ts.get(machine.id)
        if prev is None or ts > prev:
            self.last_ts[machine.id] = ts
        self.last_raw[machine.id] = msg.value
        unit_id = batch_id = recipe = None
        if profile.recipe_keys:
            recipe = identifier(dig(payload, profile.recipe_keys), "recipe", profile.recipe_keys)
        if profile.unit_id_keys:
            unit_id = identifier(dig(payload, profile.unit_id_keys), "unit id", profile.unit_id_keys)
        if profile.batch_id_keys:
            batch_id = identifier(dig(payload, profile.batch_id_keys), "batch id", profile.batch_id_keys)
        return Reading(machine=machine.id, line=machine.line, ts=ts, values=values, source=source,
                       unit_id=unit_id, batch_id=batch_id, recipe=recipe)

    def _refresh_horizon(self) -> datetime:
        """Move the clock-skew horizon to now + the allowed lead; only needed when a reading passes it."""
        if self.max_future is None:
            self._horizon = datetime.max.replace(tzinfo=timezone.utc)
        else:
            self._horizon = datetime.fromtimestamp(self.clock(), tz=timezone.utc) + self.max_future
        return self._horizon

    def _machine(self, msg: RawMessage) -> Machine:
        """The machine a message is about, from its key or else its topic name."""
        cached = self._by_key_topic.get((msg.key, msg.topic))
        if cached is not None:
            return cached
        machine = self._find_machine(msg)
        if len(self._by_key_topic) < 100_000:  # bounded: keys come from outside
            self._by_key_topic[(msg.key, msg.topic)] = machine
        return machine

    def _find_machine(self, msg: RawMessage) -> Machine:
        key = msg.key.decode("utf-8", "replace") if msg.key else None
        found = self.aliases.get(key) if key else None
        topic_name = msg.topic[len(self.raw_prefix):] if msg.topic.startswith(self.raw_prefix) else None
        by_topic = self.aliases.get(topic_name) if topic_name else None
        if found is not None and by_topic is not None and found != by_topic:
            raise PayloadError("machine_mismatch", f"key {brief(key)} names {found} but topic {brief(msg.topic)} "
                                                   f"belongs to {by_topic}")
        if found is None:
            found = by_topic
        if found is not None:
            return self.machines[found]
        unknown = self.config.unknown_machines
        name = key or topic_name
        if unknown.policy == "accept" and name:
            # accepted under the default profile: the machine appears as the plant sees it
            assert unknown.profile and unknown.line
            machine = Machine(id=name, line=unknown.line, area="", kind="unknown", manufacturer=unknown.profile,
                              vendor_ids=())
            self.machines[name] = machine
            self.aliases[name] = name
            return machine
        raise PayloadError("unknown_machine", f"no configured machine matches key {brief(key)} or topic {brief(msg.topic)}")

    def _watch_schema(self, machine: Machine, profile: CompiledProfile, payload: dict[str, Any]) -> None:
        """Notice fields the profile does not map; cheap on the hot path, thorough now and then."""
        if profile.payload == "tags":
            tags = dig(payload, profile.tags_keys) or []
            names: set[str] = {t["tag"] for t in tags if isinstance(t, dict) and isinstance(t.get("tag"), str)}
            new = {n for n in names if n not in profile.known_tags}
        else:
            keys = frozenset(payload)
            count = self.schema_counter.get(machine.id, 0)
            self.schema_counter[machine.id] = count + 1
            if keys == self.top_keys.get(machine.id) and (profile.payload == "flat" or count % SCHEMA_CHECK_EVERY):
                return
            self.top_keys[machine.id] = keys
            paths: set[str] = set(map(str, keys)) if profile.payload == "flat" else leaf_paths(payload)
            new = {p for p in paths if p not in profile.known_fields}
        seen = self.fields_seen.setdefault(machine.id, set())
        fresh = new - seen
        if fresh and len(seen) < MAX_FIELDS_SEEN:
            fresh = set(sorted(fresh)[:MAX_FIELDS_SEEN - len(seen)])
            seen |= fresh
            self.schema_drift.append(SchemaDrift(machine.id, machine.line, profile.manufacturer, tuple(sorted(fresh))))

    def _qc(self, profile: CompiledProfile, payload: dict[str, Any], machine: Machine, ts: datetime,
            source: Source) -> QcResult:
        assert profile.qc is not None
        verdict = dig(payload, profile.qc_verdict_keys)
        if verdict is None:
            raise PayloadError("missing_field", f"verdict field {profile.qc.verdict_path!r} is missing")
        token = str(verdict).upper()
        if token in profile.qc_pass:
            passed = True
        elif token in profile.qc_fail:
            passed = False
        else:
            raise PayloadError("bad_verdict", f"verdict {brief(verdict)} is neither a pass ({sorted(profile.qc_pass)}) "
                                              f"nor a fail ({sorted(profile.qc_fail)}) value")
        # dig() with no keys returns the whole payload: a field the profile does not name is absent
        unit_id = batch_id = defect = test = None
        if profile.qc_unit_keys:
            unit_id = identifier(dig(payload, profile.qc_unit_keys), "unit id", profile.qc_unit_keys)
        if profile.qc_batch_keys:
            batch_id = identifier(dig(payload, profile.qc_batch_keys), "batch id", profile.qc_batch_keys)
        if profile.qc_defect_keys:
            defect = dig(payload, profile.qc_defect_keys)
        if profile.qc_test_keys:
            test = dig(payload, profile.qc_test_keys)
        return QcResult(ts=ts, line=machine.line, passed=passed,
                        test=profile.qc.test if test is None or test == "" else str(test), source=source,
                        machine=machine.id, unit_id=unit_id, batch_id=batch_id,
                        defect=None if defect is None or passed else str(defect))

    def _reject(self, msg: RawMessage, reason: str, detail: str) -> Rejection:
        manufacturer, machine = self._context
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[:MAX_DETAIL_CHARS - 1] + "…"
        return Rejection(reason=reason, detail=detail, raw=msg.value, key=msg.key, machine=machine,
                         source=Source(manufacturer, msg.topic, msg.partition, msg.offset))
