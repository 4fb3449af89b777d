"""`linewatch normalize` on 10,000 hostile lines: every line gets an outcome, no bug is blamed
(`internal_error`), and resident memory stays under 300 MB plus the largest line, whatever the input."""

from __future__ import annotations

import json
import sys
from collections import Counter

from .hostile import hostile_lines

LINES = 10_000
BOUND_BYTES = 300 * 2**20  # plus the largest line

# A fresh interpreter whose only child is `linewatch normalize`, so RUSAGE_CHILDREN is that child's
# peak resident set (ru_maxrss is in KiB on Linux), not the largest of everything pytest ever started.
PEAK = """
import resource, subprocess, sys
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    code = subprocess.run([sys.executable, "-m", "linewatch.cli", "normalize"], stdin=src, stdout=out,
                          timeout=600).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def test_normalize_memory_stays_bounded_on_hostile_input(tmp_path, processes):
    src, dst = tmp_path / "hostile.jsonl", tmp_path / "out.jsonl"
    largest = 0
    with src.open("w") as f:
        for line in hostile_lines(LINES):
            largest = max(largest, len(line))
            f.write(line)
    assert largest > 2_000_000  # the input does hold a multi-megabyte line

    done = processes.run([sys.executable, "-c", PEAK, str(src), str(dst)], timeout=900)
    code, peak = map(int, done.stdout.split())
    assert code == 0, done.stderr[-2000:]
    assert peak < BOUND_BYTES + largest, f"peak resident memory {peak / 2**20:.0f} MB"

    outcomes = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [o["line"] for o in outcomes] == list(range(1, LINES + 1))
    reasons = Counter(o["rejected"]["reason"] for o in outcomes if "rejected" in o)
    assert "internal_error" not in reasons, reasons
    assert {"oversized", "not_json", "bad_unit"} <= set(reasons), reasons  # the mutations were seen as such
    assert sum("reading" in o or "qc" in o for o in outcomes) >= LINES // 2  # the untouched half reads fine
    assert max(len(o["rejected"]["detail"]) for o in outcomes if "rejected" in o) <= 500
