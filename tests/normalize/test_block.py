"""A run of messages read as one block gives what reading them one by one gives, or is left to that path."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from linewatch.domain import RawMessage, Reading
from linewatch.normalize.block import read_block, read_qc_block
from linewatch.normalize.normalizer import QC_TOPIC, Normalizer
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
NOW = (T0 + timedelta(days=3)).timestamp()  # the normaliser's clock: later than every simulated reading


def _leaves(node, path=()):
    """Paths to the numbers in a payload (through tag lists too)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, path + (i,))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path


def _set(node, path, value):
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


def mangle(value: bytes, rng: random.Random) -> bytes:
    """One of the ways a vendor's message goes wrong."""
    kind = rng.choice(["not_json", "string", "null", "bool", "huge", "extra", "recipe", "ids", "future", "no_time",
                       "other_machine", "empty", "verdict", "bag", "far_time", "numeric_id", "reset_clock"])
    if kind == "not_json":
        return value[: len(value) // 2]
    if kind == "empty":
        return b"[]"
    body = json.loads(value)
    leaves = list(_leaves(body))
    if kind in ("string", "null", "bool", "huge") and leaves:
        _set(body, rng.choice(leaves), {"string": "12.5", "null": None, "bool": True, "huge": 1e308}[kind])
    elif kind == "extra":
        body["firmware"] = "2.1"
    elif kind == "recipe":
        body["recipe"] = "PA6-natural"
    elif kind == "ids":
        body.update({"batchId": "L-00001", "lot": "L-00001"})
    elif kind == "future":
        for key, step in (("tsMs", 10 * 86_400_000), ("t", 10 * 86_400)):
            if key in body:
                body[key] += step
    elif kind == "no_time":
        for key in ("tsMs", "t", "ts", "time"):
            body.pop(key, None)
    elif kind == "verdict" and "verdict" in body:
        body["verdict"] = rng.choice(["MAYBE", "pass", True, 1, None])
    elif kind == "bag" and "bag" in body:
        body["bag"] = rng.choice(["  ", 1234, 12.5, None, ["B-1"]])
    elif kind == "far_time":  # years numpy reads and datetime does not, numbers past int64 or float
        for key, far in (("ts", "0000-01-01T00:00:00.000Z"), ("time", "0000-01-01T00:00:00.000"),
                         ("tsMs", 2**64), ("t", 1e300)):
            if key in body:
                body[key] = far
    elif kind == "reset_clock":  # a controller that lost its time: 1970 (epoch 0) or 2000-01-01
        for key, reset in (("ts", "2000-01-01T00:00:05.000Z"), ("time", "1970-01-01T00:00:00.000"),
                           ("tsMs", 0), ("t", 946_684_805.0)):
            if key in body:
                body[key] = reset
    elif kind == "numeric_id":
        for key in ("machineId", "station"):
            if key in body:
                body[key] = rng.choice([7, 7.0, True, ["EXT-4471"]])
    elif kind == "other_machine":
        for key in ("machineId", "station"):
            if key in body:
                body[key] = "EXT-9999"
    return json.dumps(body).encode()


def runs(messages: list[RawMessage], size: int) -> list[list[RawMessage]]:
    """Batches of ``size`` messages, each split into its runs of one topic, partition and key (as the pipeline does)."""
    out = []
    for start in range(0, len(messages), size):
        groups: dict[tuple, list[RawMessage]] = {}
        for m in messages[start:start + size]:
            groups.setdefault((m.topic, m.partition, m.key), []).append(m)
        out.extend(groups.values())
    return out


def state(n: Normalizer) -> tuple:
    return (n.last_ts, n.last_raw, n.fields_seen, {k: set(v) for k, v in n.top_keys.items()}, n.schema_counter,
            n.schema_drift)


@pytest.mark.parametrize("share_mangled,size", [(0.0, 500), (0.002, 400), (0.02, 97), (0.2, 50)])
def test_a_block_is_what_message_by_message_gives(config, share_mangled, size):
    rng = random.Random(size)
    messages = []
    for i, sm in enumerate(LineSimulator(T0, SimulatorSettings(faults=())).messages(3000)):
        m = sm.message
        if i > 400 and rng.random() < share_mangled:  # the first messages set the machines' known fields
            m = RawMessage(topic=m.topic, value=mangle(m.value, rng), key=m.key, partition=0, offset=i)
        else:
            m = RawMessage(topic=m.topic, value=m.value, key=m.key, partition=0, offset=i)
        messages.append(m)
    blocks, alone = Normalizer(config, clock=lambda: NOW), Normalizer(config, clock=lambda: NOW)
    taken = fell_back = 0
    qc_taken = 0
    for run in runs(messages, size):
        expected = [alone.normalize(m) for m in run]
        if run[0].topic == QC_TOPIC:
            got = read_qc_block(blocks, run)
            qc_taken += got is not None
            if got is None:
                got = [blocks.normalize(m) for m in run]
            assert got == expected
            continue
        block = read_block(blocks, run)
        if block is None:
            fell_back += 1
            got = [blocks.normalize(m) for m in run]
        else:
            taken += 1
            assert all(isinstance(r, Reading) for r in expected)
            got = block.readings()
        assert got == expected
        assert state(blocks) == state(alone)
    assert taken > 0 and qc_taken > 0
    if share_mangled >= 0.02:
        assert fell_back > 0


@pytest.mark.parametrize("start", [datetime(2026, 10, 24, 23, 30, tzinfo=timezone.utc),  # Berlin: 03:00 -> 02:00
                                   datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)])  # 02:00 -> 03:00
def test_local_times_across_a_clock_change_read_as_one_by_one(config, start):
    """The cutter reports Berlin wall-clock time: runs that cross a change of offset, or lie in the hour
    that repeats, are read message by message; the rest at once, to the same instants."""
    now = (start + timedelta(days=1)).timestamp()
    messages = [RawMessage(sm.message.topic, sm.message.value, sm.message.key, 0, i)
                for i, sm in enumerate(LineSimulator(start, SimulatorSettings(faults=())).messages(3 * 3600))
                if sm.message.topic.endswith("cutter-1")]
    blocks, alone = Normalizer(config, clock=lambda: now), Normalizer(config, clock=lambda: now)
    taken = 0
    for run in runs(messages, 300):
        expected = [alone.normalize(m) for m in run]
        block = read_block(blocks, run)
        taken += block is not None
        assert (block.readings() if block else [blocks.normalize(m) for m in run]) == expected
        assert state(blocks) == state(alone)
    assert 0 < taken < len(messages) / 300  # some runs at once, those at the change one by one


def test_epoch_times_read_to_the_millisecond_as_one_by_one(config):
    """Times with fractions of a millisecond round the same way as ``datetime.fromtimestamp`` does."""
    rng = np.random.default_rng(3)
    n_block, n_alone = Normalizer(config, clock=lambda: NOW), Normalizer(config, clock=lambda: NOW)
    base = T0.timestamp()
    warm = RawMessage("linewatch.raw.checkweigher-1", json.dumps({"station": "CW1", "t": base, "gross_g": 250.0,
                                                                   "belt_mpm": 42.0}).encode(), b"checkweigher-1")
    n_block.normalize(warm), n_alone.normalize(warm)
    seconds = base + np.sort(rng.uniform(1, 10_000, 2000))
    seconds[::7] = np.round(seconds[::7], 3) + 0.0005  # ties at half a millisecond
    msgs = [RawMessage("linewatch.raw.checkweigher-1", json.dumps({"station": "CW1", "t": float(t), "gross_g": 250.0,
                                                                    "belt_mpm": 42.0 + i % 3}).encode(),
                       b"checkweigher-1", 0, i) for i, t in enumerate(seconds)]
    block = read_block(n_block, msgs)
    assert block is not None
    assert block.readings() == [n_alone.normalize(m) for m in msgs]


def test_a_run_with_one_bad_message_goes_message_by_message(config):
    n = Normalizer(config, clock=lambda: NOW)
    msgs = [sm.message for sm in LineSimulator(T0, SimulatorSettings(faults=())).messages(50)
            if sm.message.topic.endswith("extruder-1")]
    n.normalize(msgs[0])  # its fields are known from now on
    before = state(n)
    bad = json.loads(msgs[20].value)
    bad["barrelTempF"] = "hot"
    run = msgs[1:20] + [RawMessage(msgs[20].topic, json.dumps(bad).encode(), msgs[20].key)] + msgs[21:]
    assert read_block(n, run) is None
    assert state(n) == before  # nothing was noted: the message-by-message path will
