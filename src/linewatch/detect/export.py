"""One version of a machine's normal as a file: to start a new line of the same machine type from a
proven normal, or to keep a normal outside the database.

The file is JSON: a format name and number, the version's record (what it learned, from which
readings, its bands and threshold), the model's state and a SHA-256 over all of it. Reading one is
careful, because a file comes from outside: a file that is not an export, is of a newer format, or
fails its checksum is refused before anything is decoded, and the state is decoded by an unpickler
that resolves only the classes a linewatch model is made of. A state naming anything else (a
function, a module, a class of another package) is refused before it runs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
from datetime import datetime, timezone
from typing import Any

from linewatch import __version__
from linewatch.detect.versions import ModelVersion

FORMAT = "linewatch-model-version"
FORMAT_VERSION = 1

# everything a pickled MEWMA or Half-Space Trees model (with its settings, running sums and lineage) names
ALLOWED = frozenset({
    ("collections", "deque"),
    ("datetime", "datetime"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("linewatch.detect.settings", "AnomalySettings"), ("linewatch.detect.settings", "MewmaSettings"),
    ("linewatch.config", "AnomalySettings"),  # where the settings lived in files exported before
    ("linewatch.detect.anomaly", "MachineModel"), ("linewatch.detect.halfspace", "HalfSpaceForest"),
    ("linewatch.detect.moments", "SensorMoments"),
    ("linewatch.detect.mewma", "MewmaModel"), ("linewatch.detect.mewma", "MewmaSettings"),
    ("linewatch.detect.thresholds", "ScoreSums"), ("linewatch.detect.versions", "Lineage"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
})


class ExportError(ValueError):
    """A file that cannot be imported, and why."""


def export_version(version: ModelVersion) -> bytes:
    """The version (with its state) as the bytes of an export file."""
    if not version.state:
        raise ExportError(f"{version.machine} version {version.version} has no state to export "
                          "(rejected by the quality gate, or dropped by retention)")
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, "linewatch": __version__,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "version": version.to_dict(), "state_base64": base64.b64encode(version.state).decode("ascii")}
    return json.dumps({**body, "sha256": _digest(body)}, indent=1).encode()


def read_export(data: bytes, where: str = "the file") -> tuple[dict[str, Any], Any]:
    """The version's record and its model, from an export file's bytes; ExportError saying what is
    wrong with it otherwise (nothing is decoded from a file that fails a check)."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{where} is not a linewatch model export (not JSON: {exc})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ExportError(f"{where} is not a linewatch model export (no \"format\": \"{FORMAT}\")")
    number = body.get("format_version")
    if not isinstance(number, int) or number < 1:
        raise ExportError(f"{where}: format_version {number!r} is not one linewatch writes")
    if number > FORMAT_VERSION:
        raise ExportError(f"{where} was written by a newer linewatch (format {number}; this one reads up to "
                          f"{FORMAT_VERSION}): upgrade linewatch to import it")
    claimed = body.pop("sha256", None)
    if not isinstance(claimed, str) or claimed != _digest(body):
        raise ExportError(f"{where}: the checksum does not match its contents (the file was changed or damaged)")
    record = body.get("version")
    if not isinstance(record, dict) or not isinstance(body.get("state_base64"), str):
        raise ExportError(f"{where} has no version record or no state")
    try:
        state = base64.b64decode(body["state_base64"], validate=True)
    except ValueError:
        raise ExportError(f"{where}: the state is not valid base64") from None
    return record, load_state(state, where)


def load_state(state: bytes, where: str = "the file") -> Any:
    """A model from pickled state that came from outside linewatch's own database."""
    try:
        return _Restricted(io.BytesIO(state)).load()
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged state: say so rather than crash
        raise ExportError(f"{where}: the model state cannot be read ({type(exc).__name__}: {exc})") from None


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise ExportError(f"refused: the model state names {module}.{name}, which a linewatch model never "
                              "contains (the file may have been crafted to run code)")
        return super().find_class(module, name)


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
