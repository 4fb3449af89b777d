"""What every per-machine anomaly model answers, and the one place that picks a model's kind.

The plant chooses the kind (``detection.anomaly.model``): Half-Space Trees (``detect/anomaly.py``) or
the MEWMA (``detect/mewma.py``). The pipeline, the checkpoints and the evaluations talk to either
through ``AnomalyModel`` and make one through ``make_model``, so adding a kind is one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from linewatch.detect.settings import AnomalySettings
from linewatch.detect.anomaly import MachineModel
from linewatch.detect.mewma import MewmaModel
from linewatch.detect.settings import MewmaSettings
from linewatch.detect.rows import Part
from linewatch.detect.verdict import Phase, Verdict, Verdicts

__all__ = ["MODEL_KINDS", "AnomalyModel", "make_model", "model_class"]

MODEL_KINDS: dict[str, type[MachineModel] | type[MewmaModel]] = {"halfspace": MachineModel, "mewma": MewmaModel}


@runtime_checkable
class AnomalyModel(Protocol):
    """One machine's anomaly model: learns its normal, then scores readings against it."""

    machine: str
    sensors: tuple[str, ...] | None  # the modelled sensors, fixed by the first reading (None: not yet)
    last: dict[str, float]  # each sensor's last value (a reading that misses one keeps it)

    @property
    def phase(self) -> Phase: ...

    def score_one(self, values: Mapping[str, float]) -> Verdict: ...

    def score_batch(self, readings: Sequence[Mapping[str, float]]) -> Verdicts: ...

    def score_parts(self, parts: Sequence[Part]) -> Verdicts: ...

    def normal_range(self) -> dict[str, tuple[float, float]]: ...

    def calibration_summary(self) -> dict[str, int] | None: ...

    def start_new_normal(self) -> None: ...


def model_class(kind: str) -> type[MachineModel] | type[MewmaModel]:
    """The class of a model kind; a clear error for a kind that does not exist."""
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown anomaly model {kind!r}; choose one of {', '.join(MODEL_KINDS)}") from None


def make_model(machine: str, settings: AnomalySettings, kind: str | None = None,
               mewma: MewmaSettings | None = None) -> AnomalyModel:
    """A new model for ``machine``, of ``kind`` (default: the plant's, ``settings.model``); ``mewma``
    overrides the MEWMA's knobs (the evaluations' comparisons). Half-Space Trees models all share one
    seed: every machine has the same (random) trees and keeps its own masses."""
    cls = model_class(kind or settings.model)
    if cls is MewmaModel:
        return MewmaModel(machine, settings, mewma=mewma)
    return MachineModel(machine, settings)
