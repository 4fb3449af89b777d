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
    ok = normalizer.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "bag": "B-2", "verdict": "pass"},
                                  key="checkweigher-1"))
    assert isinstance(ok, QcResult) and ok.passed and ok.defect is None


def test_readings_carry_unit_and_batch_ids_for_genealogy(normalizer):
    cut = normalizer.normalize(msg("linewatch.raw.cutter-1", {
        "device": {"id": "SW-CUT-01"}, "time": "2026-07-01T12:00:00.250",
        "data": {"knife": {"speed": 1450.0}, "piece": {"length_cm": 2.5, "id": "U-0001234", "lot": "L-00012"}}}))
    assert isinstance(cut, Reading) and (cut.unit_id, cut.batch_id) == ("U-0001234", "L-00012")
    dry = normalizer.normalize(msg("linewatch.raw.dryer-1", {
        "ts": "2025-11-22T09:15:00.000Z", "lot": 12, "tags": [{"tag": "Exhaust.RH", "value": 35, "unit": "%"}]},
        key="dryer-1"))
    assert isinstance(dry, Reading) and (dry.unit_id, dry.batch_id) == (None, "12")  # an integer id is text
    ext = normalizer.normalize(msg("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "batchId": "L-00012"}))
    assert isinstance(ext, Reading) and (ext.unit_id, ext.batch_id) == (None, "L-00012")
    plain = normalizer.normalize(msg("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "batchId": "  "}))
    assert isinstance(plain, Reading) and plain.batch_id is None  # blank is absent
    drifted = {f for d in normalizer.schema_drift for f in d.fields}
    assert not drifted & {"batchId", "lot", "data.piece.id", "data.piece.lot"}  # mapped, so not reported as new


@pytest.mark.parametrize("bad", [{"lot": 12}, [12], 12.5, True])
def test_an_id_that_no_other_message_could_match_is_rejected(normalizer, bad):
    r = normalizer.normalize(msg("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "batchId": bad}))
    assert isinstance(r, Rejection) and r.reason == "bad_value" and "batchId" in r.detail
    q = normalizer.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "bag": bad, "verdict": "PASS"}, key="checkweigher-1"))
    assert isinstance(q, Rejection) and q.reason == "bad_value" and "bag" in q.detail


def test_qc_names_the_lot_and_the_test_when_the_payload_does(normalizer):
    bag = normalizer.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "bag": "U-7", "lot": "L-3",
                                                    "verdict": "PASS"}, key="checkweigher-1"))
    assert (bag.unit_id, bag.batch_id, bag.test) == ("U-7", "L-3", "checkweigher")
    crush = normalizer.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "lot": "L-3", "test": "crush",
                                                      "verdict": "FAIL", "reason": "BRITTLE"}, key="checkweigher-1"))
    assert (crush.unit_id, crush.batch_id, crush.test, crush.defect) == (None, "L-3", "crush", "BRITTLE")


def test_qc_fields_the_profile_does_not_name_are_absent(config, tmp_path):
    """A profile without qc.batch_id_path (or defect_path) must not read the whole payload as the id."""
    import shutil

    from linewatch.config import load_config

    shutil.copytree(config.directory, tmp_path / "c")
    prof = tmp_path / "c" / "manufacturers" / "weighpro.yaml"
    text = prof.read_text()
    for line in ("  batch_id_path: lot\n", "  defect_path: reason\n"):
        assert line in text
        text = text.replace(line, "")
    prof.write_text(text)
    n = Normalizer(load_config(tmp_path / "c"))
    q = n.normalize(msg("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "bag": "U-1", "lot": "L-1", "verdict": "FAIL"}, key="checkweigher-1"))
    assert isinstance(q, QcResult) and (q.unit_id, q.batch_id, q.defect) == ("U-1", None, None)


GOOD_EXTRUDER = {"machineId": "EXT-4471", "tsMs": 1763800000123, "barrelTempF": 392.0, "diePressurePsi": 2683.2}


@pytest.mark.parametrize(("topic", "value", "key", "reason"), [
    ("linewatch.raw.extruder-1", b"\xff\xfe not utf-8", None, "not_utf8"),
    ("linewatch.raw.extruder-1", b'{"machineId": "EXT-4471", "tsMs": 17', None, "not_json"),
    ("linewatch.raw.extruder-1", b"[1, 2, 3]", None, "not_object"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "tsMs": None}, None, "missing_field"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "tsMs": "yesterday"}, None, "bad_timestamp"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "barrelTempF": "hot"}, None, "non_numeric"),
    # NaN and Infinity are not JSON (RFC 8259): the strict parser refuses them as such
    ("linewatch.raw.extruder-1", b'{"machineId": "EXT-4471", "tsMs": 1, "barrelTempF": NaN}', None, "not_json"),
    ("linewatch.raw.extruder-1", b'{"machineId": "EXT-4471", "tsMs": 1, "barrelTempF": 1e999}', None, "not_json"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "machineId": "EXT-9999"}, None, "unknown_machine"),
    ("linewatch.raw.mystery-9", {"x": 1}, "mystery-9", "unknown_machine"),
    # a payload never speaks for another machine: not across manufacturers, not across topics and keys
    ("linewatch.raw.extruder-1", {"machineId": "CW1", "tsMs": 1763800000123, "barrelTempF": 392.1}, "extruder-1",
     "machine_mismatch"),
    ("linewatch.qc", {"station": "EXT-4471", "t": 1763800001.0, "verdict": "PASS"}, "checkweigher-1", "machine_mismatch"),
    ("linewatch.raw.extruder-1", GOOD_EXTRUDER, "checkweigher-1", "machine_mismatch"),
    ("linewatch.raw.extruder-1", {"machineId": "EXT-4471", "tsMs": 1763800000123}, None, "no_sensor_values"),
    # a controller whose clock was reset counts from 1970 or 2000: not a reading of today
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "tsMs": 0}, None, "bad_timestamp"),
    ("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "tsMs": 946_684_800_000}, None, "bad_timestamp"),
    ("linewatch.raw.dryer-1", {"ts": "0001-01-01T00:00:00Z", "tags": [{"tag": "SupplyAir.T", "value": 85.0,
                                                                      "unit": "degC"}]}, "dryer-1", "bad_timestamp"),
    ("linewatch.qc", {"station": "CW1", "t": 0, "bag": "B-1", "verdict": "PASS"}, "checkweigher-1", "bad_timestamp"),
    ("somewhere.else", GOOD_EXTRUDER, None, "unknown_topic"),
    ("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "verdict": "MAYBE"}, "checkweigher-1", "bad_verdict"),
    ("linewatch.qc", {"station": "CW1", "t": 1763800001.0, "verdict": "PASS"}, "extruder-1", "qc_not_configured"),
    ("linewatch.raw.dryer-1", {"ts": "2025-11-22T09:15:00Z", "tags": [{"tag": "SupplyAir.T", "value": 1, "unit": "psi"}]},
     "dryer-1", "bad_unit"),
    ("linewatch.raw.dryer-1", {"ts": "2025-11-22T09:15:00Z", "tags": [{"tag": "Exhaust.RH", "value": 35.1, "unit": ""}]},
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


def cutter(local_time: str) -> RawMessage:
    return msg("linewatch.raw.cutter-1", {"device": {"id": "SW-CUT-01"}, "time": local_time,
                                          "data": {"knife": {"speed": 1450.0}}})


def test_repeated_hour_at_the_end_of_summer_time_keeps_time_moving_forward(config):
    n = Normalizer(config)
    # 2025-10-26 in Berlin: 02:00-03:00 happens twice (first CEST = UTC+2, then CET = UTC+1)
    times = ["2025-10-26T01:59:00", "2025-10-26T02:30:00", "2025-10-26T02:59:00", "2025-10-26T02:00:30",
             "2025-10-26T02:30:00", "2025-10-26T03:00:00"]
    utc = [n.normalize(cutter(t)).ts for t in times]
    assert utc == sorted(utc)
    assert utc[1] == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # the first 02:30, CEST
    assert utc[4] == datetime(2025, 10, 26, 1, 30, tzinfo=UTC)  # the second 02:30, CET
    assert utc[5] == datetime(2025, 10, 26, 2, 0, tzinfo=UTC)


def test_spring_forward_gap_is_read_with_the_offset_before_it(config):
    r = Normalizer(config).normalize(cutter("2025-03-30T02:30:00"))  # does not exist in Berlin
    assert r.ts == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)


def test_reading_from_the_future_is_rejected_as_clock_skew(config):
    now = datetime(2025, 11, 22, 8, 0, tzinfo=UTC).timestamp()
    n = Normalizer(config, clock=lambda: now)
    ok = n.normalize(msg("linewatch.raw.checkweigher-1", {"station": "CW1", "t": now + 60, "gross_g": 250.0}))
    assert isinstance(ok, Reading)
    ahead = n.normalize(msg("linewatch.raw.checkweigher-1", {"station": "CW1", "t": now + 7200, "gross_g": 250.0}))
    assert isinstance(ahead, Rejection) and ahead.reason == "future_timestamp"
    assert ahead.machine == "checkweigher-1" and ahead.source.manufacturer == "weighpro"
    assert "7,200 s ahead" in ahead.detail


def test_per_machine_calibration(config, tmp_path):
    import shutil

    from linewatch.config import load_config

    shutil.copytree(config.directory, tmp_path / "c")
    plant = tmp_path / "c" / "plant.yaml"
    plant.write_text(plant.read_text().replace(
        "            vendor_ids: [CW1]\n",
        "            vendor_ids: [CW1]\n            calibration:\n              product_weight: {scale: 1.0, offset: -1.5}\n"))
    n = Normalizer(load_config(tmp_path / "c"))
    r = n.normalize(msg("linewatch.raw.checkweigher-1", {"station": "CW1", "t": 1763800001.0, "gross_g": 251.5}))
    assert r.values["product_weight"] == pytest.approx(250.0)


def test_unknown_machines_can_be_accepted_under_a_default_profile(config, tmp_path):
    import shutil

    from linewatch.config import load_config

    shutil.copytree(config.directory, tmp_path / "c")
    plant = tmp_path / "c" / "plant.yaml"
    plant.write_text(plant.read_text() + "\nunknown_machines: {policy: accept, profile: weighpro, line: line-1}\n")
    n = Normalizer(load_config(tmp_path / "c"))
    r = n.normalize(msg("linewatch.raw.checkweigher-9", {"station": "checkweigher-9", "t": 1763800001.0, "gross_g": 250.0},
                        key="checkweigher-9"))
    assert isinstance(r, Reading) and r.machine == "checkweigher-9" and r.line == "line-1"


def test_a_tag_without_a_unit_is_read_in_the_profiles_unit_and_refused_when_there_is_none(normalizer, config,
                                                                                            tmp_path):
    import shutil

    from linewatch.config import load_config

    bare = {"ts": "2025-11-22T09:15:00Z", "tags": [{"tag": "SupplyAir.T", "value": 358.15}]}
    for body in (bare, {**bare, "tags": [{**bare["tags"][0], "unit": None}]}):
        r = normalizer.normalize(msg("linewatch.raw.dryer-1", body, key="dryer-1"))
        assert isinstance(r, Reading) and r.values["dryer_air_temperature"] == pytest.approx(85.0)  # kelvin, as declared
    shutil.copytree(config.directory, tmp_path / "c")
    profile = tmp_path / "c" / "manufacturers" / "thermaflow.yaml"
    profile.write_text(profile.read_text().replace(", unit: K,     units: [degF]}", "}"))
    r = Normalizer(load_config(tmp_path / "c")).normalize(msg("linewatch.raw.dryer-1", bare, key="dryer-1"))
    assert isinstance(r, Rejection) and r.reason == "bad_unit" and "gives no unit" in r.detail


def test_new_fields_are_reported_once_per_machine_and_not_rejected(normalizer):
    body = {"station": "CW1", "t": 1763800001.0, "gross_g": 250.0, "tare_g": 2.0}
    n_before = len(normalizer.schema_drift)
    for i in range(3):
        assert isinstance(normalizer.normalize(msg("linewatch.raw.checkweigher-1", {**body, "t": 1763800001.0 + i})), Reading)
    drift = normalizer.schema_drift[n_before:]
    assert len(drift) == 1 and drift[0].fields == ("tare_g",) and drift[0].machine == "checkweigher-1"


def test_rejection_names_profile_and_machine_when_known(normalizer):
    r = normalizer.normalize(msg("linewatch.raw.extruder-1", {**GOOD_EXTRUDER, "barrelTempF": "hot"}))
    assert (r.source.manufacturer, r.machine) == ("extrutec", "extruder-1")


def test_the_earliest_believable_time_is_a_setting(config):
    import dataclasses

    from linewatch.config import DataQualitySettings

    old = {**GOOD_EXTRUDER, "tsMs": 800_000_000_000}  # 1995, from a historian being replayed
    refused = Normalizer(config).normalize(msg("linewatch.raw.extruder-1", old))
    assert isinstance(refused, Rejection) and refused.reason == "bad_timestamp"
    assert "1995-05-09" in refused.detail and "earliest_timestamp" in refused.detail
    dq = DataQualitySettings(earliest_timestamp="1990-01-01")  # as plant.yaml gives it: midnight UTC
    assert dq.earliest_timestamp == datetime(1990, 1, 1, tzinfo=timezone.utc)
    older = dataclasses.replace(config, detection=config.detection.model_copy(update={"data_quality": dq}))
    assert isinstance(Normalizer(older).normalize(msg("linewatch.raw.extruder-1", old)), Reading)


def test_a_tag_names_only_the_units_its_profile_allows_and_none_is_parsed(normalizer, monkeypatch):
    """The profile lists the units a tag may name; anything else is bad_unit, decided by a look-up, so
    no unit text from a message ever reaches the unit parser (pint evaluates arithmetic)."""
    import linewatch.normalize.units as units

    def tag(unit):
        return msg("linewatch.raw.dryer-1", {"ts": "2025-11-22T09:15:00Z",
                                            "tags": [{"tag": "SupplyAir.T", "value": 185.0, "unit": unit}]}, key="dryer-1")

    monkeypatch.setattr(units, "_registry", lambda: pytest.fail("a unit from a message was parsed"))
    for unit, celsius in (("K", 185.0 - 273.15), ("degF", 85.0), ("degC", 185.0)):  # declared, listed, catalogue's
        r = normalizer.normalize(tag(unit))
        assert isinstance(r, Reading) and r.values["dryer_air_temperature"] == pytest.approx(celsius), unit
    for unit in ("degR", "kelvin", "9**9**9*K", "m", "x" * 100_000, 7, ["K"]):
        r = normalizer.normalize(tag(unit))
        assert isinstance(r, Rejection) and r.reason == "bad_unit", unit
        assert "K, degC, degF" in r.detail and "units:" in r.detail and len(r.detail) < 400
