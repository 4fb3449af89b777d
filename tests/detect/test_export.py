"""Export files of a model version: what reading one refuses, before anything in it runs."""

import base64
import json
import os
import pickle

import pytest

from linewatch.detect.export import ExportError, export_version, read_export
from linewatch.detect.versions import ModelVersion
from tests.detect.test_versions import T0


def exported(state: bytes, **changes) -> bytes:
    v = ModelVersion(id="x", machine="extruder-1", line="line-1", recipe=None, version=1, kind="mewma", settings={},
                     reason="first_calibration", made_at=T0, readings=700, learned_from=T0, threshold=1.0,
                     normal_ranges={"die_pressure": [180.0, 190.0]}, calibration=None, state=state)
    body = json.loads(export_version(v))
    body.update(changes)
    return json.dumps(body).encode()


def test_a_version_round_trips_through_its_file():
    from collections import deque

    record, model = read_export(exported(pickle.dumps(deque([1.0, 2.0]))))
    assert record["machine"] == "extruder-1" and record["normal_ranges"] == {"die_pressure": [180.0, 190.0]}
    assert list(model) == [1.0, 2.0]


@pytest.mark.parametrize("data, says", [
    (b"\x89PNG not json", "not JSON"),
    (b'{"format": "something-else"}', "not a linewatch model export"),
    (b"[1, 2]", "not a linewatch model export"),
])
def test_files_that_are_not_exports_are_refused(data, says):
    with pytest.raises(ExportError, match=says):
        read_export(data, "x.json")


def test_a_newer_format_and_a_broken_checksum_are_refused():
    with pytest.raises(ExportError, match="newer linewatch"):
        read_export(exported(pickle.dumps(1), format_version=99))
    body = json.loads(exported(pickle.dumps(1)))
    body["version"]["normal_ranges"]["die_pressure"] = [0.0, 400.0]  # edited by hand
    with pytest.raises(ExportError, match="checksum does not match"):
        read_export(json.dumps(body).encode())


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_state_crafted_to_run_code_is_refused_before_it_runs(tmp_path):
    target = tmp_path / "pwned"
    body = json.loads(exported(pickle.dumps(_Payload(target))))  # a valid checksum: anyone can compute one
    with pytest.raises(ExportError, match=r"names (posix|os)\.system"):
        read_export(json.dumps(body).encode())
    assert not target.exists()
    damaged = exported(b"not a pickle")
    body = json.loads(damaged)
    assert base64.b64decode(body["state_base64"]) == b"not a pickle"
    with pytest.raises(ExportError, match="cannot be read"):
        read_export(damaged)


def test_a_version_without_state_cannot_be_exported():
    v = ModelVersion(id="x", machine="m", line="l", recipe=None, version=2, kind="mewma", settings={},
                     reason="new_normal", made_at=T0, readings=700, learned_from=T0, threshold=1.0,
                     normal_ranges={}, calibration=None, state=b"", status="rejected")
    with pytest.raises(ExportError, match="no state"):
        export_version(v)
