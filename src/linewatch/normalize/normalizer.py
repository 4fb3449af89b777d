"""From a raw Kafka message to a canonical Reading, a QcResult, or a Rejection with a reason.

The normaliser never raises on input: whatever arrives ends as exactly one of the three, so the
consumer loop can account for every message.
"""

from __future__ import annotations

import json
from typing import Any

from linewatch.config import PlantConfig
from linewatch.domain import QcResult, RawMessage, Reading, Rejection, Source
from linewatch.normalize.profile import CompiledProfile, PayloadError, dig

RAW_TOPIC_PREFIX = "linewatch.raw."
QC_TOPIC = "linewatch.qc"
DEFAULT_MAX_BYTES = 1_048_576

# Reason codes: bounded, stable, used as a Prometheus label and a DLQ header.
REASONS = (
    "oversized", "not_utf8", "not_json", "not_object", "unknown_machine", "unknown_topic",
    "missing_field", "bad_timestamp", "non_numeric", "not_finite", "bad_value", "bad_unit",
    "bad_verdict", "no_sensor_values", "qc_not_configured",
)


class Normalizer:
    """Applies the plant's manufacturer profiles to raw messages."""

    def __init__(self, config: PlantConfig, max_bytes: int = DEFAULT_MAX_BYTES, raw_prefix: str = RAW_TOPIC_PREFIX,
                 qc_topic: str = QC_TOPIC):
        self.config = config
        self.max_bytes = max_bytes
        self.raw_prefix = raw_prefix
        self.qc_topic = qc_topic
        self.profiles = {name: CompiledProfile(spec, config.catalogue) for name, spec in config.profiles.items()}
        # every name a machine goes by (plant id and vendor ids) -> plant machine id
        self.aliases: dict[str, str] = {}
        for m in config.machines.values():
            self.aliases[m.id] = m.id
            for vid in m.vendor_ids:
                self.aliases[vid] = m.id

    def normalize(self, msg: RawMessage) -> Reading | QcResult | Rejection:
        """One message in, exactly one outcome out."""
        try:
            return self._normalize(msg)
        except PayloadError as exc:
            return self._reject(msg, exc.reason, exc.detail)
        except Exception as exc:  # a bug must not stop the line's monitoring: reject, keep the bytes
            return self._reject(msg, "bad_value", f"unexpected {type(exc).__name__}: {exc}")

    def _normalize(self, msg: RawMessage) -> Reading | QcResult | Rejection:
        is_qc = msg.topic == self.qc_topic
        if not is_qc and not msg.topic.startswith(self.raw_prefix):
            raise PayloadError("unknown_topic", f"topic {msg.topic!r} is neither {self.raw_prefix}* nor {self.qc_topic}")
        if len(msg.value) > self.max_bytes:
            raise PayloadError("oversized", f"payload is {len(msg.value)} bytes, the limit is {self.max_bytes}")
        try:
            text = msg.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError("not_utf8", f"payload is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PayloadError("not_json", f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise PayloadError("not_json", "payload is nested too deeply to read") from None
        if not isinstance(payload, dict):
            raise PayloadError("not_object", f"payload is a JSON {type(payload).__name__}, expected an object")

        machine_id = self._machine_hint(msg)
        if machine_id is None:
            key = msg.key.decode("utf-8", "replace") if msg.key else None
            raise PayloadError("unknown_machine", f"no configured machine matches key {key!r} or topic {msg.topic!r}")
        machine = self.config.machines[machine_id]
        profile = self.profiles[machine.manufacturer]
        if is_qc and profile.qc is None:
            raise PayloadError("qc_not_configured", f"{machine.id}'s profile ({profile.manufacturer}) has no qc section")
        if profile.machine_from == "field":
            named = dig(payload, profile.machine_keys)
            if named is None:
                raise PayloadError("missing_field", f"machine id field {'.'.join(profile.machine_keys)!r} is missing")
            resolved = self.aliases.get(str(named))
            if resolved is None:
                raise PayloadError("unknown_machine", f"machine {named!r} ({profile.manufacturer}) is not in plant.yaml")
            machine = self.config.machines[resolved]
        source = Source(profile.manufacturer, msg.topic, msg.partition, msg.offset)
        ts = profile.timestamp(payload)
        if is_qc:
            return self._qc(profile, payload, machine.id, machine.line, ts, source)
        values = profile.values(payload)
        if not values:
            raise PayloadError("no_sensor_values", f"none of {profile.manufacturer}'s mapped sensors is in the payload")
        unit_id = dig(payload, profile.unit_id_keys) if profile.unit_id_keys else None
        batch_id = dig(payload, profile.batch_id_keys) if profile.batch_id_keys else None
        return Reading(machine=machine.id, line=machine.line, ts=ts, values=values, source=source,
                       unit_id=None if unit_id is None else str(unit_id),
                       batch_id=None if batch_id is None else str(batch_id))

    def _machine_hint(self, msg: RawMessage) -> str | None:
        """The machine a message is about, from its key or else its topic name."""
        if msg.key:
            found = self.aliases.get(msg.key.decode("utf-8", "replace"))
            if found:
                return found
        if msg.topic.startswith(self.raw_prefix):
            return self.aliases.get(msg.topic[len(self.raw_prefix):])
        return None

    def _qc(self, profile: CompiledProfile, payload: dict[str, Any], machine: str, line: str, ts: Any,
            source: Source) -> QcResult:
        if profile.qc is None:
            raise PayloadError("qc_not_configured", f"profile {profile.manufacturer!r} has no qc section")
        verdict = dig(payload, profile.qc_verdict_keys)
        if verdict is None:
            raise PayloadError("missing_field", f"verdict field {profile.qc.verdict_path!r} is missing")
        token = str(verdict).upper()
        if token in profile.qc_pass:
            passed = True
        elif token in profile.qc_fail:
            passed = False
        else:
            raise PayloadError("bad_verdict", f"verdict {verdict!r} is neither a pass ({sorted(profile.qc_pass)}) "
                                              f"nor a fail ({sorted(profile.qc_fail)}) value")
        unit_id = dig(payload, profile.qc_unit_keys)
        batch_id = dig(payload, profile.qc_batch_keys)
        defect = dig(payload, profile.qc_defect_keys)
        return QcResult(ts=ts, line=line, passed=passed, test=profile.qc.test, source=source, machine=machine,
                        unit_id=None if unit_id is None else str(unit_id),
                        batch_id=None if batch_id is None else str(batch_id),
                        defect=None if defect is None or passed else str(defect))

    @staticmethod
    def _reject(msg: RawMessage, reason: str, detail: str) -> Rejection:
        return Rejection(reason=reason, detail=detail, raw=msg.value, key=msg.key,
                         source=Source("", msg.topic, msg.partition, msg.offset))
