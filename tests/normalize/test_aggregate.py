import math
from datetime import datetime, timedelta, timezone

import pytest

from linewatch.config import AggregateSpec
from linewatch.domain import Reading, Source
from linewatch.normalize.aggregate import Aggregator

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def fast(i: int, v: float) -> Reading:  # 10 Hz
    return Reading("cutter-1", "line-1", T0 + timedelta(milliseconds=100 * i), {"cutter_vibration": v, "knife_speed": 1450.0 + i},
                   Source("x", "t"))


def test_ten_hertz_becomes_one_reading_per_second():
    agg = Aggregator(AggregateSpec(period_seconds=1.0, default="mean", sensors={"cutter_vibration": "rms"}))
    values = [3.0, 4.0] * 5 + [1.0] * 10 + [2.0]
    out = [r for i, v in enumerate(values) if (r := agg.add(fast(i, v)))]
    assert len(out) == 2  # the third second is still open
    assert out[0].ts == T0 and out[1].ts == T0 + timedelta(seconds=1)
    assert out[0].values["cutter_vibration"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert out[0].values["knife_speed"] == pytest.approx(1450 + 4.5)
    assert out[1].values["cutter_vibration"] == pytest.approx(1.0)
    assert agg.flush().values["cutter_vibration"] == pytest.approx(2.0)


def test_late_reading_for_an_emitted_period_is_counted_and_dropped():
    agg = Aggregator(AggregateSpec(period_seconds=1.0, default="max"))
    agg.add(fast(0, 1.0))
    assert agg.add(fast(12, 5.0)) is not None
    assert agg.add(fast(3, 9.0)) is None and agg.late == 1


def test_a_folded_reading_keeps_the_recipe_so_it_is_scored_on_that_recipes_model():
    agg = Aggregator(AggregateSpec(period_seconds=1.0, default="mean"))
    readings = [fast(i, 1.0) for i in range(12)]
    for r in readings:
        r.recipe = "PEANUT-WHITE"
    folded = [out for r in readings if (out := agg.add(r))]
    assert folded and folded[0].recipe == "PEANUT-WHITE"
