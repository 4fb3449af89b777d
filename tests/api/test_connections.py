"""Connections without limits, on the real uvicorn server: silent and slow clients are closed, live
streams are not, and live streams are capped."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from linewatch.alerts.broadcast import Broadcaster
from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.service import HttpServer

DEADLINE = 1.0  # seconds a connection has to send a complete request
BOUND = 15.0  # how long the test waits for anything at most (never a timing assertion)


@pytest.fixture
def server(config, tmp_path):
    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    pipeline = Pipeline(config, Metrics(), AlertBook())
    app = create_app(store, pipeline, pipeline.metrics, broadcaster=Broadcaster(max_clients=2))
    http = HttpServer(app, "127.0.0.1", 0, request_timeout=DEADLINE, idle_timeout=DEADLINE)
    http.start()
    try:
        yield http, app, pipeline
    finally:
        http.stop()
        store.close()


def _event(pipeline):
    from datetime import datetime, timezone

    from linewatch.domain import AlertKind, Severity

    return pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, datetime.now(timezone.utc),
                                Severity.WARNING, "extruder-1: die pressure 214 bar, normal 180–190", {})


def _closed_by_server(sock: socket.socket, trickle: bytes = b"") -> bool:
    """Whether the server closes ``sock`` while it sends ``trickle`` one byte at a time (then nothing)."""
    sock.settimeout(0.2)
    give_up = time.monotonic() + BOUND
    sent = 0
    while time.monotonic() < give_up:
        if sent < len(trickle):
            try:
                sock.send(trickle[sent:sent + 1])
            except OSError:
                return True
            sent += 1
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:  # reset
            return True
    return False


def test_a_connection_that_sends_nothing_is_closed(server):
    http, _, _ = server
    with socket.create_connection(("127.0.0.1", http.port), timeout=BOUND) as sock:
        assert _closed_by_server(sock), "a silent connection stayed open"


def test_a_request_trickled_a_byte_at_a_time_is_closed_before_it_completes(server):
    http, _, _ = server
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 400 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", http.port), timeout=BOUND) as sock:
        assert _closed_by_server(sock, request), "a slow request held its connection"


def test_requests_in_time_are_served_and_a_live_stream_outlasts_the_deadline(server):
    http, app, pipeline = server
    url = f"http://127.0.0.1:{http.port}"
    with httpx.Client(timeout=BOUND) as client:  # one keep-alive connection, used twice
        assert client.get(url + "/healthz").status_code == 200
        assert client.get(url + "/healthz").status_code == 200
    with httpx.stream("GET", url + "/api/v1/alerts/stream", timeout=BOUND) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        time.sleep(3 * DEADLINE)  # past the request deadline and the idle timeout
        assert app.state.broadcaster.subscribers == 1
        app.state.broadcaster.publish([_event(pipeline)])  # the stream still carries what happens
        assert any(line.startswith("data: ") and "extruder-1" in line for line in lines)


def test_a_live_stream_pipelined_behind_another_request_is_not_cut(server):
    """httptools reads a pipelined request while the answer before it is being sent: the deadline must
    judge by what the connection is doing, not by which request it holds."""
    http, app, _ = server
    with socket.create_connection(("127.0.0.1", http.port), timeout=BOUND) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/alerts/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(BOUND)
        received = b""
        while b"connected" not in received:  # the first answer, then the stream's opening
            chunk = sock.recv(4096)
            assert chunk, "closed before the stream opened"
            received += chunk
        time.sleep(3 * DEADLINE)
        sock.settimeout(0.5)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            data = None  # nothing to read, and still open
        assert data != b"", "the deadline closed a connection that was sending a live stream"
        assert app.state.broadcaster.subscribers == 1


def test_live_streams_are_capped_and_a_freed_place_is_taken_again(server):
    http, app, _ = server
    url = f"http://127.0.0.1:{http.port}/api/v1/alerts/stream"
    hub = app.state.broadcaster
    with httpx.stream("GET", url, timeout=BOUND) as first, httpx.stream("GET", url, timeout=BOUND) as second:
        readers = [r.iter_lines() for r in (first, second)]  # kept: a dropped reader closes its stream
        for r, lines in zip((first, second), readers):
            assert r.status_code == 200 and next(lines).startswith("retry:")
        assert hub.subscribers == 2
        busy = httpx.get(url, timeout=BOUND)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) > 0
        assert "LINEWATCH_MAX_STREAM_CLIENTS" in busy.json()["detail"]
    give_up = time.monotonic() + BOUND
    while hub.subscribers and time.monotonic() < give_up:
        time.sleep(0.05)
    assert hub.subscribers == 0, "closed streams kept their places"
    with httpx.stream("GET", url, timeout=BOUND) as again:
        assert again.status_code == 200


def test_more_live_streams_than_connections_stops_startup_naming_both():
    from pydantic import ValidationError

    from linewatch.settings import Settings

    with pytest.raises(ValidationError) as err:
        Settings(max_stream_clients=1000, http_max_connections=1000)
    assert "LINEWATCH_MAX_STREAM_CLIENTS" in str(err.value) and "LINEWATCH_HTTP_MAX_CONNECTIONS" in str(err.value)
    assert Settings().max_stream_clients < Settings().http_max_connections  # the defaults start
