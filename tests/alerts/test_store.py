from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.orm import Session

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertRow, AlertStore
from linewatch.domain import AlertKind, AlertStatus, Severity

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    s = AlertStore(f"sqlite:///{tmp_path / 'var' / 'alerts.db'}")
    yield s
    s.close()


def test_save_is_idempotent_and_round_trips(store):
    book = AlertBook()
    ev = book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "s", {"score": 1.5})
    store.save([ev])
    store.save([ev])  # a replayed batch
    [alert] = store.query()
    assert alert.id == ev.alert.id and alert.details == {"score": 1.5}
    assert alert.started_at == T0 and alert.started_at.tzinfo is not None


def test_acknowledgement_survives_worker_updates(store):
    book = AlertBook()
    ev = book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "s", {})
    store.save([ev])
    with Session(store.engine) as session, session.begin():
        row = session.get(AlertRow, ev.alert.id)
        row.status, row.acked_by = AlertStatus.ACKNOWLEDGED.value, "operator-7"
    later = book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + timedelta(seconds=9),
                        Severity.CRITICAL, "worse", {})
    store.save([later])
    alert = store.get(ev.alert.id)
    assert alert.status is AlertStatus.ACKNOWLEDGED and alert.acked_by == "operator-7"
    assert alert.severity is Severity.CRITICAL and alert.summary == "worse"
    assert [a.id for a in store.open_alerts()] == [ev.alert.id]


def test_query_filters(store):
    book = AlertBook()
    store.save([book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "a", {}),
                book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0 + timedelta(seconds=1),
                            Severity.CRITICAL, "b", {})])
    resolved = book.resolve((AlertKind.ANOMALY, "line-1", "extruder-1", None), T0 + timedelta(seconds=500))
    store.save([resolved])
    assert [a.summary for a in store.query()] == ["b", "a"]  # newest first
    assert [a.summary for a in store.query(status=["resolved"])] == ["a"]
    assert [a.summary for a in store.query(kind=["failure_rate"])] == ["b"]
    assert [a.summary for a in store.query(machine="extruder-1")] == ["a"]
    assert store.query(line="line-2") == []
    assert store.ping()
