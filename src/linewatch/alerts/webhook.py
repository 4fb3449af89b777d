"""Alert events to a webhook in Prometheus Alertmanager's format, so existing receivers (chat,
paging, ticketing bridges written for Alertmanager) work unchanged.

Sending happens on a thread of its own with a bounded queue: a slow or absent receiver never holds
up the line's monitoring. Failed posts are retried with backoff, then dropped with a log line.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from linewatch.domain import Alert, AlertEvent, AlertEventType, AlertStatus

log = logging.getLogger(__name__)
ANNOUNCED = {AlertEventType.FIRED, AlertEventType.ESCALATED, AlertEventType.RESOLVED}


def alertmanager_payload(events: Sequence[AlertEvent], external_url: str = "") -> dict[str, Any]:
    """The body Alertmanager (webhook_config, version 4) would post for these events."""
    alerts = [_alert(ev.alert, external_url) for ev in events]
    firing = any(a["status"] == "firing" for a in alerts)
    common = {k: v for k, v in alerts[0]["labels"].items()
              if all(a["labels"].get(k) == v for a in alerts)} if alerts else {}
    return {
        "version": "4", "receiver": "linewatch", "status": "firing" if firing else "resolved",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(common.items())) + "}",
        "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": common, "commonAnnotations": {},
        "externalURL": external_url, "alerts": alerts,
    }


def _alert(a: Alert, external_url: str) -> dict[str, Any]:
    labels = {"alertname": f"linewatch_{a.kind.value}", "kind": a.kind.value, "severity": a.severity.value,
              "line": a.line}
    if a.machine:
        labels["machine"] = a.machine
    if a.sensor:
        labels["sensor"] = a.sensor
    resolved = a.status is AlertStatus.RESOLVED
    annotations = {"summary": a.summary, "description": json.dumps(a.details, default=str)[:2000]}
    if a.details.get("model_version") is not None:  # the version of the machine's normal that raised it
        annotations["model_version"] = str(a.details["model_version"])
    if a.verdict is not None:
        annotations["verdict"] = a.verdict.value
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": a.started_at.isoformat().replace("+00:00", "Z"),
        "endsAt": (a.ended_at or a.last_seen_at).isoformat().replace("+00:00", "Z") if resolved
        else "0001-01-01T00:00:00Z",
        "generatorURL": f"{external_url}/api/v1/alerts/{a.id}" if external_url else "",
        "fingerprint": a.id.replace("-", "")[:16],
    }


class WebhookSender:
    def __init__(self, url: str, external_url: str = "", timeout: float = 5.0, attempts: int = 5,
                 queue_size: int = 1000):
        self.url, self.external_url, self.timeout, self.attempts = url, external_url, timeout, attempts
        self.queue: queue.Queue[list[AlertEvent] | None] = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = 0
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def __call__(self, events: Sequence[AlertEvent]) -> None:
        """Queue the announced, unsilenced events; never blocks the caller."""
        chosen = [ev for ev in events if ev.type in ANNOUNCED and not ev.alert.silence_id]
        if not chosen:
            return
        try:
            self.queue.put_nowait(chosen)
        except queue.Full:
            self.failed += len(chosen)
            log.error("webhook queue full: %d alert event(s) not sent to %s", len(chosen), self.url)

    def _run(self) -> None:
        while True:
            events = self.queue.get()
            if events is None:
                return
            body = json.dumps(alertmanager_payload(events, self.external_url)).encode()
            delay = 0.5
            for attempt in range(1, self.attempts + 1):
                try:
                    req = urllib.request.Request(self.url, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                        resp.read()
                    self.sent += len(events)
                    break
                except Exception as exc:  # receiver down or refusing: retry, then give up loudly
                    if attempt == self.attempts:
                        self.failed += len(events)
                        log.error("webhook %s failed %d times (%s); %d alert event(s) dropped", self.url,
                                  attempt, exc, len(events))
                    else:
                        time.sleep(delay)
                        delay *= 2

    def close(self, timeout: float = 5.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)
