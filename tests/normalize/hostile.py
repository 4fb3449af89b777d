"""Hostile input for the normaliser: the simulated line's own payloads, every other one mutated the
way broken gateways and attackers do (huge strings, deep nesting, tens of thousands of keys, unit
strings that are arithmetic, numbers with thousands of digits, cut-off and NUL-laced text)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timezone

from linewatch.sources.simulator import LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
BIG_STRING = 2_000_000  # characters in the largest string value


def _mutate(value: str, rng: random.Random) -> str:
    k = rng.randrange(14)
    if k == 0 and rng.random() < 0.05:  # a few multi-megabyte values, as a stuck gateway buffer sends
        return value[:-1] + ',"x":"' + "A" * BIG_STRING + '"}'
    if k == 1:
        return '{"a":' + "[" * 5000 + "]" * 5000 + "}"
    if k == 2:
        return '{"a":' + '{"b":' * 5000 + "1" + "}" * 5000 + "}"
    if k == 3:
        bomb = rng.choice(["2**2**2**2**2**2**2*K", "9**9**9*K", "(10**10)**10**10*m", "1e9999999*K"])
        return value.replace('"K"', json.dumps(bomb)) if '"K"' in value else value[:-1] + f',"unit":{json.dumps(bomb)}}}'
    if k == 4:
        return "{" + ",".join(f'"k{i}":{i}' for i in range(rng.randrange(1000, 30000))) + "}"
    if k == 5:  # a field name never seen before, on every message
        return value[:-1] + f',"{"f" * rng.randrange(10, 500)}{rng.random()}":1}}'
    if k == 6:
        return value.replace(":", ":" + "9" * 5000, 1)
    if k == 7:
        return value[: rng.randrange(len(value))]
    if k == 8:
        return value.replace('"K"', '"' + "m" * 100_000 + '"') if '"K"' in value else value.replace('"', "'", 2)
    if k == 9:
        return '"' + "x" * rng.randrange(1, 200_000) + '"'
    if k == 10:
        return value.replace('"', '\\u0000"', 3)
    if k == 11:  # a tag list of ten thousand tags
        return value[:-1] + ',"tags":[' + ",".join('{"tag":"T%d","value":1}' % i for i in range(10_000)) + "]}"
    if k == 12:
        return value.replace("1", "1e400", 1)
    return value


def hostile_lines(n: int, seed: int = 1) -> Iterator[str]:
    """``n`` JSON lines {topic, key, value} as ``linewatch simulate --to stdout`` prints them, every
    other one mutated."""
    rng = random.Random(seed)
    messages = LineSimulator(T0, SimulatorSettings(seed=seed)).messages(n // 5 + 1)
    for i, sm in zip(range(n), messages):
        m = sm.message
        value = m.value.decode()
        if i % 2:
            value = _mutate(value, rng)
        yield json.dumps({"topic": m.topic, "key": m.key.decode() if m.key else None, "value": value}) + "\n"
