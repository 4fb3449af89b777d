import pickle
from datetime import datetime, timedelta, timezone

from linewatch.detect.versions import FIRST_CALIBRATION, NEW_NORMAL, Lineage, ModelVersion, version_id

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def test_a_lineage_counts_versions_and_forgets_who_asked_once_learned():
    lineage = Lineage()
    assert lineage.reason == FIRST_CALIBRATION
    assert lineage.learned(T0) == 1 and lineage.made_at == T0
    lineage.relearn(NEW_NORMAL, "eng-3", "recipe B")
    lineage.learning_since, lineage.readings_since = T0, 700
    assert (lineage.reason, lineage.by, lineage.note) == (NEW_NORMAL, "eng-3", "recipe B")
    assert lineage.learned(T0 + timedelta(hours=1)) == 2
    assert (lineage.by, lineage.note, lineage.learning_since, lineage.readings_since) == (None, None, None, 0)
    assert pickle.loads(pickle.dumps(lineage)) == lineage  # it travels in the model's checkpoint


def test_version_ids_are_the_same_for_the_same_version_and_differ_otherwise():
    assert version_id("extruder-1", None, 1, T0) == version_id("extruder-1", None, 1, T0)
    assert version_id("extruder-1", None, 1, T0) != version_id("extruder-1", "B", 1, T0)
    assert version_id("extruder-1", None, 1, T0) != version_id("extruder-1", None, 2, T0)


def test_the_json_form_leaves_the_state_out():
    v = ModelVersion(id="x", machine="m", line="l", recipe=None, version=1, kind="mewma", settings={},
                     reason=FIRST_CALIBRATION, made_at=T0, readings=700, learned_from=T0 - timedelta(seconds=699),
                     threshold=1.0, normal_ranges={"a": [0.0, 1.0]}, calibration=None, state=b"big")
    body = v.to_dict()
    assert "state" not in body and body["learned_until"] == body["made_at"] == "2026-01-05T06:00:00.000Z"
    assert body["status"] == "active" and body["state_kept"] is True
