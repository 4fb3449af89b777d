"""Recognising a QC result seen before: a gateway re-sends, a mirror restarts, a topic is replayed.

Readings carry their own protection (a machine's readings are scored in timestamp order, and one not
newer than the last is skipped), but QC results cannot: a lab's destructive test on a sample arrives
hours after the belt's results with an older timestamp, and it is new. So a QC result is recognised
by what it says, not by when it arrives: the unit or batch it is about, the test, its time and its
verdict. A line remembers the identities of its recent results (bounded: the oldest are forgotten
first), and that memory travels with the line's failure-rate monitor in its checkpoint, so a replay is
recognised by whichever worker owns the line. A result that names no unit and no batch cannot be told
apart from another unit tested in the same second, and is always counted.

Identities are stable 8-byte digests (blake2b), not Python's ``hash``, which differs between processes.
"""

from __future__ import annotations

import hashlib

from linewatch.domain import QcResult

REMEMBERED = 20_000  # recent QC results per line whose replay is recognised (8 bytes each, plus the dict's)


def identity(qc: QcResult) -> int | None:
    """A stable digest of what a QC result says, or None when it names no unit and no batch."""
    if qc.unit_id is None and qc.batch_id is None:
        return None
    text = "\x1f".join((qc.line, qc.unit_id or "", qc.batch_id or "", qc.test, qc.ts.isoformat(),
                        "pass" if qc.passed else "fail"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class RecentResults:
    """The identities of one line's most recent QC results."""

    def __init__(self, capacity: int = REMEMBERED):
        self.capacity = capacity
        self._seen: dict[int, None] = {}  # insertion-ordered: the first key is the oldest

    def __len__(self) -> int:
        return len(self._seen)

    def seen_before(self, qc: QcResult) -> bool:
        """Whether this result was seen already; if not, it is remembered."""
        key = identity(qc)
        if key is None:
            return False
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            del self._seen[next(iter(self._seen))]
        return False
