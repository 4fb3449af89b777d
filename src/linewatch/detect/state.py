"""Detector state checkpoints: what each machine's model and each line's monitor have learned.

Kept in the same database as the alerts, so a restarted worker (or another worker taking over a
machine's partition) continues from the last checkpoint instead of warming up again. The runner
checkpoints before it commits Kafka offsets, so the committed position never runs ahead of the
learned state: after a crash the readings since the checkpoint are replayed and learned again.

State is pickled. Only linewatch writes this table; whoever can write to the database can also
change alerts, so the database is trusted like the code.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, LargeBinary, String, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from linewatch.alerts.store import Base


class StateRow(Base):
    __tablename__ = "detector_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StateStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def save(self, states: dict[str, bytes]) -> None:
        """Replace the stored state of every key given, in one transaction."""
        if not states:
            return
        now = datetime.now(timezone.utc)
        with Session(self.engine) as session, session.begin():
            session.execute(delete(StateRow).where(StateRow.key.in_(list(states))))
            session.add_all(StateRow(key=k, state=v, saved_at=now) for k, v in states.items())

    def load(self, keys: list[str] | None = None) -> dict[str, bytes]:
        """All checkpointed state, or only ``keys`` (e.g. the machines a worker was just given)."""
        stmt = select(StateRow)
        if keys is not None:
            stmt = stmt.where(StateRow.key.in_(keys))
        with Session(self.engine) as session:
            return {r.key: r.state for r in session.scalars(stmt)}
