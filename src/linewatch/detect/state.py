"""Detector state checkpoints: what each machine's model and each line's monitor have learned.

Kept in the same database as the alerts, so a restarted worker (or another worker taking over a
machine's partition) continues from the last checkpoint instead of warming up again. The runner
checkpoints before it commits Kafka offsets, so the committed position never runs ahead of the
learned state: after a crash the readings since the checkpoint are replayed and learned again.

Writes are fenced. Each row records how far into its partition the state had learned (topic,
partition, next offset). A write of a key whose stored row has learned further into the same
partition is refused in the same transaction, and the rest of the write goes ahead: a worker that
was paused past its session timeout (its partitions moved and the new owner read on) and resumes
would otherwise replace the new owner's state with its own older one, and the readings between the
two would never be learned. The runner reloads what was refused (see ``Runner.checkpoint``).

State is pickled. Only linewatch writes this table; whoever can write to the database can also
change alerts, so the database is trusted like the code.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from linewatch.alerts.store import Base

Position = tuple[str, int, int]  # (topic, partition, next offset) a state had learned to


class StateRow(Base):
    __tablename__ = "detector_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_topic: Mapped[str | None] = mapped_column(String(300), nullable=True)
    source_partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    next_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


def newer(stored: Position | None, mine: Position | None) -> bool:
    """Whether a stored row has learned further into the partition than a state about to replace it.

    Positions in different partitions (a topic re-partitioned, a machine moved) cannot be compared and
    never refuse; a state that knows no position cannot show it is newer than one that does.

    >>> newer(("raw.dryer-1", 3, 2941), ("raw.dryer-1", 3, 1457)), newer(("raw.dryer-1", 3, 1457), ("raw.dryer-1", 3, 1457))
    (True, False)
    >>> newer(("raw.dryer-1", 3, 10), None), newer(None, ("raw.dryer-1", 3, 10)), newer(("raw.dryer-1", 2, 10), ("raw.dryer-1", 3, 1))
    (True, False, False)
    """
    if stored is None:
        return False
    if mine is None:
        return True
    return stored[:2] == mine[:2] and stored[2] > mine[2]


class StateStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def save(self, states: dict[str, bytes], positions: dict[str, Position | None] | None = None,
             force: frozenset[str] = frozenset()) -> dict[str, Position]:
        """Replace the stored state of every key given, in one transaction, except the keys whose
        stored row has learned further into the same partition (``positions`` gives how far each
        state had learned; ``force``: keys written whatever is stored). Returns the keys refused,
        with the stored row's position."""
        if not states:
            return {}
        positions = positions or {}
        now = datetime.now(timezone.utc)
        with Session(self.engine) as session, session.begin():
            # the rows are locked until the transaction ends (PostgreSQL), so no other writer slips in
            # between the comparison and the replacement; SQLite has one writer at a time anyway
            stored = session.execute(select(StateRow.key, StateRow.source_topic, StateRow.source_partition,
                                            StateRow.next_offset).where(StateRow.key.in_(list(states)))
                                     .with_for_update()).all()
            refused = {key: (topic, partition, offset) for key, topic, partition, offset in stored
                       if key not in force and offset is not None and topic is not None and partition is not None
                       and newer((topic, partition, offset), positions.get(key))}
            keys = [k for k in states if k not in refused]
            if keys:
                session.execute(delete(StateRow).where(StateRow.key.in_(keys)))
                session.add_all(StateRow(key=k, state=states[k], saved_at=now, **_columns(positions.get(k)))
                                for k in keys)
        return refused

    def load(self, keys: list[str] | None = None) -> dict[str, bytes]:
        """All checkpointed state, or only ``keys`` (e.g. the machines a worker was just given)."""
        stmt = select(StateRow)
        if keys is not None:
            stmt = stmt.where(StateRow.key.in_(keys))
        with Session(self.engine) as session:
            return {r.key: r.state for r in session.scalars(stmt)}


def _columns(position: Position | None) -> dict[str, object]:
    if position is None:
        return {"source_topic": None, "source_partition": None, "next_offset": None}
    return {"source_topic": position[0], "source_partition": position[1], "next_offset": position[2]}
