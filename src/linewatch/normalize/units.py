"""Unit conversion prepared once per (vendor unit, canonical unit) pair.

pint knows the units; we ask it once per pair for a linear map ``canonical = raw * scale + offset``
(exact for every unit a sensor reports, offset units such as °F and K included), so the hot path is
one multiply and one add.

Only units named in the configuration are converted: a tag list's unit per value is looked up among
the units its profile allows (``normalize/profile.py``), never parsed. pint's parser evaluates
arithmetic: ``2**2**2**2**2**2*K`` would make it compute a power tower, gigabytes and minutes. So a
unit string must also pass a small grammar (unit names, at most four
of them, joined by ``*``, ``/`` or a space, each with an optional one- or two-digit exponent, no
numbers of its own): checking it costs a microsecond whatever the text, and only what passes ever
reaches pint. Answers are cached, refusals too, so a repeated bad unit costs a dictionary look-up.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import NamedTuple

import pint

MAX_UNIT_CHARS = 32
# unit names as pint spells them (degC, m, min, percent, %, °C, µm, g0, L, ...), optionally raised
# to a small integer power; "1/min" style reciprocals are allowed at the front
_FACTOR = r"(?:[A-Za-z°µΩ%][A-Za-z0-9_°µΩ]{0,31})(?:(?:\*\*|\^)-?[0-9]{1,2})?"
_UNIT = re.compile(rf"(?:1\s*/\s*)?{_FACTOR}(?:\s*[*/ ]\s*{_FACTOR}){{0,3}}")


class Conversion(NamedTuple):
    scale: float
    offset: float

    def apply(self, value: float) -> float:
        return value * self.scale + self.offset


IDENTITY = Conversion(1.0, 0.0)


@cache
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def unit_syntax_problem(unit: str) -> str | None:
    """None when ``unit`` is shaped like a unit, else why not. Bounded cost: the text is cut first.

    >>> unit_syntax_problem("m/min") is None and unit_syntax_problem("degC") is None
    True
    >>> unit_syntax_problem("9**9**9*K")
    "unit '9**9**9*K' is not a unit name (letters, at most 4 joined by * or /, small integer powers)"
    """
    if len(unit) > MAX_UNIT_CHARS:
        return f"unit {unit[:MAX_UNIT_CHARS]!r}... is longer than {MAX_UNIT_CHARS} characters"
    if _UNIT.fullmatch(unit.strip()) is None:
        return f"unit {unit!r} is not a unit name (letters, at most 4 joined by * or /, small integer powers)"
    return None


def check_unit(unit: str) -> str | None:
    """None when pint knows ``unit``, else a sentence saying it does not."""
    problem = unit_syntax_problem(unit)
    if problem:
        return problem
    try:
        _registry().Unit(unit)
    except Exception:  # pint raises several kinds for text it cannot parse
        return f"unknown unit {unit!r}"
    return None


def conversion(source: str, target: str) -> Conversion:
    """The linear map from ``source`` to ``target`` units.

    Raises ValueError naming both units when either is unknown or their dimensions differ
    (psi cannot become °C).

    >>> round(conversion("degF", "degC").apply(212.0), 9)
    100.0
    >>> round(conversion("psi", "bar").apply(1000.0), 4)
    68.9476
    """
    if len(source) > MAX_UNIT_CHARS:  # never a cache key: the cache holds short strings only
        raise ValueError(unit_syntax_problem(source))
    answer = _conversion(source, target)
    if isinstance(answer, str):
        raise ValueError(answer)
    return answer


@lru_cache(maxsize=4096)  # bounded: asked for the units profiles name, at startup
def _conversion(source: str, target: str) -> Conversion | str:
    """A Conversion, or the sentence saying why there is none (refusals are cached too)."""
    ureg = _registry()
    for unit in (source, target):
        problem = check_unit(unit)
        if problem:
            return problem
    src, dst = ureg.Unit(source), ureg.Unit(target)
    if src.dimensionality != dst.dimensionality:
        return f"cannot convert {source} ({src.dimensionality}) to {target} ({dst.dimensionality})"
    if src == dst:
        return IDENTITY
    at0 = ureg.Quantity(0.0, src).to(dst).magnitude
    big = ureg.Quantity(1e6, src).to(dst).magnitude  # a wide span keeps the slope exact to ~1e-15
    scale = float((big - at0) / 1e6)
    offset = float(at0)
    if abs(offset) < 1e-12:
        offset = 0.0
    return Conversion(scale, offset)
