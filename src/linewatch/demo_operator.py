"""The demo's operator: judges the alerts the simulated line raised, as a person on the line would.

The simulator knows which faults it injected and when, so the demo can answer what an operator
answers after a look at the machine: an alert that overlaps an injected fault on its machine (or, for
a failure-rate alert, a failure-rate fault on its line) is a ``true_alarm``; any other is a
``false_alarm``. It gives each verdict through the HTTP API with the demo's token, like anyone else,
so the verdicts are journalled, counted in Prometheus and summed up in ``GET /api/v1/verdicts``:
the demo shows its detectors' live precision, measured against what really happened.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta

from linewatch.domain import AlertKind, AlertVerdict
from linewatch.sources.simulator import Fault

log = logging.getLogger(__name__)
WHO = "demo-operator"
# how long after a fault ends its alert may still be open: the charts' memory and the clearing rule
AFTERMATH = timedelta(minutes=5)


def verdict_for(alert: dict, faults: Sequence[Fault], sim_start: datetime) -> tuple[AlertVerdict, str] | None:
    """The verdict (and the note saying why) for an alert of the API's JSON form; None for kinds the
    operator leaves alone (data quality, stale streams: about the data, not the product)."""
    kind = alert["kind"]
    if kind not in (AlertKind.ANOMALY.value, AlertKind.FAILURE_RATE.value):
        return None
    started = datetime.fromisoformat(alert["started_at"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat((alert["ended_at"] or alert["last_seen_at"]).replace("Z", "+00:00"))
    for f in faults:
        if kind == AlertKind.ANOMALY.value and (f.machine != alert["machine"] or f.kind == "failure_rate"):
            continue
        if kind == AlertKind.FAILURE_RATE.value and f.kind != "failure_rate":
            continue
        begins = sim_start + timedelta(seconds=f.start)
        if started < begins + timedelta(seconds=f.duration) + AFTERMATH and ended >= begins:
            return AlertVerdict.TRUE_ALARM, f"the simulator injected {f.describe()}"
    where = alert["machine"] or alert["line"]
    return AlertVerdict.FALSE_ALARM, f"no fault was injected on {where} at the time"


class DemoOperator(threading.Thread):
    """Every few seconds, judges the resolved alerts nobody has judged yet."""

    def __init__(self, api: str, token: str, faults: Sequence[Fault], sim_start: datetime,
                 every_seconds: float = 2.0):
        super().__init__(name="demo-operator", daemon=True)
        self.api, self.token, self.faults, self.sim_start = api.rstrip("/"), token, tuple(faults), sim_start
        self.every = every_seconds
        self.stopped = threading.Event()
        self.judged = 0

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.judge_resolved()
            except (OSError, ValueError) as exc:  # the API is starting or stopping: try again next round
                log.debug("demo operator could not judge alerts yet: %s", exc)

    def judge_resolved(self) -> int:
        """Give a verdict on every resolved alert without one; how many it judged."""
        body = self._call("GET", "/api/v1/alerts?status=resolved&limit=1000")
        done = 0
        for alert in body["alerts"]:
            if alert["verdict"] is not None:
                continue
            decided = verdict_for(alert, self.faults, self.sim_start)
            if decided is None:
                continue
            verdict, note = decided
            self._call("POST", f"/api/v1/alerts/{alert['id']}/verdict",
                       {"by": WHO, "verdict": verdict.value, "note": note})
            done += 1
        self.judged += done
        return done

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(self.api + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=15)
