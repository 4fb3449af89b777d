"""What the consumer loop needs of a source: every source gives batches and commits; a source whose
partitions a consumer group shares between workers (Kafka) also says what moved, how far behind it is,
and whether it still surely holds its partitions, so machines can be handed over between workers.

The runner asks ``isinstance(source, PartitionedSource)`` once, instead of probing for methods.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from linewatch.domain import RawMessage

if TYPE_CHECKING:
    from kafka import TopicPartition

    from linewatch.settings import Settings


class Source(Protocol):
    """Batches of raw messages, and a way to say that what was read so far is durable."""

    def next_batch(self) -> list[RawMessage]: ...

    def commit(self) -> None: ...


@runtime_checkable
class PartitionedSource(Source, Protocol):
    """A source whose partitions are shared by a consumer group: a worker owns the machines and lines
    of the partitions assigned to it, and hands them over when the group moves them."""

    settings: Settings  # its topic names

    def ownership_changes(self) -> list[tuple[str, set[TopicPartition]]]:
        """("revoked" | "assigned", partitions) since the last call, in order."""
        ...

    def partition_count(self, topic: str) -> int: ...

    def assignment(self) -> set[TopicPartition]: ...

    def lag(self) -> dict[tuple[str, int], int]:
        """Unread messages per assigned (topic, partition); -1 where not known yet."""
        ...

    def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    def rewind(self, partitions: set[TopicPartition], learned: dict[tuple[str, int], int]) -> None:
        """Read these partitions on from where the checkpoints just loaded left off."""
        ...

    def membership_in_doubt(self) -> str | None:
        """Why the group may have given this worker's partitions to another, or None."""
        ...

    def give_back(self, batch: Iterable[RawMessage]) -> None:
        """Read these messages again at the next polls."""
        ...

    def keep_alive(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds`` (less once ``stop`` is set) reading nothing, while staying in the group."""
        ...

    def resume(self) -> None:
        """Read on after ``keep_alive``."""
        ...
