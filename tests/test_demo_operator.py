from datetime import datetime, timedelta, timezone

from linewatch.demo_operator import verdict_for
from linewatch.domain import AlertVerdict
from linewatch.sources.simulator import Fault

START = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
FAULTS = (Fault("spike", "extruder-1", start=900, duration=25, sensor="die_pressure", magnitude=30.0),
          Fault("failure_rate", "checkweigher-1", start=1500, duration=1800, magnitude=0.20))


def alert(kind="anomaly", machine="extruder-1", start=905, end=1100):
    iso = lambda s: (START + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")  # noqa: E731
    return {"kind": kind, "machine": machine, "line": "line-1", "started_at": iso(start), "ended_at": iso(end),
            "last_seen_at": iso(end)}


def test_an_alert_over_an_injected_fault_on_its_machine_is_a_true_alarm():
    verdict, note = verdict_for(alert(), FAULTS, START)
    assert verdict is AlertVerdict.TRUE_ALARM and "die_pressure +30" in note
    # still open a few minutes after the fault ended: the charts remember it
    assert verdict_for(alert(start=1100, end=1200), FAULTS, START)[0] is AlertVerdict.TRUE_ALARM


def test_an_alert_with_no_fault_on_its_machine_then_is_a_false_alarm():
    verdict, note = verdict_for(alert(machine="cutter-1"), FAULTS, START)
    assert verdict is AlertVerdict.FALSE_ALARM and "cutter-1" in note
    assert verdict_for(alert(start=5000, end=5100), FAULTS, START)[0] is AlertVerdict.FALSE_ALARM
    assert verdict_for(alert(start=100, end=200), FAULTS, START)[0] is AlertVerdict.FALSE_ALARM


def test_a_failure_rate_alert_is_judged_by_the_lines_failure_rate_faults():
    assert verdict_for(alert("failure_rate", None, 1700, 3000), FAULTS, START)[0] is AlertVerdict.TRUE_ALARM
    verdict, note = verdict_for(alert("failure_rate", None, 100, 300), FAULTS, START)
    assert verdict is AlertVerdict.FALSE_ALARM and "line-1" in note


def test_alerts_about_the_data_are_left_alone():
    assert verdict_for(alert("data_quality"), FAULTS, START) is None
    assert verdict_for(alert("stale_stream"), FAULTS, START) is None
