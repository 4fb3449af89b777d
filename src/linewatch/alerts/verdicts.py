"""What people judged the alerts to be, summed up per machine: each detector's live precision.

An alert a person marks ``true_alarm`` was worth raising, one marked ``false_alarm`` was not. Over a
machine's alerts, the share judged true (of those judged true or false) is the figure a plant uses to
decide which machines' models it trusts, and the median time to a person's first response says
whether anyone looks at them. ``new_normal`` and ``unclear`` count as judged but in neither share: a
new normal was a real change, yet not one the plant wanted warned about; unclear is no answer.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from linewatch.domain import AlertVerdict


@dataclass(frozen=True, slots=True)
class Judged:
    """One alert as far as its judgement goes (a row of ``AlertStore.judgements``)."""

    line: str
    machine: str | None
    kind: str
    started_at: datetime
    verdict: AlertVerdict | None = None
    acked_at: datetime | None = None
    resolved_by: str | None = None
    ended_at: datetime | None = None
    model_version: int | None = None  # the version of the machine's normal that raised it (anomaly alerts)
    recipe: str | None = None  # the recipe being made when it was raised (anomaly alerts)

    @property
    def first_response(self) -> datetime | None:
        """When a person first acted on it: the acknowledgement, or a resolution by hand without one."""
        if self.acked_at is not None:
            return self.acked_at
        return self.ended_at if self.resolved_by is not None else None


@dataclass(frozen=True, slots=True)
class VerdictSummary:
    """One machine's alerts (``machine`` None: a line's own, e.g. its failure rate) and their verdicts."""

    line: str
    machine: str | None
    raised: int
    verdicts: dict[str, int] = field(default_factory=dict)
    median_seconds_to_acknowledge: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)
    model_version: int | None = None  # when summed up per version: which one

    @property
    def judged(self) -> int:
        return sum(self.verdicts.values())

    @property
    def true_share(self) -> float | None:
        """Alerts judged true over those judged true or false; None before any is."""
        true = self.verdicts.get(AlertVerdict.TRUE_ALARM.value, 0)
        false = self.verdicts.get(AlertVerdict.FALSE_ALARM.value, 0)
        return None if true + false == 0 else true / (true + false)

    def to_dict(self) -> dict[str, Any]:
        share = self.true_share
        median = self.median_seconds_to_acknowledge
        return {"line": self.line, "machine": self.machine, "raised": self.raised, "judged": self.judged,
                "unjudged": self.raised - self.judged,
                "verdicts": {v.value: self.verdicts.get(v.value, 0) for v in AlertVerdict},
                "true_share": None if share is None else round(share, 4),
                "median_seconds_to_acknowledge": None if median is None else round(median, 1),
                "kinds": dict(sorted(self.kinds.items())),
                **({} if self.model_version is None else {"model_version": self.model_version})}


def summarise(alerts: Iterable[Judged], per_version: bool = False) -> list[VerdictSummary]:
    """Per (line, machine), in that order: alerts raised, verdicts, median time to first response.
    ``per_version``: per version of the machine's normal too, over the alerts that name one (anomaly
    alerts): the live precision of each model a machine has had."""
    groups: dict[tuple[str, str, int], list[Judged]] = {}
    for a in alerts:
        if per_version and a.model_version is None:
            continue
        groups.setdefault((a.line, a.machine or "", (a.model_version or 0) if per_version else -1), []).append(a)
    out = []
    for (line, machine, version), mine in sorted(groups.items()):
        verdicts: dict[str, int] = {}
        kinds: dict[str, int] = {}
        waits = []
        for a in mine:
            kinds[a.kind] = kinds.get(a.kind, 0) + 1
            if a.verdict is not None:
                verdicts[a.verdict.value] = verdicts.get(a.verdict.value, 0) + 1
            if (first := a.first_response) is not None:
                waits.append(max(0.0, (first - a.started_at).total_seconds()))
        out.append(VerdictSummary(line=line, machine=machine or None, raised=len(mine), verdicts=verdicts,
                                  median_seconds_to_acknowledge=statistics.median(waits) if waits else None,
                                  kinds=kinds, model_version=version if per_version else None))
    return out
