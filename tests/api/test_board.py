"""The wall board (/board) in a real headless Chromium against a real HTTP server.

Uses Debian's chromium and chromedriver (packages chromium, chromium-driver): the driver path is given,
so selenium-manager never downloads a browser. Without them the tests skip, unless
LINEWATCH_REQUIRE_BROWSER=1: then they fail. A screenshot is kept as artifacts/board.png.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi import FastAPI

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import AlertStore
from linewatch.api.app import create_app
from linewatch.domain import AlertKind, AlertVerdict, Severity
from linewatch.metrics import Metrics
from linewatch.pipeline import Pipeline
from linewatch.service import HttpServer
from linewatch.sources.simulator import LineSimulator, SimulatorSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
SUMMARY = "extruder-1: die pressure 214 bar, normal 180–190"
TILE = '[data-machine="{}"]'


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver; pip install selenium)"
    if os.environ.get("LINEWATCH_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + "; LINEWATCH_REQUIRE_BROWSER=1 makes this a failure")
    pytest.skip(reason)


@pytest.fixture
def browser():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1920,1080",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1920, 1080)
    # the page as on a 1080p wall screen in kiosk mode: the whole 1920 x 1080 is the page
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Plant:
    """The API over a pipeline that has seen some of the simulated line, served on a real port."""

    store: AlertStore
    pipeline: Pipeline
    last_reading: datetime
    app: FastAPI | None = None
    server: HttpServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/board"

    def serve(self, port: int = 0, **app_options) -> None:
        """A new app and server, as after a restart (a new broadcaster, no SSE client yet)."""
        self.app = create_app(self.store, self.pipeline, self.pipeline.metrics, **app_options)
        self.server = HttpServer(self.app, "127.0.0.1", port)
        self.server.start()

    def fire(self, at: datetime) -> None:
        """What the worker does when the extruder's die pressure jumps."""
        ev = self.pipeline.book.raise_(AlertKind.ANOMALY, "line-1", "extruder-1", None, at, Severity.CRITICAL,
                                       SUMMARY, {})
        self.store.save([ev])
        self.app.state.broadcaster.publish([ev])

    def stop(self) -> None:
        """What a restart looks like to the browser: the listener and every open connection go away.

        HttpServer.stop() alone would wait (10 s, then give up) for the never-ending SSE response
        (uvicorn's graceful shutdown), leaving the browser connected to a server that is going away.
        """
        if not self.server.thread.is_alive():
            return
        uv = self.server.server
        loop = uv.servers[0].get_loop()
        uv.should_exit = True
        loop.call_soon_threadsafe(lambda: [c.transport.close() for c in list(uv.server_state.connections)])
        self.server.stop()
        assert not self.server.thread.is_alive(), "the old server did not stop"


def _plant(config, tmp_path, seconds: float, faults=()) -> Plant:
    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    pipeline = Pipeline(config, Metrics(), AlertBook())
    messages = [m.message for m in LineSimulator(T0, SimulatorSettings(faults=faults)).messages(seconds)]
    for i in range(0, len(messages), 500):  # in batches, as the worker reads them
        store.save(pipeline.process(messages[i:i + 500]).events)
    plant = Plant(store, pipeline, last_reading=T0 + timedelta(seconds=seconds))
    plant.serve()
    return plant


@pytest.fixture
def plant(config, tmp_path):
    # 1100 s of line time: past the 1000-unit baseline, so the line header shows a real failure rate
    p = _plant(config, tmp_path, 1100)
    yield p
    p.stop()
    p.store.close()


def test_with_protected_reads_the_board_opens_with_the_read_token_only(browser, plant):
    from selenium.webdriver.common.by import By

    plant.stop()
    plant.serve(api_token="write-s3cret", read_token="wall-r3ad", protect_reads=True)
    browser.get(plant.url)
    assert "Reading needs a token" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(plant.url + "?access_token=write-s3cret")  # the write token never opens it from a URL
    assert "Reading needs a token" in browser.find_element(By.TAG_NAME, "body").text

    browser.get(plant.url + "?access_token=wall-r3ad")
    # scripts, styles, fetches and the event stream all pass on the cookie the page was given
    _wait(browser, 10, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-connection") == "live",
          "the protected board did not connect to the alert stream")
    _wait(browser, 5, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-machine]"), "no tiles drawn")
    plant.fire(plant.last_reading)
    _wait(browser, 10, lambda d: _tile(d, "extruder-1").get_attribute("data-status") == "alarm",
          "the protected board did not show the alert")
    assert browser.get_cookie("linewatch_read")["httpOnly"] is True


def _wait(driver, timeout: float, condition, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]) \
        .until(condition, message)


def _settled(read):
    """``read()`` of elements the page may redraw meanwhile (an event, a reconnect, a refresh): read
    again from fresh elements rather than fail on a replaced one."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(10):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.2)
    return read()


def _tile(driver, machine: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, TILE.format(machine))


def _css(driver, element, prop: str) -> str:
    return driver.execute_script("return getComputedStyle(arguments[0]).getPropertyValue(arguments[1])", element, prop)


def _rgb(value: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in value[value.index("(") + 1:value.index(")")].split(",")[:3])


def test_tile_turns_red_when_an_alert_fires(browser, plant, config):
    from selenium.webdriver.common.by import By

    browser.get(plant.url)
    _wait(browser, 10, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-connection") == "live",
          "the board did not connect to the alert stream")
    _wait(browser, 5, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-machine]"), "no tiles drawn")

    # every configured machine has a tile, under its own line
    for line in config.lines:
        section = browser.find_element(By.CSS_SELECTOR, f'section[data-line="{line}"]')
        tiles = {t.get_attribute("data-machine") for t in section.find_elements(By.CSS_SELECTOR, "[data-machine]")}
        assert tiles == {m.id for m in config.machines_on(line)}
        head = section.find_element(By.CSS_SELECTOR, ".line-head").text.lower()
        assert "failure rate" in head and "baseline" in head and "%" in head
    assert browser.execute_script("return [innerWidth, innerHeight]") == [1920, 1080]

    tile = _tile(browser, "extruder-1")
    assert tile.get_attribute("data-status") == "ok", "extruder-1 should start healthy"
    ok_background = _rgb(_css(browser, tile, "background-color"))
    assert ok_background[0] < 100, f"an ok tile must not look red: {ok_background}"

    fired = time.monotonic()
    plant.fire(plant.last_reading)
    _wait(browser, 10, lambda d: _tile(d, "extruder-1").get_attribute("data-status") == "alarm",
          "the extruder-1 tile did not turn to alarm within 10 s of the alert")
    latency = time.monotonic() - fired
    # the stream did it, not the 15 s safety-net refresh
    assert int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-alert-events") or 0) >= 1
    _wait(browser, 2, lambda d: "die pressure 214 bar, normal 180–190" in _tile(d, "extruder-1").text,
          "the tile does not show the alert's summary")
    print(f"alert fired → tile red in {latency:.2f} s")

    tile = _tile(browser, "extruder-1")
    r, g, b = _rgb(_css(browser, tile, "background-color"))
    assert r > 150 and g < 90 and b < 90, f"an alarm tile must be red, is rgb({r}, {g}, {b})"
    name = tile.find_element(By.CSS_SELECTOR, ".tile-name")
    summary = tile.find_element(By.CSS_SELECTOR, ".tile-summary")
    assert name.text == "extruder-1"
    assert float(_css(browser, name, "font-size").removesuffix("px")) >= 40
    assert float(_css(browser, summary, "font-size").removesuffix("px")) >= 28
    assert _tile(browser, "cutter-1").get_attribute("data-status") == "ok"
    # the tile says which version of the machine's normal is live (its first calibration here)
    assert tile.find_element(By.CSS_SELECTOR, ".tile-version").text.startswith("Model v1 · ")
    assert browser.find_element(By.CSS_SELECTOR, 'section[data-line="line-1"]').get_attribute("data-status") == "alarm"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "board.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_board_reconnects_by_itself_after_a_restart(browser, config, tmp_path):
    from selenium.webdriver.common.by import By

    plant = _plant(config, tmp_path, 60)
    try:
        browser.get(plant.url)
        body = lambda d: d.find_element(By.TAG_NAME, "body")  # noqa: E731
        _wait(browser, 10, lambda d: body(d).get_attribute("data-connection") == "live", "never went live")
        assert "live" in browser.find_element(By.ID, "connection").text.lower()
        port = plant.server.port

        plant.stop()
        _wait(browser, 5, lambda d: "reconnecting…" in d.find_element(By.ID, "connection").text.lower(),
              "the board did not say it lost the stream")
        assert body(browser).get_attribute("data-connection") == "reconnecting"

        # while the service is down the worker goes on: the alert is in the store and the book, but
        # nobody is left to hear the event; the board must pick it up by re-fetching when it is back
        plant.fire(plant.last_reading)
        back = time.monotonic()
        plant.serve(port)
        _wait(browser, 15, lambda d: body(d).get_attribute("data-connection") == "live",
              "the board did not reconnect by itself within 15 s of the restart")
        print(f"server back → board live in {time.monotonic() - back:.2f} s")
        assert browser.find_element(By.ID, "connection").text.lower() == "live"
        _wait(browser, 5, lambda d: _tile(d, "extruder-1").get_attribute("data-status") == "alarm",
              "after reconnecting the board did not re-fetch what it missed")
    finally:
        plant.stop()
        plant.store.close()


def test_each_line_shows_one_failure_rate_said_over_what_and_the_alert_agrees(browser, config, tmp_path):
    """One figure per line, labelled with what it is measured over: the recent window while all is well,
    the alert's own figure (since the change) while the line's failure-rate alert is open."""
    import httpx
    from selenium.webdriver.common.by import By

    from linewatch.sources.simulator import Fault

    def header(driver):
        head = driver.find_element(By.CSS_SELECTOR, 'section[data-line="line-1"] .line-rate')
        return head.find_element(By.CSS_SELECTOR, ".rate-label").text, head.find_element(By.CSS_SELECTOR, ".rate-value")

    quiet = _plant(config, tmp_path / "quiet", 1100)
    try:
        browser.get(quiet.url)
        _wait(browser, 10, lambda d: d.find_elements(By.CSS_SELECTOR, ".rate-value"), "no failure rate drawn")
        api = httpx.get(quiet.url.replace("/board", "/api/v1/lines"), timeout=10).json()["lines"][0]
        label, value = header(browser)
        assert label.lower() == f"failure rate · last {api['window_units']} units" and api["window_units"] > 0
        assert float(value.get_attribute("data-rate")) == api["failure_rate"]
        assert value.text == f"{api['failure_rate'] * 100:.1f} %"
        _p_chart_matches_the_api(browser, quiet)
        _sparklines_match_the_api(browser, quiet)
    finally:
        quiet.stop()
        quiet.store.close()

    rising = _plant(config, tmp_path / "rising", 2400,
                    faults=(Fault("failure_rate", "checkweigher-1", start=1100, duration=1300, magnitude=0.20),))
    try:
        browser.get(rising.url)
        _wait(browser, 10, lambda d: d.find_elements(By.CSS_SELECTOR, ".line-alert"), "no failure-rate alert drawn")
        alert = httpx.get(rising.url.replace("/board", "/api/v1/lines"), timeout=10).json()["lines"][0][
            "failure_rate_alert"]
        d = alert["details"]
        label, value = header(browser)
        since = d["since"][11:16]
        assert label.lower() == f"failure rate · {d['units_since_change']:,} units since {since} utc"
        assert float(value.get_attribute("data-rate")) == d["rate_since_change"]
        figure = f"{d['rate_since_change'] * 100:.1f}"
        assert value.text == f"{figure} %"
        _sparklines_match_the_api(browser, rising)
        chart = _p_chart_matches_the_api(browser, rising)
        assert chart["alarm_since"] and browser.find_elements(By.CSS_SELECTOR, ".p-chart .p-alarm")
        assert any(p["failure_rate"] > chart["upper_control_limit"] for p in chart["points"])
        banner = browser.find_element(By.CSS_SELECTOR, ".line-alert").text
        assert banner == alert["summary"]
        assert f"Failure rate {figure}% over the {d['units_since_change']:,} units since {since} UTC" in banner
    finally:
        rising.stop()
        rising.store.close()


def _p_chart_matches_the_api(browser, plant) -> dict:
    """The line's p-chart is drawn with one marker per point of the API's, a triangle exactly where the
    point is over the limit; a screenshot of the board is kept beside the test's other files."""
    import httpx
    from selenium.webdriver.common.by import By

    chart = httpx.get(plant.url.replace("/board", "/api/v1/lines/line-1/p-chart"), timeout=10).json()
    assert len(chart["points"]) > 1 and chart["baseline"] is not None
    _wait(browser, 10, lambda d: d.find_elements(By.CSS_SELECTOR, ".p-chart svg"), "no p-chart drawn")
    markers, over, caption = _settled(lambda: (
        len(browser.find_elements(By.CSS_SELECTOR, ".p-chart .p-point")),
        [m.tag_name for m in browser.find_elements(By.CSS_SELECTOR, ".p-chart .p-point.over")],
        browser.find_element(By.CSS_SELECTOR, ".p-caption").text))
    assert markers == len(chart["points"])
    assert len(over) == sum(p["failure_rate"] > chart["upper_control_limit"] for p in chart["points"])
    assert all(tag == "path" for tag in over)  # a triangle: the state is in the shape, not only the colour
    assert f"limit {chart['upper_control_limit'] * 100:.1f} %" in caption
    shots = Path(os.environ.get("LINEWATCH_SCREENSHOTS", "var/screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / f"board-{'alarm' if chart['alarm_since'] else 'ok'}.png"))
    return chart


def _sparklines_match_the_api(browser, plant) -> None:
    """Every tile draws its machine's last hour: one vertex per point of the API's trend, a triangle
    exactly where the score is over the threshold, and the sensor drawn beneath named in the caption."""
    import httpx
    from selenium.webdriver.common.by import By

    trends = httpx.get(plant.url.replace("/board", "/api/v1/trends"), timeout=10).json()["machines"]
    assert {t["machine"] for t in trends} == set(plant.pipeline.config.machines)
    _wait(browser, 10, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tile .spark svg")) == len(trends),
          "not every tile drew its sparkline")

    def drawn(machine: str) -> tuple[int, int, str]:
        tile = _tile(browser, machine)
        return (len(tile.find_element(By.CSS_SELECTOR, ".spark-score").get_attribute("points").split()),
                len(tile.find_elements(By.CSS_SELECTOR, ".spark-over")),
                tile.find_element(By.CSS_SELECTOR, ".spark-caption").text)

    tiles = _settled(lambda: {t["machine"]: drawn(t["machine"]) for t in trends})
    for t in trends:
        vertices, triangles, caption = tiles[t["machine"]]
        assert vertices == len(t["points"]) > 1, t["machine"]
        over = sum(p["threshold"] is not None and p["score"] > p["threshold"] for p in t["points"])
        assert triangles == over, t["machine"]
        kind = plant.pipeline.config.machines[t["machine"]].kind
        assert t["sensor"].removeprefix(f"{kind}_").replace("_", " ") in caption, (t["machine"], caption)
        assert all(p["value"] is not None for p in t["points"])


def test_a_machine_page_shows_each_sensor_against_its_normal_band_and_the_alerts(browser, plant, config):
    import httpx
    from selenium.webdriver.common.by import By

    # an earlier episode, resolved and judged by the operator: the page says what it was
    plant.fire(plant.last_reading - timedelta(minutes=10))
    earlier = plant.pipeline.book.open[(AlertKind.ANOMALY, "line-1", "extruder-1", None)]
    plant.store.resolve(earlier.id, "op-7", None, plant.last_reading - timedelta(minutes=8))
    plant.pipeline.book.resolved_by_person(earlier.id)
    plant.store.judge(earlier.id, AlertVerdict.FALSE_ALARM, "op-7", "die was clean", plant.last_reading)
    plant.fire(plant.last_reading)
    base = plant.url.replace("/board", "")
    browser.get(plant.url)
    href = _wait(browser, 10, lambda d: d.find_element(By.CSS_SELECTOR, TILE.format("extruder-1") + " .tile-name a")
                 .get_attribute("href"), "no link to the machine page")
    # the tile already says what people made of its alerts: one judged false, the open one not yet
    judged = TILE.format("extruder-1") + " .tile-judged"
    _wait(browser, 10, lambda d: d.find_elements(By.CSS_SELECTOR, judged), "the tile does not show the verdicts")
    text, share, title = _settled(lambda: [browser.find_element(By.CSS_SELECTOR, judged).text]
                                  + [browser.find_element(By.CSS_SELECTOR, judged).get_attribute(a)
                                     for a in ("data-true-share", "title")])
    assert (text, share) == ("Judged true 0 of 1", "0")
    assert "2 alerts raised, 1 judged (0 true, 1 false" in title
    assert not browser.find_elements(By.CSS_SELECTOR, TILE.format("cutter-1") + " .tile-judged")
    browser.get(href)  # the tile's own link (the board redraws, so not a click)
    _wait(browser, 10, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true",
          "the machine page did not load")
    assert browser.current_url.endswith("/board/machines/extruder-1")

    detail = httpx.get(f"{base}/api/v1/machines/extruder-1", timeout=10).json()
    trend = httpx.get(f"{base}/api/v1/machines/extruder-1/trend", timeout=10).json()
    history = httpx.get(f"{base}/api/v1/machines/extruder-1/history", timeout=10).json()
    band = detail["model"]["normal_range"]
    mapped = [m["sensor"] for m in detail["mapping"]]

    def page() -> tuple[list[tuple], list[tuple[str, str, str]], str, str]:
        cards = [(c.get_attribute("data-sensor"),
                  c.find_element(By.CSS_SELECTOR, ".sensor-value").get_attribute("data-value"),
                  len(c.find_element(By.CSS_SELECTOR, ".sensor-line").get_attribute("points").split()),
                  bool(c.find_elements(By.CSS_SELECTOR, ".sensor-normal")),
                  len(c.find_elements(By.CSS_SELECTOR, ".sensor-out")))
                 for c in browser.find_elements(By.CSS_SELECTOR, ".sensor")]
        rows = [(r.get_attribute("data-status"), r.text,
                 r.find_element(By.CSS_SELECTOR, ".history-verdict").get_attribute("data-verdict"))
                for r in browser.find_elements(By.CSS_SELECTOR, ".history-alert")]
        return (cards, rows, browser.find_element(By.CSS_SELECTOR, ".machine-model").text,
                browser.find_element(By.CSS_SELECTOR, ".history-precision").text)

    cards, rows, model, precision = _settled(page)  # the page redraws itself every 15 s
    assert [c[0] for c in cards] == mapped and band
    for sensor, value, points, normal, outside in cards:
        assert float(value) == detail["last_normalised"]["values"][sensor]
        assert points == sum(v is not None for v in trend["series"][sensor]) > 1, sensor
        assert normal, f"{sensor}: no normal band drawn"
        out = sum(v is not None and not band[sensor][0] <= v <= band[sensor][1] for v in trend["series"][sensor])
        assert outside == out, sensor
    assert len(rows) == min(len(history["alerts"]), 12) >= 1
    assert rows[0][0] == "firing" and SUMMARY in rows[0][1] and rows[0][2] == ""
    judged = [r for r in rows if r[2]]
    assert len(judged) == 1 and judged[0][2] == "false_alarm" and "False alarm · op-7" in judged[0][1]
    assert history["verdicts"]["judged"] == 1 and history["verdicts"]["true_share"] == 0
    assert f"1 of {history['verdicts']['raised']} alerts judged · 0 % judged true" in precision
    assert "anomaly score" in model.lower()
    assert f"model v{detail['model']['version']} monitoring" in model.lower()  # the version of its normal in use
    shots = Path(os.environ.get("LINEWATCH_SCREENSHOTS", "var/screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "machine-extruder-1.png"))
    assert httpx.get(f"{base}/board/machines/press-9", timeout=10).status_code == 404
