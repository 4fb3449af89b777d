"""Genealogy: which machines made the unit or batch a QC result is about, and each machine's failure rate.

A line's QC results say that a unit (a bag, a part) or a batch (a lot) passed or failed; the line's
monitor (:class:`~linewatch.detect.failure_rate.FailureRateMonitor`) can only say that the *line* got
worse. Readings that carry a ``unit_id`` and/or a ``batch_id`` say which machine handled which unit and
which batch, so a QC result can be attributed to the machines that made what it tested:

- a unit test attributes to the machines that handled that unit, plus the machines that processed its
  batch as a whole (the extruder running the lot, the dryer it went through), but not to the machines
  that handled the batch's *other* units (the other cutter): those did not touch the unit tested;
- a batch test (destructive, on a sample) attributes to every machine that processed the batch itself
  or any unit of it, since the sample could have come from any of them.

Memory is bounded: the genealogy remembers the most recently seen ``horizon_units`` units and
``horizon_batches`` batches (least recently used are forgotten first), because a line makes units
forever and a QC result arrives minutes to hours after its unit was made, never weeks. A QC result
whose unit and batch are both unknown (never seen, or forgotten) is counted as unattributable.

:class:`MachineFailureRates` holds one unchanged ``FailureRateMonitor`` per machine and feeds each with
the QC results attributed to that machine.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, replace

from linewatch.config import FailureRateSettings, GenealogySettings
from linewatch.detect.failure_rate import FailureRateMonitor, RateVerdict
from linewatch.domain import QcResult, Reading

Machines = tuple[str, ...]  # a handful of machine ids: a tuple is smaller than a set and as quick to search

# Why a QC result could not be attributed: bounded and stable, fit for a metric label.
UNATTRIBUTED_REASONS = ("no_ids", "unknown_unit", "unknown_batch")


@dataclass(slots=True)  # not frozen: one is made per QC result
class Attribution:
    """The machines a QC result is attributed to, and what the attribution rests on.

    ``basis`` is ``"unit"`` (the unit was known), ``"batch"`` (a batch test, or a unit test whose unit
    was unknown but whose batch was known: then only the machines that processed the batch as a whole
    are named), or ``"none"`` (nothing known; ``machines`` is at most the station that tested it).
    """

    machines: Machines
    basis: str
    reason: str | None = None  # one of UNATTRIBUTED_REASONS when basis is "none"


@dataclass(slots=True)
class _Batch:
    direct: Machines = ()  # machines that processed the batch as a whole (readings with only a batch id)
    via_units: Machines = ()  # machines that handled any of its units


def _add(machines: Machines, machine: str) -> Machines:
    return machines if machine in machines else machines + (machine,)


def _union(a: Machines, b: Machines) -> Machines:
    for m in b:
        a = _add(a, m)
    return a


class Genealogy:
    """Which machines handled which unit and batch, and which batch each unit belongs to, for recent ones.

    Parameters
    ----------
    horizon_units
        Units remembered; the least recently recorded or asked about is forgotten first. About 400
        bytes each with their ids, so the default 50,000 is ~20 MB per line (~1.5 MB pickled).
    horizon_batches
        Batches remembered, likewise.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from linewatch.domain import QcResult, Reading, Source
    >>> t, src = datetime(2026, 1, 5, tzinfo=timezone.utc), Source("sim", "t")
    >>> g = Genealogy()
    >>> g.record(Reading("extruder-1", "line-1", t, {}, src, batch_id="L-1"))
    >>> g.record(Reading("cutter-1", "line-1", t, {}, src, unit_id="U-1", batch_id="L-1"))
    >>> g.record(Reading("cutter-2", "line-1", t, {}, src, unit_id="U-2", batch_id="L-1"))
    >>> g.attribute(QcResult(t, "line-1", False, "bag", src, unit_id="U-1")).machines
    ('cutter-1', 'extruder-1')
    >>> g.attribute(QcResult(t, "line-1", False, "crush", src, batch_id="L-1")).machines
    ('extruder-1', 'cutter-1', 'cutter-2')
    """

    def __init__(self, horizon_units: int = 50_000, horizon_batches: int = 5_000):
        if horizon_units < 1 or horizon_batches < 1:
            raise ValueError("horizons must be at least 1")
        self.horizon_units = horizon_units
        self.horizon_batches = horizon_batches
        # unit id -> (machines that handled it, its batch id); OrderedDict for O(1) LRU moves and evictions
        self.units: OrderedDict[str, tuple[Machines, str | None]] = OrderedDict()
        self.batches: OrderedDict[str, _Batch] = OrderedDict()
        self.forgotten_units = 0
        self.forgotten_batches = 0
        self.unattributed: dict[str, int] = dict.fromkeys(UNATTRIBUTED_REASONS, 0)

    # ------------------------------------------------------------ recording

    def record(self, reading: Reading) -> None:
        """A machine handled ``reading.unit_id`` (in ``reading.batch_id``), or, with only a batch id, the batch."""
        if reading.unit_id is not None or reading.batch_id is not None:
            self.touch(reading.machine, reading.unit_id, reading.batch_id)

    def touch(self, machine: str, unit_id: str | None, batch_id: str | None) -> None:
        """``machine`` handled the unit (which belongs to ``batch_id``), or the batch as a whole."""
        if unit_id is None:
            if batch_id is not None:
                batch = self._batch(batch_id, create=True)
                assert batch is not None
                batch.direct = _add(batch.direct, machine)
            return
        units = self.units
        known = units.get(unit_id)
        if known is None:
            machines: Machines = (machine,)
            linked = batch_id
            units[unit_id] = (machines, linked)
            if len(units) > self.horizon_units:
                units.popitem(last=False)
                self.forgotten_units += 1
        else:
            machines, linked = known
            machines = _add(machines, machine)
            if batch_id is not None:
                linked = batch_id  # the latest word on a unit's batch wins (a unit re-lotted is rare)
            units[unit_id] = (machines, linked)
            units.move_to_end(unit_id)
        if linked is not None:
            # the batch learns every machine that handled one of its units, so a batch test can name them
            # even after the unit itself is forgotten
            batch = self._batch(linked, create=True)
            assert batch is not None
            batch.via_units = _union(batch.via_units, machines)

    def _batch(self, batch_id: str, create: bool) -> _Batch | None:
        batches = self.batches
        batch = batches.get(batch_id)
        if batch is not None:
            batches.move_to_end(batch_id)
            return batch
        if not create:
            return None
        batch = batches[batch_id] = _Batch()
        if len(batches) > self.horizon_batches:
            batches.popitem(last=False)
            self.forgotten_batches += 1
        return batch

    # ------------------------------------------------------------ attribution

    def machines_for(self, unit_id: str | None, batch_id: str | None) -> Attribution:
        """The machines that made this unit, else this batch; what the genealogy knows, nothing recorded."""
        if unit_id is not None:
            known = self.units.get(unit_id)
            if known is not None:
                self.units.move_to_end(unit_id)
                machines, linked = known
                batch = self._batch(linked, create=False) if linked is not None else None
                return Attribution(_union(machines, batch.direct) if batch else machines, "unit")
            # an unknown unit of a known batch: only the machines that processed the whole batch surely
            # touched it; blaming the machines of the batch's other units would spread the failure thin
            batch = self._batch(batch_id, create=False) if batch_id is not None else None
            if batch is not None and batch.direct:
                return Attribution(batch.direct, "batch")
            return Attribution((), "none", "unknown_unit")
        if batch_id is not None:
            batch = self._batch(batch_id, create=False)
            if batch is not None and (batch.direct or batch.via_units):
                return Attribution(_union(batch.direct, batch.via_units), "batch")
            return Attribution((), "none", "unknown_batch")
        return Attribution((), "none", "no_ids")

    def attribute(self, qc: QcResult) -> Attribution:
        """Attribute a QC result, and learn from it: its unit's batch, and that its station handled it.

        The station that tested the unit (``qc.machine``) handled it too, and is named in the result
        (a vision system on a cutter tests what that cutter made). A result is counted as unattributable
        when nothing *besides* that station is known about its unit or batch.
        """
        unit_id, batch_id = qc.unit_id, qc.batch_id
        if unit_id is not None and batch_id is not None and unit_id in self.units:
            self._link(unit_id, batch_id)  # a result naming both tells the unit's batch: use it at once
        found = self.machines_for(unit_id, batch_id)
        if found.reason is not None:
            self.unattributed[found.reason] += 1
        if qc.machine is None:
            return found
        if unit_id is not None or batch_id is not None:
            self.touch(qc.machine, unit_id, batch_id)
        return Attribution(_add(found.machines, qc.machine), found.basis, found.reason)  # once per QC result: no replace()

    def _link(self, unit_id: str, batch_id: str) -> None:
        machines, _ = self.units[unit_id]
        self.units[unit_id] = (machines, batch_id)
        batch = self._batch(batch_id, create=True)
        assert batch is not None
        batch.via_units = _union(batch.via_units, machines)

    @property
    def unattributed_total(self) -> int:
        return sum(self.unattributed.values())


class MachineFailureRates:
    """One line's failure rate per machine: an unchanged ``FailureRateMonitor`` per machine, fed with the
    QC results the genealogy attributes to it.

    Each machine's monitor learns its own baseline (phase I) from its first attributed results, as the
    line's does, and is tuned to the same shift ratio; its in-control average run length is
    ``settings.target_arl0_units`` (longer than the line's, as several machines are watched at once). A machine that took part in nearly every unit the line tested (more than
    ``line_wide_share`` of its recent attributed results: the only extruder, the QC station) cannot be
    told apart from the line by genealogy: its rate *is* the line's rate, so it would be flagged with
    whichever machine is actually at fault. Its verdicts are returned with ``alarm=False``; the line's
    own monitor speaks for it.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from linewatch.config import FailureRateSettings, GenealogySettings
    >>> from linewatch.domain import QcResult, Reading, Source
    >>> t, src = datetime(2026, 1, 5, tzinfo=timezone.utc), Source("sim", "t")
    >>> rates = MachineFailureRates("line-1", GenealogySettings(), FailureRateSettings())
    >>> rates.record(Reading("cutter-1", "line-1", t, {}, src, unit_id="U-1"))
    >>> [(m, v.phase) for m, v in rates.observe(QcResult(t, "line-1", True, "bag", src, unit_id="U-1"))]
    [('cutter-1', 'baseline')]
    """

    SHARE_WINDOW = 1000  # recent attributed QC results over which a machine's share is measured

    def __init__(self, line: str, settings: GenealogySettings, rates: FailureRateSettings):
        self.line = line
        self.settings = settings
        # the line's CUSUM settings, but each machine's in-control run as long as the genealogy settings say
        self.rates = rates.model_copy(update={"target_arl0_units": settings.target_arl0_units})
        self.genealogy = Genealogy(settings.horizon_units, settings.horizon_batches)
        self.monitors: dict[str, FailureRateMonitor] = {}
        self._recent: deque[Machines] = deque()
        self._in_recent: dict[str, int] = {}  # machine -> attributed results in ``_recent`` naming it
        self.last_unattributed: str | None = None  # why the last QC result was linked to no machine, if it was not

    def record(self, reading: Reading) -> None:
        """Per reading (before any aggregation, which keeps only the first reading's ids)."""
        self.genealogy.record(reading)

    def observe(self, qc: QcResult) -> list[tuple[str, RateVerdict]]:
        """Per QC result: each attributed machine's verdict, in a stable order (empty when unattributable).

        The station that tested it is named only when something else is known: a station's own rate
        on unattributable results would be the line's rate again.
        """
        found = self.genealogy.attribute(qc)
        self.last_unattributed = found.reason
        if found.basis == "none":
            return []
        machines = found.machines
        self._count(machines)
        out: list[tuple[str, RateVerdict]] = []
        unit = qc.unit_id if qc.unit_id is not None else qc.batch_id
        for machine in sorted(machines):
            monitor = self.monitors.get(machine)
            if monitor is None:
                monitor = self.monitors[machine] = FailureRateMonitor(machine, self.rates)
            v = monitor.observe(qc.passed, qc.ts, unit)
            if v.alarm and self.line_wide(machine):
                v = replace(v, alarm=False, since=None, rate_since=None, first_unit=None, detector=None)
            out.append((machine, v))
        return out

    def share(self, machine: str) -> float:
        """Fraction of the line's recent attributed QC results that name ``machine``."""
        return self._in_recent.get(machine, 0) / len(self._recent) if self._recent else 0.0

    def line_wide(self, machine: str) -> bool:
        return self.share(machine) > self.settings.line_wide_share

    def _count(self, machines: Machines) -> None:
        recent, counts = self._recent, self._in_recent
        recent.append(machines)
        for m in machines:
            counts[m] = counts.get(m, 0) + 1
        if len(recent) > self.SHARE_WINDOW:
            for m in recent.popleft():
                counts[m] -= 1
