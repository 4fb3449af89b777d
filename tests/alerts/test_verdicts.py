from datetime import datetime, timedelta, timezone

from linewatch.alerts.verdicts import Judged, summarise
from linewatch.domain import AlertVerdict

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def judged(minutes_to_ack=None, verdict=None, machine="extruder-1", line="line-1", kind="anomaly",
           resolved_after=None, by=None):
    return Judged(line=line, machine=machine, kind=kind, started_at=T0, verdict=verdict,
                  acked_at=None if minutes_to_ack is None else T0 + timedelta(minutes=minutes_to_ack),
                  resolved_by=by, ended_at=None if resolved_after is None else T0 + timedelta(minutes=resolved_after))


def test_the_true_share_counts_only_alerts_judged_true_or_false():
    [s] = summarise([judged(verdict=AlertVerdict.TRUE_ALARM), judged(verdict=AlertVerdict.FALSE_ALARM),
                     judged(verdict=AlertVerdict.FALSE_ALARM), judged(verdict=AlertVerdict.NEW_NORMAL),
                     judged(verdict=AlertVerdict.UNCLEAR), judged()])
    assert s.raised == 6 and s.judged == 5 and s.true_share == 1 / 3
    assert s.to_dict()["verdicts"] == {"true_alarm": 1, "false_alarm": 2, "new_normal": 1, "unclear": 1}
    assert s.to_dict()["unjudged"] == 1


def test_no_share_before_anyone_judged_true_or_false():
    [s] = summarise([judged(verdict=AlertVerdict.UNCLEAR), judged()])
    assert s.true_share is None and s.to_dict()["true_share"] is None


def test_time_to_acknowledge_is_the_first_response_of_a_person():
    # acked after 2 and 10 minutes; resolved by hand after 4 without an ack; one cleared by itself
    [s] = summarise([judged(minutes_to_ack=2), judged(minutes_to_ack=10, resolved_after=30, by="op"),
                     judged(resolved_after=4, by="op"), judged(resolved_after=1)])
    assert s.median_seconds_to_acknowledge == 240.0
    [none] = summarise([judged(resolved_after=1)])
    assert none.median_seconds_to_acknowledge is None


def test_one_summary_per_machine_and_one_for_a_lines_own_alerts():
    out = summarise([judged(machine="cutter-1"), judged(), judged(machine=None, kind="failure_rate"),
                     judged(line="line-2", machine="dryer-9")])
    assert [(s.line, s.machine) for s in out] == [("line-1", None), ("line-1", "cutter-1"),
                                                  ("line-1", "extruder-1"), ("line-2", "dryer-9")]
    assert out[0].kinds == {"failure_rate": 1}
