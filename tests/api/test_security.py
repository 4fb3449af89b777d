from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.api.security import token_matches
from linewatch.domain import AlertKind, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def make(config, tmp_path, **kwargs):
    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    pipeline = Pipeline(config, Metrics(), AlertBook())
    ev = pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, T0, Severity.WARNING, "x", {})
    store.save([ev])
    return TestClient(create_app(store, pipeline, pipeline.metrics, **kwargs)), ev.alert.id


def test_without_a_configured_token_changes_are_refused(config, tmp_path):
    client, alert_id = make(config, tmp_path)
    r = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"by": "operator-7"})
    assert r.status_code == 403 and "LINEWATCH_API_TOKEN" in r.json()["detail"]
    assert client.get("/api/v1/alerts").status_code == 200  # reading stays open


def test_writes_need_the_right_bearer_token(config, tmp_path):
    client, alert_id = make(config, tmp_path, api_token="s3cret")
    url = f"/api/v1/alerts/{alert_id}/ack"
    assert client.post(url, json={"by": "x"}).status_code == 401
    wrong = client.post(url, json={"by": "x"}, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.post(url, json={"by": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/api/v1/silences", json={"machine": "cutter-1", "minutes": 5, "by": "x", "reason": "y"}
                       ).status_code == 401


def test_protected_reads_cover_every_read_but_health(config, tmp_path):
    client, _ = make(config, tmp_path, api_token="s3cret", read_token="r3ad", protect_reads=True)
    for path in ("/api/v1/alerts", "/api/v1/lines", "/metrics", "/docs", "/openapi.json", "/board",
                 "/static/board.js", "/api/v1/alerts/stream"):
        assert client.get(path).status_code == 401, path
    for open_path in ("/healthz", "/readyz"):
        assert client.get(open_path).status_code in (200, 503), open_path
    for token in ("s3cret", "r3ad"):
        assert client.get("/api/v1/lines", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # a wall screen's URL carries the read token, never the write token
    assert client.get("/api/v1/lines", params={"access_token": "s3cret"}).status_code == 401
    assert client.get("/api/v1/lines", params={"access_token": " r3ad"}).status_code == 401


def test_a_board_opened_with_the_read_token_loads_the_rest_by_cookie(config, tmp_path):
    client, _ = make(config, tmp_path, api_token="s3cret", read_token="r3ad", protect_reads=True)
    page = client.get("/board", params={"access_token": "r3ad"})
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    for path in ("/static/board.js", "/api/v1/lines"):  # the client keeps the cookie, as a browser would
        assert client.get(path).status_code == 200, path
    fresh = TestClient(client.app)
    fresh.cookies.set("linewatch_read", "guess")
    assert fresh.get("/api/v1/lines").status_code == 401


def test_writes_take_the_token_from_the_authorization_header_only(config, tmp_path):
    client, alert_id = make(config, tmp_path, api_token="s3cret", read_token="r3ad", protect_reads=True)
    url = f"/api/v1/alerts/{alert_id}/ack"
    assert client.post(url, params={"access_token": "s3cret"}, json={"by": "x"}).status_code == 401
    assert client.post(url, json={"by": "x"}, headers={"Authorization": "Basic czNjcmV0"},
                       params={"access_token": "s3cret"}).status_code == 401
    assert client.post(url, json={"by": "x"}, headers={"Authorization": "Bearer r3ad"}).status_code == 401
    client.get("/board", params={"access_token": "r3ad"})  # holds the read cookie now: still no write
    assert client.post(url, json={"by": "x"}).status_code == 401
    assert client.post(url, json={"by": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize(("tokens", "problem"), [
    ({"api_token": ""}, "LINEWATCH_API_TOKEN is set but blank"),
    ({"api_token": "  "}, "LINEWATCH_API_TOKEN is set but blank"),
    ({"api_token": "a", "read_token": " "}, "LINEWATCH_READ_TOKEN is set but blank"),
    ({"protect_reads": True}, "LINEWATCH_PROTECT_READS=true needs"),
    ({"api_token": "same", "read_token": "same"}, "must differ"),
])
def test_settings_that_would_weaken_access_stop_startup(tokens, problem):
    from pydantic import ValidationError

    from linewatch.settings import Settings

    with pytest.raises(ValidationError, match=problem):
        Settings(**tokens)


def test_large_bodies_are_refused(config, tmp_path):
    client, alert_id = make(config, tmp_path, api_token="s3cret", max_body_bytes=2048)
    r = client.post(f"/api/v1/alerts/{alert_id}/ack", content=b'{"by": "' + b"x" * 5000 + b'"}',
                    headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"})
    assert r.status_code == 413

    def chunks():
        yield b'{"by": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    r = client.post(f"/api/v1/alerts/{alert_id}/ack", content=chunks(),
                    headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"})
    assert r.status_code == 413


def test_cors_only_for_configured_origins(config, tmp_path):
    client, _ = make(config, tmp_path, cors_origins=["http://grafana.plant:3000"])
    ok = client.get("/api/v1/lines", headers={"Origin": "http://grafana.plant:3000"})
    assert ok.headers["access-control-allow-origin"] == "http://grafana.plant:3000"
    other = client.get("/api/v1/lines", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(("presented", "ok"), [("abc", True), ("abd", False), (None, False), ("", False)])
def test_token_comparison(presented, ok):
    assert token_matches(presented, "abc") is ok
