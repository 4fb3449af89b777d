"""``linewatch models list|show|activate`` on a real SQLite alert database."""

from datetime import datetime, timedelta, timezone

import pytest

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.cli import main
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def database(config, tmp_path, monkeypatch):
    """Two versions of the extruder's normal (a first calibration and a new normal), as a worker records them."""
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    monkeypatch.setenv("LINEWATCH_DATABASE_URL", url)
    store = AlertStore(url)
    pipeline = Pipeline(config, Metrics(), AlertBook())
    for start in (0, 800):
        if start:
            pipeline.new_normal("extruder-1", by="eng-3", note="recipe trial")
        msgs = [m.message for m in LineSimulator(T0 + timedelta(seconds=start), SimulatorSettings(faults=())).messages(1100 if start else 800)]  # 300 in shadow
        for i in range(0, len(msgs), 500):
            store.save_versions(pipeline.process(msgs[i:i + 500]).versions)
    yield store
    store.close()


def test_list_and_show_say_what_each_version_learned(database, capsys):
    assert main(["models", "list", "extruder-1"]) == 0
    out = capsys.readouterr().out
    assert "extruder-1: 2 version(s)" in out
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("2", "active", "new_normal"), ("1", "superseded", "first_calibration")]
    assert rows[0][3] == "eng-3" and rows[0][-1] == "kept"
    assert main(["models", "show", "extruder-1", "1"]) == 0
    out = capsys.readouterr().out
    assert "version 1 (superseded): first calibration" in out and "live (v2)" in out and "die_pressure" in out
    assert main(["models", "show", "extruder-1", "9"]) == 1
    assert "has no version 9" in capsys.readouterr().err


def test_activate_puts_an_earlier_version_back_with_who_and_why(database, capsys):
    assert main(["models", "activate", "extruder-1", "1", "--by", "lead", "--why", "trial failed"]) == 0
    assert "version 1 is in use again" in capsys.readouterr().out
    assert [(v.version, v.status) for v in database.model_versions("extruder-1")] == [(2, "superseded"), (1, "active")]
    [action] = [a for a in database.actions_since(0) if a.action == "activate"]
    assert (action.by, action.note, action.model_version) == ("lead", "trial failed", 1)


def test_refusals_are_clear_and_change_nothing(database, capsys):
    assert main(["models", "list", "press-9"]) == 2
    assert "no machine 'press-9'" in capsys.readouterr().err
    assert main(["models", "list", "cutter-1", "--recipe", "B"]) == 0
    assert "no model version recorded yet" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --why is required
        main(["models", "activate", "extruder-1", "1", "--by", "lead"])
    assert not [a for a in database.actions_since(0) if a.action == "activate"]


def test_export_then_import_makes_the_next_version_and_puts_it_in_use(database, capsys, tmp_path, config):
    out = tmp_path / "extruder-v1.json"
    assert main(["models", "export", "extruder-1", "1", "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out and out.stat().st_size > 1000
    seq = database.last_action_seq()
    assert main(["models", "import", "extruder-1", str(out), "--by", "eng-3", "--why", "proven on line 2"]) == 0
    assert "version 3 imported from extruder-1 version 1" in capsys.readouterr().out
    v3 = database.model_version("extruder-1", 3, with_state=True)
    assert (v3.status, v3.reason, v3.made_by) == ("active", "imported", "eng-3") and "proven on line 2" in v3.note
    assert v3.normal_ranges == database.model_version("extruder-1", 1).normal_ranges
    [action] = database.actions_since(seq)
    assert (action.action, action.machine, action.model_version) == ("activate", "extruder-1", 3)
    # the worker that owns the machine swaps to it when it reads the journal
    from linewatch.alerts.sync import sync_people_actions

    pipeline = Pipeline(config, Metrics(), AlertBook())
    msgs = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=())).messages(800)]
    pipeline.process(msgs)
    pipeline.book.actions_seen = seq
    sync_people_actions(pipeline, database)
    assert pipeline.models["extruder-1"].lineage.version == 3 and pipeline.models["extruder-1"].machine == "extruder-1"


def test_an_import_that_does_not_fit_or_is_not_an_export_changes_nothing(database, capsys, tmp_path):
    out = tmp_path / "extruder-v1.json"
    assert main(["models", "export", "extruder-1", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    seq = database.last_action_seq()
    assert main(["models", "import", "cutter-1", str(out), "--by", "eng-3", "--why", "x"]) == 1
    assert "other sensors" in capsys.readouterr().err  # an extruder's normal on a cutter
    bad = tmp_path / "edited.json"
    bad.write_text(out.read_text().replace('"version": 1', '"version": 7', 1))
    assert main(["models", "import", "extruder-1", str(bad), "--by", "eng-3", "--why", "x"]) == 1
    assert "checksum does not match" in capsys.readouterr().err
    assert main(["models", "import", "extruder-1", str(tmp_path / "missing.json"), "--by", "a", "--why", "b"]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert database.last_action_seq() == seq and len(database.model_versions("extruder-1")) == 2
