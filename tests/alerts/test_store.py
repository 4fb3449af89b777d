from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertConflict, AlertNotFound, AlertStore, decode_cursor, encode_cursor
from linewatch.domain import AlertKind, AlertStatus, AlertVerdict, Severity

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(database_url):
    s = AlertStore(database_url)
    yield s
    s.close()


def fire(book, minutes=0, machine="extruder-1", kind=AlertKind.ANOMALY, severity=Severity.WARNING, summary="s"):
    return book.raise_(kind, "line-1", machine, None, T0 + timedelta(minutes=minutes), severity, summary, {"score": 1.5})


def test_schema_comes_from_the_migrations(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"alerts", "silences", "alembic_version"} <= tables
    AlertStore(store.url).close()  # opening again is a no-op upgrade


def test_workers_opening_a_new_database_together_both_start(database_url):
    # two workers started at once on a fresh database both run the migrations; neither may fail
    import threading

    start, errors, stores = threading.Barrier(4), [], []

    def open_store():
        start.wait()
        try:
            stores.append(AlertStore(database_url))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever a worker would have died of
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert not errors and len(stores) == 4


def test_save_is_idempotent_and_round_trips(store):
    ev = fire(AlertBook())
    store.save([ev])
    store.save([ev])  # a replayed batch
    [alert] = store.query()
    assert alert.id == ev.alert.id and alert.details == {"score": 1.5}
    assert alert.started_at == T0 and alert.started_at.tzinfo is not None


def test_acknowledgement_survives_worker_updates(store):
    book = AlertBook()
    ev = fire(book)
    store.save([ev])
    store.acknowledge(ev.alert.id, "operator-7", "checking the die heater", T0 + timedelta(minutes=1))
    store.save([fire(book, minutes=2, severity=Severity.CRITICAL, summary="worse")])
    alert = store.get(ev.alert.id)
    assert alert.status is AlertStatus.ACKNOWLEDGED and alert.acked_by == "operator-7"
    assert alert.ack_note == "checking the die heater"
    assert alert.severity is Severity.CRITICAL and alert.summary == "worse"
    assert [a.id for a in store.open_alerts()] == [ev.alert.id]


def test_people_cannot_act_on_what_is_over_or_absent(store):
    ev = fire(AlertBook())
    store.save([ev])
    resolved = store.resolve(ev.alert.id, "shift-lead", "die cleaned", T0 + timedelta(minutes=5))
    assert resolved.status is AlertStatus.RESOLVED and resolved.resolved_by == "shift-lead"
    with pytest.raises(AlertConflict):
        store.acknowledge(ev.alert.id, "operator-7", None, T0 + timedelta(minutes=6))
    with pytest.raises(AlertConflict):
        store.resolve(ev.alert.id, "operator-7", None, T0 + timedelta(minutes=6))
    with pytest.raises(AlertNotFound):
        store.acknowledge("nope", "operator-7", None, T0)
    store.save([fire(AlertBook([]), minutes=7)])  # the worker's late update does not reopen it
    assert store.get(ev.alert.id).status is AlertStatus.RESOLVED


def test_query_filters_and_cursor_pages(store):
    book = AlertBook()
    events = [fire(book, minutes=i, machine=f"m-{i}", severity=Severity.CRITICAL if i % 2 else Severity.WARNING)
              for i in range(25)]
    store.save(events)
    store.save([book.resolve((AlertKind.ANOMALY, "line-1", "m-3", None), T0 + timedelta(hours=1))])
    assert [a.machine for a in store.query(limit=3)] == ["m-24", "m-23", "m-22"]  # newest first
    assert [a.machine for a in store.query(status=["resolved"])] == ["m-3"]
    assert len(store.query(severity=["critical"])) == 12
    assert [a.machine for a in store.query(machine="m-7")] == ["m-7"]
    window = store.query(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=12))
    assert [a.machine for a in window] == ["m-11", "m-10"]
    seen, after = [], None
    while True:
        page = store.query(limit=10, after=after)
        seen += [a.machine for a in page]
        if len(page) < 10:
            break
        after = decode_cursor(encode_cursor(page[-1]))
    assert seen == [f"m-{i}" for i in range(24, -1, -1)]
    assert store.query(line="line-2") == [] and store.ping()


def test_silences(store):
    now = T0
    s = store.add_silence(line=None, machine="cutter-1", kind=None, starts_at=now, ends_at=now + timedelta(hours=1),
                          created_by="maintenance", reason="bearing replacement", at=now)
    assert [x.id for x in store.silences(active_at=now + timedelta(minutes=30))] == [s.id]
    assert store.silences(active_at=now + timedelta(hours=2)) == []
    store.end_silence(s.id, now + timedelta(minutes=10))
    assert store.silences(active_at=now + timedelta(minutes=30)) == []
    assert store.silences()[0].reason == "bearing replacement"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_frozen_inside_a_transaction_does_not_hold_its_locks_for_ever(database_url):
    # SIGSTOP, a paused VM: the server ends a session idle inside a transaction, so the rows it locked
    # are free again for the partitions' new owner (issue 16; a stopped worker held them for 100 s)
    import time

    from sqlalchemy.exc import DBAPIError

    from linewatch.alerts.store import DB_TIMEOUT_SECONDS
    from linewatch.detect.state import StateStore

    store = AlertStore(database_url)
    state = StateStore(store.engine)
    state.save({"machine:m": b"a"}, {"machine:m": ("raw.m", 0, 10)})
    frozen = store.engine.connect()
    try:
        frozen.exec_driver_sql("SELECT key FROM detector_state FOR UPDATE")  # locked, then nothing more
        time.sleep(DB_TIMEOUT_SECONDS + 2)
        assert state.save({"machine:m": b"b"}, {"machine:m": ("raw.m", 0, 20)}) == {}  # not blocked
        with pytest.raises(DBAPIError):  # the frozen session was ended by the server
            frozen.exec_driver_sql("SELECT 1")
    finally:
        frozen.close()
        store.close()
    assert StateStore(AlertStore(database_url).engine).load() == {"machine:m": b"b"}


def test_an_episode_the_store_closed_is_never_announced_again(store):
    book = AlertBook()
    fired = fire(book)
    ended = T0 + timedelta(minutes=5)
    key = (AlertKind.ANOMALY, "line-1", "extruder-1", None)
    batch = [fired, book.resolve(key, ended)]
    assert store.save(batch).announce == batch  # new to the store: all of it
    # the worker crashed before the sinks had the batch: its replay is all announced (at least once)
    crashed = AlertBook()
    replayed = [fire(crashed), crashed.resolve(key, ended)]
    assert store.save(replayed).announce == replayed
    store.announced([fired.alert.id])  # the sinks have it now

    # a worker replaying the same data from a stale state makes the same episode again
    replay = AlertBook()
    saved = store.save([fire(replay), fire(replay, minutes=2, severity=Severity.CRITICAL)])
    assert saved.announce == [] and saved.over == frozenset()  # the replay goes on to the same resolution
    assert store.save([replay.resolve(key, ended)]).announce == []
    assert store.get(fired.alert.id).ended_at == ended
    # past the stored end the worker is not replaying: its episode is over, the condition a new alert
    going_on = AlertBook()
    fire(going_on)
    saved = store.save([fire(going_on, minutes=6)])
    assert saved.announce == [] and saved.over == {fired.alert.id}

    # resolved by a person: announced by the API, over at once for the worker
    book = AlertBook()
    dryer = fire(book, machine="dryer-1")
    store.save([dryer])
    store.resolve(dryer.alert.id, "shift-lead", "filter changed", T0 + timedelta(minutes=3))
    assert store.save([fire(book, minutes=2, machine="dryer-1")]).over == {dryer.alert.id}
    late = book.resolve((AlertKind.ANOMALY, "line-1", "dryer-1", None), T0 + timedelta(minutes=4))
    newer = fire(book, minutes=9, machine="dryer-1")  # the next episode is new and is announced
    assert store.save([fire(book, minutes=1, machine="cutter-1"), late, newer]).announce[1:] == [newer]


def test_alerts_stored_before_verdicts_existed_read_as_unjudged(tmp_path):
    # a plant's database at revision 0005 (before migration 0006), with an alert in it
    from alembic import command
    from alembic.config import Config
    from importlib import resources
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("linewatch.alerts") / "migrations"))
    engine = create_engine(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0005")
        connection.exec_driver_sql(
            "INSERT INTO alerts (id, kind, severity, status, line, machine, started_at, last_seen_at, summary, "
            "details, announced) VALUES ('old', 'anomaly', 'warning', 'resolved', 'line-1', 'extruder-1', "
            "'2026-01-05 06:00:00', '2026-01-05 06:01:00', 's', '{}', 1)")
    engine.dispose()
    store = AlertStore(url)  # migrates to head
    try:
        assert store.get("old").verdict is None
        judged = store.judge("old", AlertVerdict.FALSE_ALARM, "lab", "fine on the test", T0 + timedelta(hours=1))
        assert judged.verdict is AlertVerdict.FALSE_ALARM and judged.status is AlertStatus.RESOLVED
        [action] = store.actions_since(0)
        assert (action.action, action.verdict, action.machine) == ("verdict", AlertVerdict.FALSE_ALARM, "extruder-1")
    finally:
        store.close()


def test_an_open_alert_checkpointed_before_verdicts_existed_restores_unjudged():
    # the pickled state of an Alert written by a linewatch without the verdict fields
    import pickle

    from linewatch.domain import Alert

    alert = fire(AlertBook()).alert
    state = alert.__reduce_ex__(4)[2]
    old = {k: v for k, v in state[1].items() if not k.startswith("verdict")}
    restored = Alert.__new__(Alert)
    restored.__setstate__((None, old))
    assert restored.verdict is None and restored.to_dict()["verdict"] is None and restored.id == alert.id
    assert pickle.loads(pickle.dumps(restored)) == restored


# ------------------------------------------------------------------------------------------ model versions


def version(n: int, recipe=None, machine="extruder-1", state=b"model"):
    from linewatch.detect.versions import ModelVersion, version_id

    made = T0 + timedelta(hours=n)
    return ModelVersion(id=version_id(machine, recipe, n, made), machine=machine, line="line-1", recipe=recipe,
                        version=n, kind="mewma", settings={"model": "mewma"},
                        reason="first_calibration" if n == 1 else "new_normal", made_at=made, readings=700,
                        learned_from=made - timedelta(seconds=699), threshold=12.5,
                        normal_ranges={"die_pressure": [180.0 + n, 190.0 + n]}, calibration={"readings": 300},
                        made_by=None if n == 1 else "eng-3", state=state)


def test_versions_are_saved_once_and_the_newest_is_the_one_in_use(store):
    store.save_versions([version(1)])
    store.save_versions([version(1)])  # a replayed batch
    store.save_versions([version(2), version(1, recipe="B")])
    listed = store.model_versions("extruder-1")
    assert [(v.version, v.status) for v in listed] == [(2, "active"), (1, "superseded")]
    assert listed[0].made_by == "eng-3" and listed[0].normal_ranges == {"die_pressure": [182.0, 192.0]}
    assert listed[0].state == b"" and listed[0].state_kept  # a listing does not read the states
    assert store.model_version("extruder-1", 2, with_state=True).state == b"model"
    assert [v.status for v in store.model_versions("extruder-1", "B")] == ["active"]  # each recipe its own
    assert len(store.model_versions("extruder-1", every_recipe=True)) == 3
    assert store.latest_model_versions() == {("extruder-1", None): 2, ("extruder-1", "B"): 1}
    latest = store.latest_versions()
    assert {k: (r.version, r.made_at, r.reason) for k, r in latest.items()} == {
        ("extruder-1", None): (2, T0 + timedelta(hours=2), "new_normal"),
        ("extruder-1", "B"): (1, T0 + timedelta(hours=1), "first_calibration")}
    assert store.model_version("extruder-1", 7) is None


def test_retention_drops_old_states_but_keeps_their_records_and_the_one_in_use(store):
    store.save_versions([version(n) for n in range(1, 6)], keep=2)
    listed = store.model_versions("extruder-1")
    assert [(v.version, v.state_kept) for v in listed] == [(5, True), (4, True), (3, False), (2, False), (1, False)]
    assert listed[-1].normal_ranges  # an old alert can still say what was normal when it was raised


def test_a_rollback_during_a_batch_stands_against_the_version_that_batch_learned(store):
    store.save_versions([version(1), version(2)])
    batch_began = T0 + timedelta(days=1)
    store.activate_version("extruder-1", None, 1, by="lead", note="rollback", at=batch_began + timedelta(seconds=1),
                           kind="mewma")
    store.save_versions([version(3)], since=batch_began)  # learned in a batch that began before the rollback
    assert [(v.version, v.status) for v in store.model_versions("extruder-1")] == [
        (3, "superseded"), (2, "superseded"), (1, "active")]
    store.save_versions([version(4)], since=batch_began + timedelta(minutes=1))  # a later batch's: it goes live
    assert [v.version for v in store.model_versions("extruder-1") if v.status == "active"] == [4]


def test_only_one_version_is_ever_in_use_per_machine_and_recipe(store):
    import dataclasses

    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from linewatch.alerts.store import ModelVersionRow

    store.save_versions([version(1)])
    row = store.model_versions("extruder-1")[0]
    with pytest.raises(IntegrityError), Session(store.engine) as session, session.begin():
        session.add(ModelVersionRow(id="second", machine="extruder-1", line="line-1", recipe="", version=2,
                                    kind="mewma", settings={}, reason="new_normal", made_at=T0, readings=1,
                                    normal_ranges={}, status="active", recorded_at=T0))
    assert dataclasses.replace(row).status == "active" and len(store.model_versions("extruder-1")) == 1
