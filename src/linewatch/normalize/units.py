"""Unit conversion prepared once per (vendor unit, canonical unit) pair.

pint knows the units; we ask it once per pair for a linear map ``canonical = raw * scale + offset``
(exact for every unit a sensor reports, offset units such as °F and K included), so the hot path is
one multiply and one add.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import NamedTuple

import pint


class Conversion(NamedTuple):
    scale: float
    offset: float

    def apply(self, value: float) -> float:
        return value * self.scale + self.offset


IDENTITY = Conversion(1.0, 0.0)


@cache
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def check_unit(unit: str) -> str | None:
    """None when pint knows ``unit``, else a sentence saying it does not."""
    try:
        _registry().Unit(unit)
    except Exception:  # pint raises several kinds for text it cannot parse
        return f"unknown unit {unit!r}"
    return None


@lru_cache(maxsize=4096)  # bounded: tag-list payloads name their own units
def conversion(source: str, target: str) -> Conversion:
    """The linear map from ``source`` to ``target`` units.

    Raises ValueError naming both units when either is unknown or their dimensions differ
    (psi cannot become °C).

    >>> round(conversion("degF", "degC").apply(212.0), 9)
    100.0
    >>> round(conversion("psi", "bar").apply(1000.0), 4)
    68.9476
    """
    ureg = _registry()
    for unit in (source, target):
        problem = check_unit(unit)
        if problem:
            raise ValueError(problem)
    src, dst = ureg.Unit(source), ureg.Unit(target)
    if src.dimensionality != dst.dimensionality:
        raise ValueError(f"cannot convert {source} ({src.dimensionality}) to {target} ({dst.dimensionality})")
    if src == dst:
        return IDENTITY
    at0 = ureg.Quantity(0.0, src).to(dst).magnitude
    big = ureg.Quantity(1e6, src).to(dst).magnitude  # a wide span keeps the slope exact to ~1e-15
    scale = float((big - at0) / 1e6)
    offset = float(at0)
    if abs(offset) < 1e-12:
        offset = 0.0
    return Conversion(scale, offset)
