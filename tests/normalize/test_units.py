import pytest

from linewatch.normalize.units import check_unit, conversion


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
