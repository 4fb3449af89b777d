import json
from datetime import datetime, timezone

import pytest

from linewatch.domain import QcResult, RawMessage, Reading, Rejection
from linewatch.normalize.normalizer import Normalizer

UTC = timezone.utc


@pytest.fixture(scope="module")
def normalizer(config):
    return Normalizer(config)


def msg(topic: str, body, key: str | None = None) -> RawMessage:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawMessage(topic=topic, value=value, key=key.encode() if key else None, partition=0, offset=42)


def test_flat_imperial_epoch_ms(normalizer):
    r = normalizer.normalize(msg("linewatch.raw.extruder-1", {
        "machineId": "EXT-4471", "tsMs": 1763800000123, "barrelTempF": 392.0, "meltTempF": 401.0,
        "diePressurePsi": 2683.2, "screwRpm": 92.0, "motorLoadPct": 61.2}, key="extruder-1"))
    assert isinstance(r, Reading)
    assert (r.machine, r.line) == ("extruder-1", "line-1")
    assert r.ts == datetime(2025, 11, 22, 8, 26, 40, 123000, tzinfo=UTC)
    assert r.values["barrel_temperature"] == pytest.approx(200.0)
    assert r.values["melt_temperature"] == pytest.approx(205.0)
    assert r.values["die_pressure"] == pytest.approx(185.0, abs=0.01)
    assert r.values["screw_speed"] == 92.0
    assert r.source.manufacturer == "extrutec" and r.source.offset == 42


def test_nested_iso_local_time_in_berlin(normalizer):
    r = normalizer.normalize(msg("linewatch.raw.cutter-1", {
        "device": {"id": "SW-CUT-01"}, "time": "2026-07-01T12:00:00.250",
        "data": {"knife": {"speed": 1450.0}, "bearing": {"vib_rms": 3.1}, "piece": {"length_cm": 2.5}}}))
    assert isinstance(r, Reading)
    assert r.ts == datetime(2026, 7, 1, 10, 0, 0, 250000, tzinfo=UTC)  # CEST is UTC+2
    assert r.values == pytest.approx({"knife_speed": 1450.0, "cutter_vibration": 3.1, "cut_length": 25.0})


def test_tag_list_with_units_per_value(normalizer):
    r = normalizer.normalize(msg("linewatch.raw.dryer-1", {
        "ts": "2025-11-22T09:15:00.000Z",
        "tags": [{"tag": "SupplyAir.T", "value": 358.15, "unit": "K"}, {"tag": "Exhaust.RH", "value": 35, "unit": "%"},
                 {"tag": "Belt.Speed", "value": 400, "unit": "cm/min"}, {"tag": "Unmapped", "value": 1}]},
        key="dryer-1"))
    assert isinstance(r, Reading)
    assert r.values == pytest.approx({"dryer_air_temperature": 85.0, "dryer_humidity": 35.0, "dryer_belt_speed": 4.0})


def test_epoch_seconds_and_qc_verdicts(normalizer):
    r = normalizer.normalize(msg("linewatch.raw.checkweigher-1", {"station": "CW1", "t": 1763800000.5,
                                                                  "gross_g": 251.3, "belt_mpm": 42.0}))
    assert isinstance(r, Reading) and r.machine == "checkweigher-1"
    assert r.ts == datetime(2025, 11, 22, 8, 26, 40, 500000, tzinfo=UTC)
    q = normalizer.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1763800000.5, "bag": "B-1",
                                                  "verdict": "FAIL", "reason": "SEAL"}, key="checkweigher-1"))
    assert isinstance(q, QcResult)
    assert (q.passed, q.unit_id, q.defect, q.test, q.line) == (False, "B-1", "SEAL", "checkweigher", "line-1")
    ok = normalizer.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1.0, "bag": "B-2", "verdict": "pass"},
                                  key="checkweigher-1"))
    assert isinstance(ok, QcResult) and ok.passed and ok.defect is None


GOOD_EXTRUDER = {"machineId": "EXT-4471", "tsMs": 1763800000123, "barrelTempF": 392.0, "diePressurePsi": 2683.2}


@pytest.mark.parametrize(("topic", "value", "key", "reason"), [
    ("linewatch.raw.extruder-1", b"\xff\xfe not utf-8", None, "not_utf8"),
    ("linewatch.raw.extruder-1", b'{"machineId": "EXT-4471", "tsMs": 17', None, "not_json"),
    ("linewatch.raw.extruder-1", b"[1, 2, 3]", None, "not_object"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "tsMs": None}, None, "missing_field"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "tsMs": "yesterday"}, None, "bad_timestamp"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "barrelTempF": "hot"}, None, "non_numeric"),
    ("linewatch.raw.extruder-1", b'{"machineId": "EXT-4471", "tsMs": 1, "barrelTempF": NaN}', None, "not_finite"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "machineId": "EXT-9999"}, None, "unknown_machine"),
    ("linewatch.raw.mystery-9", {"x": 1}, "mystery-9", "unknown_machine"),
    ("linewatch.raw.extruder-1", {"machineId": "EXT-4471", "tsMs": 1}, None, "no_sensor_values"),
    ("somewhere.else", GOOD_EXTRUDER, None, "unknown_topic"),
    ("linewatch.qc", {"station": "CW1", "t": 1.0, "verdict": "MAYBE"}, "checkweigher-1", "bad_verdict"),
    ("linewatch.qc", {"station": "CW1", "t": 1.0, "verdict": "PASS"}, "extruder-1", "qc_not_configured"),
    ("linewatch.raw.dryer-1", {"ts": "2025-11-22T09:15:00Z", "tags": [{"tag": "SupplyAir.T", "value": 1, "unit": "psi"}]},
     "dryer-1", "bad_unit"),
    ("linewatch.raw.cutter-1", {"device": {"id": "SW-CUT-01"}, "time": "2026-13-45T99:00:00",
                                "data": {"knife": {"speed": 1.0}}}, None, "bad_timestamp"),
])
def test_bad_input_is_rejected_with_a_reason(normalizer, topic, value, key, reason):
    m = msg(topic, value, key)
    r = normalizer.normalize(m)
    assert isinstance(r, Rejection), r
    assert r.reason == reason, r.detail
    assert r.detail and r.raw == m.value and r.source.offset == 42


def test_oversized_payload(config):
    small = Normalizer(config, max_bytes=64)
    r = small.normalize(msg("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "pad": "x" * 100}))
    assert isinstance(r, Rejection) and r.reason == "oversized" and "limit is 64" in r.detail


def test_missing_sensor_is_a_gap_not_a_rejection(normalizer):
    r = normalizer.normalize(msg("linewatch.raw.extruder-1", GOOD_EXTRUDER))
    assert isinstance(r, Reading)
    assert set(r.values) == {"barrel_temperature", "die_pressure"}
