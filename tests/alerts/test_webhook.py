import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.webhook import WebhookSender, alertmanager_payload
from linewatch.domain import AlertKind, Severity

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def test_payload_has_alertmanagers_shape():
    book = AlertBook()
    ev = book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.CRITICAL, "die pressure 214 bar", {})
    body = alertmanager_payload([ev], "http://linewatch:8000")
    assert body["version"] == "4" and body["status"] == "firing"
    [alert] = body["alerts"]
    assert alert["labels"] == {"alertname": "linewatch_anomaly", "kind": "anomaly", "severity": "critical",
                               "line": "line-1", "machine": "extruder-1"}
    assert alert["annotations"]["summary"] == "die pressure 214 bar"
    assert alert["startsAt"] == "2026-01-05T06:00:00Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    resolved = book.resolve((AlertKind.ANOMALY, "line-1", "extruder-1", None), T0 + timedelta(minutes=4))
    assert alertmanager_payload([resolved])["alerts"][0]["endsAt"] == "2026-01-05T06:04:00Z"


def test_sender_posts_announced_events_and_retries():
    received, calls = [], {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            calls["n"] += 1
            if calls["n"] == 1:  # the receiver hiccups once
                self.send_response(503)
                self.end_headers()
                return
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = WebhookSender(f"http://127.0.0.1:{server.server_port}/hook", attempts=3)
    try:
        book = AlertBook()
        fired = book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0, Severity.WARNING, "rate up", {})
        update = book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0, Severity.WARNING, "rate up", {})
        sender([fired, update])
        sender.close(timeout=10)
    finally:
        server.shutdown()
    assert calls["n"] == 2 and len(received) == 1
    assert [a["labels"]["kind"] for a in received[0]["alerts"]] == ["failure_rate"]  # the update is not announced
    assert sender.sent == 1 and sender.failed == 0


def test_the_payload_names_the_model_version_and_the_verdict():
    from linewatch.domain import AlertVerdict

    book = AlertBook()
    ev = book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "s", {"model_version": 3})
    [alert] = alertmanager_payload([ev])["alerts"]
    assert alert["annotations"]["model_version"] == "3" and "verdict" not in alert["annotations"]
    book.judged(ev.alert.id, AlertVerdict.TRUE_ALARM, "op-7", T0, None)
    again = book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "s", {"model_version": 3})
    assert alertmanager_payload([again])["alerts"][0]["annotations"]["verdict"] == "true_alarm"
    rate = book.raise_(AlertKind.FAILURE_RATE, "line-1", None, None, T0, Severity.WARNING, "s", {})
    assert "model_version" not in alertmanager_payload([rate])["alerts"][0]["annotations"]
