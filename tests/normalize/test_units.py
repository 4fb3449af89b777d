import pytest

from linewatch.normalize.units import check_unit, conversion, unit_syntax_problem


@pytest.mark.parametrize(("source", "target", "raw", "expected"), [
    ("degF", "degC", 212.0, 100.0),
    ("degF", "degC", -40.0, -40.0),
    ("K", "degC", 273.15, 0.0),
    ("psi", "bar", 14.5037738, 1.0),
    ("cm", "mm", 2.5, 25.0),
    ("%", "percent", 35.0, 35.0),
    ("m/min", "m/min", 4.0, 4.0),
])
def test_conversions(source, target, raw, expected):
    assert conversion(source, target).apply(raw) == pytest.approx(expected, abs=1e-6)


def test_dimension_mismatch_is_refused():
    with pytest.raises(ValueError, match="cannot convert psi .* to degC"):
        conversion("psi", "degC")


def test_unknown_unit_is_named():
    assert check_unit("furlongs_per_fortnight_x") == "unknown unit 'furlongs_per_fortnight_x'"
    with pytest.raises(ValueError, match="unknown unit 'blorp'"):
        conversion("blorp", "degC")


@pytest.mark.parametrize("bomb", ["2**2**2**2**2**2**2*K", "9**9**9*K", "(10**10)**10**10*m", "1e9999999*K",
                                  "K" * 33, "m*m*m*m*m", "K**999"])
def test_arithmetic_in_a_unit_is_refused_before_pint_reads_it(bomb):
    # pint would evaluate these (a power tower: gigabytes, minutes); they never reach it
    with pytest.raises(ValueError, match="not a unit name|longer than"):
        conversion(bomb, "degC")
    assert unit_syntax_problem(bomb) is not None


def test_a_refused_unit_is_remembered_not_parsed_again():
    from linewatch.normalize.units import _conversion

    before = _conversion.cache_info().misses
    for _ in range(3):
        with pytest.raises(ValueError, match="unknown unit"):
            conversion("furlongs_per_fortnight_y", "degC")
    assert _conversion.cache_info().misses == before + 1
