"""Versions of a machine's normal: every time a model finishes learning, what it learned is a version.

A plant's models change: a first calibration, an operator's "new normal", a profile that maps other
sensors. Each time a model finishes calibrating, the pipeline records a ``ModelVersion``: which
machine and recipe, what kind of model with which settings, why it was learned and at whose word,
the readings it learned from, its threshold, the normal band of each sensor and how its thresholds
were calibrated, with the model's state at that moment. Every anomaly alert names the version that
raised it, so "which model raised this alert, and what was normal then?" has an answer.

``Lineage`` travels with the model (in its checkpoint): which version it is on, and, while it learns
the next one, since when and why. Its numbers are deterministic, so a batch replayed after a crash or
a hand-over makes the same version with the same id, and saving it again changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FIRST_CALIBRATION = "first_calibration"  # the machine's (or recipe's) first normal
NEW_NORMAL = "new_normal"  # a person said the machine's behaviour now is its normal
SENSORS_CHANGED = "sensors_changed"  # the machine's profile maps other sensors: learned again
RECORDED_AT_UPGRADE = "recorded_at_upgrade"  # calibrated before linewatch recorded versions
MODEL_CHANGED = "model_changed"  # the plant switched the model kind: a new model learned afresh
IMPORTED = "imported"  # taken from an export file of another machine (or plant) of the same type
REASONS = (FIRST_CALIBRATION, NEW_NORMAL, SENSORS_CHANGED, RECORDED_AT_UPGRADE, MODEL_CHANGED, IMPORTED)

# a version's status: the one in use, one a later version replaced, or a relearned normal the quality
# gate kept out of use (the model before it stayed)
ACTIVE, SUPERSEDED, REJECTED = "active", "superseded", "rejected"

_NAMESPACE = uuid.UUID("0f5a3c9e-2d7b-4f6e-9a51-6c2e8d4b7a13")


@dataclass
class Lineage:
    """Which version of its normal a model is on (0: none yet), and why the next one is being learned."""

    version: int = 0
    made_at: datetime | None = None  # line time the version in use finished learning
    # the highest version number the machine and recipe have had: after a rollback to an earlier
    # version, the next one learned numbers on from here, not from the one in use
    highest: int = 0
    reason: str = FIRST_CALIBRATION
    by: str | None = None  # the person whose action started the relearning
    note: str | None = None
    learning_since: datetime | None = None  # line time of the first reading the next version learns from
    readings_since: int = 0  # readings scored since then
    # the quality gate (a relearned normal runs in shadow before it goes live): the model that was in use
    # when the relearning started (pickled, with its own lineage), to put back if the candidate fails
    previous: bytes | None = field(default=None, repr=False)
    shadow_left: int = 0  # readings the candidate still scores in shadow (0: not in shadow)
    shadow_readings: int = 0  # readings it scored in shadow so far
    shadow_alarms: int = 0  # of which it would have raised an alert on
    # what the candidate learned, recorded as a version once the gate has decided
    candidate: dict[str, Any] | None = None

    def relearn(self, reason: str, by: str | None = None, note: str | None = None) -> None:
        """The model starts learning again (its next version), for ``reason``."""
        self.reason, self.by, self.note = reason, by, note
        self.learning_since, self.readings_since = None, 0
        self.shadow_left = self.shadow_readings = self.shadow_alarms = 0
        self.candidate = None

    def learned(self, made_at: datetime) -> int:
        """The model has finished learning: it is on its next version now; returns that number."""
        self.version = self.highest = max(self.version, self.highest) + 1
        self.made_at = made_at
        self.by, self.note = None, None
        self.learning_since, self.readings_since = None, 0
        self.previous, self.candidate = None, None
        self.shadow_left = self.shadow_readings = self.shadow_alarms = 0
        return self.version

    @property
    def in_shadow(self) -> bool:
        return self.shadow_left > 0


def implausible_bands(normal_ranges: dict[str, list[float]], plausible: dict[str, tuple[float, float]]) -> list[str]:
    """Sensors whose learned normal the catalogue's physically plausible range contradicts: its centre
    outside the range, or a band wider than the whole range (a normal learned from noise). A band that
    merely reaches past a limit (a motor idling at 3 ± 2 %) is plausible."""
    out = []
    for sensor, (lo, hi) in sorted(normal_ranges.items()):
        if sensor not in plausible:
            continue
        low, high = plausible[sensor]
        if not low <= (lo + hi) / 2 <= high or hi - lo > high - low:
            out.append(f"{sensor} {lo:g}–{hi:g} (plausible {low:g}–{high:g})")
    return out


@dataclass(frozen=True)
class Recorded:
    """The newest version on record for a machine and recipe. A model made afresh numbers on from it,
    unless it has just learned that very version again from the same readings (the worker that learned
    it lost its state before a checkpoint, and its partitions were read again)."""

    version: int
    made_at: datetime  # line time of the last reading it learned from
    reason: str


def version_id(machine: str, recipe: str | None, version: int, made_at: datetime) -> str:
    """Deterministic id of one version: a replay makes the same one."""
    return str(uuid.uuid5(_NAMESPACE, f"{machine}|{recipe or ''}|{version}|{made_at.isoformat()}"))


@dataclass(frozen=True)
class ModelVersion:
    """What one model learned, as recorded when it finished learning."""

    id: str
    machine: str
    line: str
    recipe: str | None
    version: int
    kind: str  # "mewma" or "halfspace"
    settings: dict[str, Any]
    reason: str
    made_at: datetime  # line time of the last reading it learned from: it monitors from the next one
    readings: int  # readings it learned from (warm-up and calibration)
    learned_from: datetime | None  # line time of the first of them (None: before versions were recorded)
    threshold: float | None  # the main chart's limit (MEWMA: on its EWMA T²; Half-Space Trees: on its score)
    normal_ranges: dict[str, list[float]]
    calibration: dict[str, int] | None
    made_by: str | None = None
    note: str | None = None
    state: bytes = field(default=b"", repr=False)  # the model as it was then (pickled: only linewatch writes it)
    status: str = ACTIVE
    state_kept: bool = True
    # the quality gate's decision on a relearned normal (its shadow run): readings, alarms, share, bound,
    # implausible bands, promoted or rejected; None for a version that went live at once
    gate: dict[str, Any] | None = None  # False once retention has dropped its state (the record stays)

    def to_dict(self) -> dict[str, Any]:
        """The version's JSON form (without its state)."""
        return {"id": self.id, "machine": self.machine, "line": self.line, "recipe": self.recipe,
                "version": self.version, "kind": self.kind, "settings": self.settings, "reason": self.reason,
                "made_by": self.made_by, "note": self.note, "made_at": _iso(self.made_at),
                "learned_from": _iso(self.learned_from), "learned_until": _iso(self.made_at),
                "readings": self.readings, "threshold": self.threshold, "normal_ranges": self.normal_ranges,
                "calibration": self.calibration, "gate": self.gate, "status": self.status,
                "state_kept": self.state_kept}


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
