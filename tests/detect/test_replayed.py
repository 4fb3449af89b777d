import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from linewatch.detect.replayed import RecentResults, identity
from linewatch.domain import QcResult, Source

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def _qc(unit: str | None, test: str = "weight", passed: bool = True, batch: str | None = None) -> QcResult:
    return QcResult(ts=T0, line="line-1", passed=passed, test=test, source=Source("weighpro", "qc"), unit_id=unit,
                    batch_id=batch)


def test_the_same_result_is_recognised_and_another_test_or_verdict_is_not():
    recent = RecentResults()
    assert not recent.seen_before(_qc("U1"))
    assert recent.seen_before(_qc("U1"))
    assert not recent.seen_before(_qc("U1", test="seal"))
    assert not recent.seen_before(_qc("U1", passed=False))
    assert not recent.seen_before(_qc(None, batch="B7")) and recent.seen_before(_qc(None, batch="B7"))


def test_a_result_without_unit_or_batch_is_always_counted():
    recent = RecentResults()
    assert identity(_qc(None)) is None
    assert not recent.seen_before(_qc(None)) and not recent.seen_before(_qc(None))
    assert len(recent) == 0


def test_the_memory_is_bounded_and_forgets_the_oldest_first():
    recent = RecentResults(capacity=3)
    for unit in ("U1", "U2", "U3", "U4"):
        recent.seen_before(_qc(unit))
    assert len(recent) == 3
    assert recent.seen_before(_qc("U4")) and not recent.seen_before(_qc("U1"))


def test_identities_are_the_same_in_every_process():
    # Python's hash() of a str differs between processes; a checkpoint is read by another worker
    code = ("from tests.detect.test_replayed import _qc; from linewatch.detect.replayed import identity; "
            "print(identity(_qc('U1')))")
    root = Path(__file__).resolve().parents[2]
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert outs == {str(identity(_qc("U1")))}
