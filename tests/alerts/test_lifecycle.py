from datetime import datetime, timedelta, timezone

from linewatch.alerts.lifecycle import AlertBook, alert_id
from linewatch.domain import AlertEventType, AlertKind, AlertStatus, Severity

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
CLEAR = timedelta(seconds=120)


def fire(book, t, severity=Severity.WARNING, machine="extruder-1"):
    return book.raise_(AlertKind.ANOMALY, "line-1", machine, None, t, severity, f"summary at {t:%T}", {"score": 1})


def test_repeats_update_one_open_alert():
    book = AlertBook()
    events = [fire(book, T0 + timedelta(seconds=i)) for i in range(50)]
    assert events[0].type is AlertEventType.FIRED
    assert {e.type for e in events[1:]} == {AlertEventType.UPDATED}
    assert len({e.alert.id for e in events}) == 1
    assert events[-1].alert.last_seen_at == T0 + timedelta(seconds=49)
    assert events[0].alert.last_seen_at == T0  # events are snapshots, not live references


def test_worsening_escalates():
    book = AlertBook()
    fire(book, T0)
    ev = fire(book, T0 + timedelta(seconds=5), Severity.CRITICAL)
    assert ev.type is AlertEventType.ESCALATED and ev.alert.severity is Severity.CRITICAL
    ev = fire(book, T0 + timedelta(seconds=6), Severity.WARNING)
    assert ev.alert.severity is Severity.CRITICAL  # never de-escalates within an episode


def test_resolves_only_after_clear_time_and_next_episode_is_new():
    book = AlertBook()
    first = fire(book, T0).alert
    assert book.clear(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + timedelta(seconds=60), CLEAR) is None
    ev = book.clear(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + timedelta(seconds=121), CLEAR)
    assert ev is not None and ev.type is AlertEventType.RESOLVED and ev.alert.status is AlertStatus.RESOLVED
    assert ev.alert.ended_at == T0 + timedelta(seconds=121)
    second = fire(book, T0 + timedelta(seconds=300))
    assert second.type is AlertEventType.FIRED and second.alert.id != first.id


def test_ids_are_deterministic_per_episode():
    assert alert_id(AlertKind.ANOMALY, "line-1", "m", None, T0) == alert_id(AlertKind.ANOMALY, "line-1", "m", None, T0)
    assert alert_id(AlertKind.ANOMALY, "line-1", "m", None, T0) != alert_id(AlertKind.ANOMALY, "line-1", "n", None, T0)


def test_machines_are_independent():
    book = AlertBook()
    a = fire(book, T0, machine="extruder-1")
    b = fire(book, T0, machine="cutter-1")
    assert a.type is b.type is AlertEventType.FIRED and a.alert.id != b.alert.id


def quiet(book, t, readings):
    return book.clear(AlertKind.ANOMALY, "line-1", "extruder-1", None, t, CLEAR, readings)


def test_a_slow_machine_resolves_only_after_enough_quiet_readings_in_a_row():
    # one reading every 5 minutes: each quiet reading is already past clear_after
    book, every = AlertBook(), timedelta(minutes=5)
    first = fire(book, T0)
    assert quiet(book, T0 + every, 3) is None and quiet(book, T0 + 2 * every, 3) is None
    fire(book, T0 + 3 * every)  # the fault shows again: the count starts over, the episode goes on
    assert [quiet(book, T0 + (4 + i) * every, 3) for i in range(2)] == [None, None]
    resolved = quiet(book, T0 + 6 * every, 3)
    assert resolved.type is AlertEventType.RESOLVED and resolved.alert.id == first.alert.id
    assert book.quiet == {}
    # at one reading a second the time rule is the longer one: 3 readings are not enough
    fire(book, T0)
    assert all(quiet(book, T0 + timedelta(seconds=s), 3) is None for s in range(1, 120))
    assert quiet(book, T0 + timedelta(seconds=120), 3).type is AlertEventType.RESOLVED


def test_the_quiet_count_travels_with_the_open_alert_in_a_checkpoint():
    book, every = AlertBook(), timedelta(minutes=5)
    fire(book, T0)
    quiet(book, T0 + every, 3), quiet(book, T0 + 2 * every, 3)
    owner = "machine:extruder-1"
    saved, counts = book.owned_by(owner), book.quiet_of(book.owned_by(owner))
    assert list(counts.values()) == [2]
    other = AlertBook()
    other.restore(owner, saved, {}, counts)
    assert quiet(other, T0 + 3 * every, 3).type is AlertEventType.RESOLVED  # as the first book would
    book.forget({owner})
    assert book.quiet == {} and book.open == {}


def test_a_reading_over_the_threshold_that_does_not_raise_starts_the_quiet_count_again():
    book, every = AlertBook(), timedelta(minutes=5)
    fire(book, T0)
    key = (AlertKind.ANOMALY, "line-1", "extruder-1", None)
    assert quiet(book, T0 + every, 3) is None and quiet(book, T0 + 2 * every, 3) is None
    book.disturbed(key)  # the fault still shows, below the debounce
    assert quiet(book, T0 + 3 * every, 3) is None and quiet(book, T0 + 4 * every, 3) is None
    assert quiet(book, T0 + 5 * every, 3).type is AlertEventType.RESOLVED
    fire(book, T0 + 6 * every)
    quiet(book, T0 + 7 * every, 3)
    book.drop(key)  # a person's "new normal": closed here without an event
    assert book.open == {} and book.quiet == {}


def test_the_book_answers_whether_an_alert_is_open_and_ends_it_once():
    book = AlertBook()
    fired = fire(book, T0)
    assert book.is_open(AlertKind.ANOMALY, "line-1", "extruder-1")
    assert not book.is_open(AlertKind.ANOMALY, "line-1", "cutter-1")
    assert not book.is_open(AlertKind.STALE_STREAM, "line-1", "extruder-1")
    assert book.open_for(AlertKind.ANOMALY, "line-1", "extruder-1").id == fired.alert.id
    assert book.open_for(AlertKind.FAILURE_RATE, "line-1") is None
    [ended] = book.end(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + CLEAR)
    assert ended.type is AlertEventType.RESOLVED and ended.alert.ended_at == T0 + CLEAR
    assert book.end(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0 + 2 * CLEAR) == []  # nothing open
    assert not book.is_open(AlertKind.ANOMALY, "line-1", "extruder-1")


def test_clearing_each_sensor_touches_only_the_open_alerts():
    book = AlertBook()
    book.raise_(AlertKind.DATA_QUALITY, "line-1", "extruder-1", "die_pressure", T0, Severity.WARNING, "stuck", {})
    events = book.clear_each(AlertKind.DATA_QUALITY, "line-1", "extruder-1", ("melt_temperature", "die_pressure"),
                             T0 + CLEAR, CLEAR)
    assert [(e.type, e.alert.sensor) for e in events] == [(AlertEventType.RESOLVED, "die_pressure")]
    assert book.clear_each(AlertKind.DATA_QUALITY, "line-1", "extruder-1", ("die_pressure",), T0 + 2 * CLEAR,
                           CLEAR) == []
