"""Reading a machine's run of messages as one block changes nothing but the speed.

The same faulty line (injected process faults, a stuck sensor, a silent machine, a rising failure
rate, mangled messages) goes through a pipeline that reads runs as blocks and one that reads every
message alone; every batch's outcome and the state left behind must be the same.
"""

from __future__ import annotations

import json
import pickle
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from linewatch.domain import RawMessage
from linewatch.metrics import Metrics
from linewatch.normalize.normalizer import Normalizer
from linewatch.pipeline import Pipeline
from linewatch.sources.simulator import DEMO_FAULTS, LineSimulator, SimulatorSettings
from tests.normalize.test_block import mangle

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
NOW = (T0 + timedelta(days=3)).timestamp()


def line(seconds: int, genealogy: bool, mangled: float, recipes: bool = False,
         split_keys: bool = False) -> list[RawMessage]:
    """The simulated line; with ``recipes`` the extruder changes product halfway (each has its own
    model); with ``split_keys`` its gateway leaves the key off every tenth message (two runs of one
    machine in each batch)."""
    rng = random.Random(11)
    out, extruder_messages = [], 0
    sim = LineSimulator(T0, SimulatorSettings(faults=DEMO_FAULTS, genealogy=genealogy))
    for i, sm in enumerate(sim.messages(seconds)):
        m = sm.message
        value = m.value
        if recipes and m.topic.endswith("extruder-1"):
            value = json.dumps({**json.loads(value), "recipe": "PA6-natural" if i < seconds * 2.5 else "PA6-black"}).encode()
        value = mangle(value, rng) if i > 2000 and rng.random() < mangled else value
        if split_keys and m.topic.endswith("extruder-1"):
            extruder_messages += 1
        key = None if split_keys and m.topic.endswith("extruder-1") and extruder_messages % 10 == 0 else m.key
        out.append(RawMessage(topic=m.topic, value=value, key=key, partition=0, offset=i))
    return out


def pipeline(config, columnar: bool) -> Pipeline:
    return Pipeline(config, Metrics(), normalizer=Normalizer(config, clock=lambda: NOW), wall_clock=lambda: 0.0,
                    columnar=columnar)


def by_alert(events) -> dict[str, list]:
    out = defaultdict(list)
    for ev in events:
        out[ev.alert.id].append((ev.type, ev.alert.to_dict()))
    return dict(out)


def same(a, b) -> bool:
    """Deep equality through objects, dicts and numpy arrays (the state a checkpoint carries)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return same(vars(a), vars(b))
    if hasattr(a, "__slots__"):
        return all(same(getattr(a, s, None), getattr(b, s, None)) for s in a.__slots__)
    return a == b or pickle.dumps(a) == pickle.dumps(b)  # objects without Python attributes (river's Rust ones)


@pytest.mark.parametrize("genealogy,mangled,batch,recipes,split_keys", [
    (False, 0.0, 250, False, False), (False, 0.005, 333, True, False), (True, 0.002, 1000, False, True)])
def test_blocks_and_one_by_one_agree(config, genealogy, mangled, batch, recipes, split_keys):
    messages = line(5400, genealogy, mangled, recipes, split_keys)
    fast, slow = pipeline(config, True), pipeline(config, False)
    kinds, in_blocks, readings = set(), 0, 0
    for start in range(0, len(messages), batch):
        chunk = messages[start:start + batch]
        a, b = fast.process(chunk), slow.process(chunk)
        assert (a.messages, a.readings, a.qc_results, a.skipped) == (b.messages, b.readings, b.qc_results, b.skipped)
        assert [(r.reason, r.detail, r.source.offset) for r in a.rejections] == \
               [(r.reason, r.detail, r.source.offset) for r in b.rejections]
        assert by_alert(a.events) == by_alert(b.events)
        kinds |= {ev.alert.kind.value for ev in a.events}
        in_blocks, readings = in_blocks + a.in_blocks, readings + a.readings
        assert b.in_blocks == 0
    # most readings were taken in blocks, those carrying unit and batch ids too
    assert in_blocks > (0.3 if split_keys else 0.5) * readings
    counted = sum(fast.metrics.registry.get_sample_value("linewatch_readings_in_blocks_total",
                                                         {"line": "line-1", "machine": m}) for m in config.machines)
    assert counted == in_blocks
    assert {"anomaly", "data_quality", "failure_rate"} <= kinds  # the faults were seen
    if batch < 1000:  # the checkweigher's 300 s of silence ends within a larger batch
        assert "stale_stream" in kinds
    fast_state, slow_state = fast.export_state(everything=True), slow.export_state(everything=True)
    assert fast_state.keys() == slow_state.keys()
    for key in fast_state:
        assert same(pickle.loads(fast_state[key]), pickle.loads(slow_state[key])), key
    sample = fast.metrics.registry.get_sample_value
    extruder = {"line": "line-1", "machine": "extruder-1"}
    if recipes:  # the extruder's readings name their recipe: in blocks too, each scored by its recipe's model
        assert set(fast.recipe_models["extruder-1"]) == {"PA6-natural", "PA6-black"}
        assert sample("linewatch_readings_in_blocks_total", extruder) > 0.5 * sample("linewatch_readings_total", extruder)
    if split_keys:  # the extruder's messages come in two runs per batch: one by one, none out of order
        assert sample("linewatch_readings_in_blocks_total", extruder) == 0
        assert sample("linewatch_readings_skipped_total", {"reason": "out_of_order"}) == 0
    for name, status in slow.machines.items():
        assert same(fast.machines[name], status), name
    assert same(fast.lines, slow.lines)
