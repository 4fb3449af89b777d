// linewatch wall board: one tile per machine, grouped by line.
//
// How it stays current: fetch /api/v1/lines and draw everything; re-fetch on every alert event from
// the Server-Sent Events stream, whenever the stream (re)connects, and every 15 s as a safety net.
// Re-fetching instead of patching tiles keeps the page simple and always in step with the server.
"use strict";

(() => {
  // When reads are protected the board is opened as /board?access_token=<read token>: the server then
  // sets a same-site cookie, so the page's fetches and event stream carry no token of their own.
  const LINES_URL = "/api/v1/lines";
  const ACKED_URL = "/api/v1/alerts?status=acknowledged&limit=1000";
  const STREAM_URL = "/api/v1/alerts/stream";
  const TRENDS_URL = "/api/v1/trends";
  const VERDICTS_URL = "/api/v1/verdicts";
  const REFRESH_MS = 15000;
  const RESTART_STREAM_MS = 5000;   // when the browser gives up on the stream (e.g. a proxy said 502)
  const SCORE_SCALE = 1.5;          // the score bar runs to 1.5 × the anomaly threshold
  const MIN_NAME_PX = 40;

  const STATE_LABEL = { ok: "OK", warning: "Warning", alarm: "Alarm", stale: "No data", waiting: "Waiting" };
  const KIND_LABEL = { anomaly: "Anomaly", failure_rate: "Failure rate", data_quality: "Data quality",
                       stale_stream: "No data", model: "Model" };
  const QUIET_TEXT = { ok: "No open alerts", waiting: "No reading yet", stale: "No recent data" };

  const $ = (id) => document.getElementById(id);
  const board = $("board");
  let lastUpdate = null;   // Date of the last successful refresh

  // ------------------------------------------------------------------ small helpers

  const { el, svg, triangle, getJSON, UNIT_LABEL } = window.linewatch;   // common.js

  const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`);
  const time = (d) => d.toLocaleTimeString("en-GB", { hour12: false });
  const isoTime = (iso) => (iso ? time(new Date(iso)) : "–");


  // ------------------------------------------------------------------ drawing

  function drawTile(m, acked) {
    const tile = el("article", "tile");
    const h = m.headline;
    const ack = h && acked.get(h.id);
    tile.dataset.machine = m.machine;
    tile.dataset.status = m.status;
    tile.dataset.silenced = String(Boolean(h && h.silenced));
    tile.dataset.acknowledged = String(Boolean(ack));

    const top = el("div", "tile-top");
    top.append(el("span", "tile-state", STATE_LABEL[m.status] || m.status));
    if (m.open_alerts > 0) top.append(el("span", "tile-count", `${m.open_alerts} open alert${m.open_alerts === 1 ? "" : "s"}`));
    const name = el("h3", "tile-name");
    const link = el("a", "", m.machine);   // the machine's page: each sensor against its normal band
    link.href = `/board/machines/${encodeURIComponent(m.machine)}`;
    name.append(link);
    tile.append(top, name, el("div", "tile-kind", `${m.kind} · ${m.manufacturer}`));

    const body = el("div", "tile-body");
    if (h) {
      const tags = el("div", "tile-tags");
      tags.append(el("span", "tag", KIND_LABEL[h.kind] || h.kind));   // the colour already says how severe
      if (h.silenced) tags.append(el("span", "tag tag-silenced", "Silenced"));
      // the summary names the machine first ("extruder-1: die pressure …"); the tile already does
      const prefix = `${m.machine}: `;
      const text = h.summary.startsWith(prefix) ? h.summary.slice(prefix.length) : h.summary;
      body.append(tags, el("p", "tile-summary", text));
    } else {
      body.append(el("p", "tile-summary tile-quiet", QUIET_TEXT[m.status] || ""));
    }
    tile.append(body, drawValues(m), drawScore(m));

    const foot = el("div", "tile-foot");
    foot.append(el("span", "", `Last reading ${isoTime(m.last_reading_at)}`));
    if (m.model_version) {   // which version of its normal is live, and since when (GET .../models)
      const v = el("span", "tile-version", `Model v${m.model_version} · ${isoTime(m.model_version_made_at).slice(0, 5)}`);
      v.title = `model version ${m.model_version}, learned until ${m.model_version_made_at}`;
      foot.append(v);
    }
    if (ack) foot.append(el("span", "tile-ack", `Acknowledged · ${ack.acked_by}`));
    const judged = drawJudged(m.verdicts);
    if (judged) foot.append(judged);
    tile.append(foot);
    return tile;
  }

  // what people said of this machine's alerts: its detector's live precision (GET /api/v1/verdicts),
  // the same figure as on the machine's page
  function drawJudged(v) {
    if (!v || v.raised === 0) return null;
    const t = v.verdicts.true_alarm, f = v.verdicts.false_alarm;
    const text = t + f > 0 ? `Judged true ${t} of ${t + f}` : `${v.raised} alert${v.raised === 1 ? "" : "s"}, none judged`;
    const span = el("span", "tile-judged", text);
    span.dataset.trueShare = v.true_share === null ? "" : String(v.true_share);
    span.title = `${v.raised} alerts raised, ${v.judged} judged `
                 + `(${t} true, ${f} false, ${v.verdicts.new_normal} new normal, ${v.verdicts.unclear} unclear)`;
    return span;
  }

  // the latest value of each sensor, in plant units: "air temperature   84.8 °C" on a dryer
  function drawValues(m) {
    const list = el("dl", "values");
    const unitOf = units.get(m.machine) || {};
    for (const [sensor, value] of Object.entries(m.last_values || {})) {
      const label = sensor.replace(new RegExp(`^${m.kind}_`), "").replaceAll("_", " ");
      const digits = Math.abs(value) >= 1000 ? 0 : 1;
      const unit = UNIT_LABEL[unitOf[sensor]] ?? unitOf[sensor] ?? "";
      list.append(el("dt", "", label), el("dd", "", `${value.toFixed(digits)} ${unit}`.trim()));
    }
    return list;
  }

  // how close the machine's anomaly model is to raising: the bar's tick is the threshold
  function drawScore(m) {
    const score = el("div", "score");
    if (m.model_phase !== "monitoring" || m.anomaly_score === null || !m.anomaly_threshold) {
      const phase = { warming_up: "warming up", calibrating: "calibrating",
                      shadow: "on trial (a relearned normal in shadow)" }[m.model_phase];
      score.append(el("span", "score-label", phase ? `Model ${phase} · ${m.readings} readings` : "Model waiting for data"));
      return score;
    }
    if (m.trend && m.trend.points.length > 1) {   // the last hour says more than the bar: where it is heading
      score.append(el("span", "score-label", `Anomaly score ${m.anomaly_score.toFixed(2)} / `
                                             + `${m.anomaly_threshold.toFixed(2)} · last hour`), sparkline(m, m.trend));
      return score;
    }
    const ratio = m.anomaly_score / m.anomaly_threshold;
    const bar = el("div", "score-bar");
    const fill = el("div", "score-fill");
    fill.style.width = `${Math.min(ratio / SCORE_SCALE, 1) * 100}%`;
    fill.classList.toggle("over", ratio > 1);
    bar.append(fill, el("div", "score-tick"));
    score.append(el("span", "score-label", `Anomaly score ${m.anomaly_score.toFixed(2)} / ${m.anomaly_threshold.toFixed(2)}`), bar);
    return score;
  }

  // the wall has no scroll wheel: when everything does not fit, drop the details (values, scores)
  function fitScreen() {
    document.body.classList.remove("compact");
    const root = document.documentElement;
    if (root.scrollHeight > root.clientHeight) document.body.classList.add("compact");
    fitNames();
  }

  // a long machine name shrinks to fit its tile, down to 40 px; below that it may wrap
  function fitNames() {
    for (const name of board.querySelectorAll(".tile-name")) {
      name.style.fontSize = "";
      name.style.whiteSpace = "";
      let size = parseFloat(getComputedStyle(name).fontSize);
      while (name.scrollWidth > name.clientWidth && size > MIN_NAME_PX) {
        size = Math.max(size - 2, MIN_NAME_PX);
        name.style.fontSize = `${size}px`;
      }
      if (name.scrollWidth > name.clientWidth) name.style.whiteSpace = "normal";
    }
  }

  function drawLine(line, acked) {
    const section = el("section", "line");
    section.dataset.line = line.line;
    section.dataset.status = line.status;

    const head = el("header", "line-head");
    const title = el("div", "line-title");
    title.append(el("h2", "line-name", line.line), el("span", "pill", STATE_LABEL[line.status] || line.status));

    const rate = el("div", "line-rate");
    if (line.failure_rate === null || line.baseline === null) {
      rate.append(el("span", "rate-label", "Failure rate"),
                  el("span", "rate-note", `learning baseline · ${line.units} units`));
    } else {
      // one figure per line, said over what it is measured: while the line's failure-rate alert is
      // open, the alert's own (since the change), else the recent window's
      const d = (line.failure_rate_alert && line.failure_rate_alert.details) || {};
      const episode = d.rate_since_change !== null && d.rate_since_change !== undefined && d.units_since_change
        && d.since;
      const figure = episode ? d.rate_since_change : line.failure_rate;
      const over = episode
        ? `${d.units_since_change.toLocaleString("en-GB")} units since ${d.since.slice(11, 16)} UTC`  // as the alert's sentence says it
        : `last ${line.window_units.toLocaleString("en-GB")} units`;
      const value = el("span", "rate-value", pct(figure));
      value.dataset.rate = String(figure);
      if (line.upper_control_limit !== null && figure > line.upper_control_limit) value.classList.add("over");
      rate.append(el("span", "rate-label", `Failure rate · ${over}`), value,
                  el("span", "rate-note", `baseline ${pct(line.baseline)} · limit ${pct(line.upper_control_limit)} `
                                          + `for ${line.window_units.toLocaleString("en-GB")} units`));
    }
    head.append(title, rate);
    section.append(head);
    if (line.chart && line.chart.points.length > 1 && line.chart.baseline !== null) section.append(pChart(line.chart));

    if (line.failure_rate_alert) {
      const banner = el("p", "line-alert", line.failure_rate_alert.summary);
      banner.dataset.severity = line.failure_rate_alert.severity;
      section.append(banner);
    }
    const tiles = el("div", "tiles");
    tiles.append(...line.machines.map((m) => drawTile(m, acked)));
    section.append(tiles);
    return section;
  }

  // ------------------------------------------------------------------ sparkline

  // The last hour of a machine: its anomaly score against the threshold (dashed), points over it as
  // triangles, and under it the value of the sensor that matters most now, on its own scale.
  function sparkline(m, trend) {
    const W = 600, H = 110, PAD = 6, SPLIT = 66;
    const pts = trend.points;
    const x = (i) => PAD + (i * (W - 2 * PAD)) / (pts.length - 1);
    const thr = pts[pts.length - 1].threshold;
    const top = Math.max(...pts.map((p) => p.score), (thr || 0) * 1.5, 1e-9);
    const ys = (v) => SPLIT - PAD - (Math.min(v, top) / top) * (SPLIT - 2 * PAD);
    const figure = el("figure", "spark");
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
                              "aria-label": `${m.machine}: anomaly score, last hour` });
    if (thr !== null && thr !== undefined) {
      root.append(svg("line", { class: "spark-threshold", x1: 0, x2: W, y1: ys(thr), y2: ys(thr) }));
    }
    root.append(svg("polyline", { class: "spark-score", points: pts.map((p, i) => `${x(i)},${ys(p.score)}`).join(" ") }));
    pts.forEach((p, i) => {
      if (p.threshold !== null && p.score > p.threshold) {
        const cx = x(i), cy = ys(p.score);
        root.append(triangle("spark-over", cx, cy, 7));
      }
    });
    const values = pts.map((p) => p.value).filter((v) => v !== null);
    let label = "";
    if (values.length > 1) {
      const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
      const yv = (v) => H - PAD - ((v - lo) / span) * (H - SPLIT - 2 * PAD);
      root.append(svg("polyline", { class: "spark-value",
        points: pts.map((p, i) => (p.value === null ? null : `${x(i)},${yv(p.value)}`)).filter(Boolean).join(" ") }));
      // its current value is in the list above; the line says where it has been
      label = ` · ${trend.sensor.replace(new RegExp(`^${m.kind}_`), "").replaceAll("_", " ")} (orange)`;
    }
    figure.append(root, el("figcaption", "spark-caption", `score (white) vs threshold (dashed)${label}`));
    return figure;
  }

  // ------------------------------------------------------------------ p-chart

  // The line's failure rate per subgroup of units against its baseline and 3-sigma limit, the alarm's
  // start marked. A point over the limit is a triangle, not only another colour (colour-blind safe).
  function pChart(chart) {
    const W = 1800, H = 100, PAD = 10;   // about the shape it is drawn in on a 1080p wall: markers stay round
    const pts = chart.points;
    const top = Math.max(chart.upper_control_limit * 1.25, ...pts.map((p) => p.failure_rate), 0.01);
    const x = (i) => PAD + (i * (W - 2 * PAD)) / (pts.length - 1);
    const y = (r) => H - PAD - (r / top) * (H - 2 * PAD);
    const figure = el("figure", "p-chart");
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
                              "aria-label": `failure rate per ${chart.subgroup_units} units, last ${pts.length} groups` });
    root.append(svg("line", { class: "p-baseline", x1: 0, x2: W, y1: y(chart.baseline), y2: y(chart.baseline) }),
                svg("line", { class: "p-limit", x1: 0, x2: W, y1: y(chart.upper_control_limit),
                              y2: y(chart.upper_control_limit) }));
    if (chart.alarm_since) {
      const since = new Date(chart.alarm_since);
      const start = pts.findIndex((p) => new Date(p.at) >= since);
      if (start >= 0) root.append(svg("line", { class: "p-alarm", x1: x(start), x2: x(start), y1: 0, y2: H }));
    }
    root.append(svg("polyline", { class: "p-rate", points: pts.map((p, i) => `${x(i)},${y(p.failure_rate)}`).join(" ") }));
    pts.forEach((p, i) => {
      const over = p.failure_rate > chart.upper_control_limit;
      const cx = x(i), cy = y(p.failure_rate);
      root.append(over
        ? triangle("p-point over", cx, cy, 9)
        : svg("circle", { class: "p-point", cx, cy, r: 5 }));
    });
    const caption = el("figcaption", "p-caption",
                       `failure rate per ${chart.subgroup_units} units · baseline ${pct(chart.baseline)} (dashed) · `
                       + `limit ${pct(chart.upper_control_limit)} for ${chart.subgroup_units} units${chart.alarm_since ? " · alarm since "
                       + chart.alarm_since.slice(11, 16) + " UTC (bar)" : ""} · ▲ over the limit`);
    figure.append(root, caption);
    return figure;
  }

  function draw(lines, acked) {
    if (lines.length === 0) {
      board.replaceChildren(el("p", "empty", "No lines are configured."));
    } else {
      board.replaceChildren(...lines.map((line) => drawLine(line, acked)));
      fitScreen();
    }
  }

  // ------------------------------------------------------------------ fetching (one at a time)

  const units = new Map();   // machine → { sensor: unit }, from /api/v1/machines/{id}, fetched once

  async function loadUnits(machines) {
    await Promise.all(machines.filter((id) => !units.has(id)).map(async (id) => {
      try {
        const detail = await getJSON(`/api/v1/machines/${encodeURIComponent(id)}`);
        units.set(id, Object.fromEntries(detail.mapping.map((row) => [row.sensor, row.unit])));
      } catch {
        // values show without units; try again on the next refresh
      }
    }));
  }

  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; }   // a burst of events costs at most one more fetch
    busy = true;
    try {
      do {
        again = false;
        await load();
      } while (again);
    } finally {
      busy = false;
    }
  }

  async function load() {
    try {
      const [lines, acked] = await Promise.all([
        getJSON(LINES_URL),
        getJSON(ACKED_URL).catch(() => ({ alerts: [] })),   // nice to have; the tiles matter more
      ]);
      await loadUnits(lines.lines.flatMap((line) => line.machines.map((m) => m.machine)));
      const [charts, trends, verdicts] = await Promise.all([
        Promise.all(lines.lines.map((line) =>
          getJSON(`${LINES_URL}/${encodeURIComponent(line.line)}/p-chart`).catch(() => null))),
        getJSON(TRENDS_URL).catch(() => ({ machines: [] })),
        getJSON(VERDICTS_URL).catch(() => ({ machines: [] })),
      ]);
      const trendOf = new Map(trends.machines.map((t) => [t.machine, t]));
      const verdictsOf = new Map(verdicts.machines.filter((v) => v.machine).map((v) => [v.machine, v]));
      lines.lines.forEach((line, i) => {
        line.chart = charts[i];
        for (const m of line.machines) {
          m.trend = trendOf.get(m.machine);
          m.verdicts = verdictsOf.get(m.machine);
        }
      });
      draw(lines.lines, new Map(acked.alerts.map((a) => [a.id, a])));
      lastUpdate = new Date();
      document.body.dataset.loaded = "true";
    } catch (err) {
      console.warn("linewatch board: refresh failed", err);
      if (!lastUpdate) board.replaceChildren(el("p", "empty", "Waiting for linewatch…"));
    }
    tick();
  }

  // ------------------------------------------------------------------ live stream

  function setConnection(state) {
    document.body.dataset.connection = state;
    $("connection-text").textContent = state === "live" ? "live" : "reconnecting…";
  }

  function connect() {
    const source = new EventSource(STREAM_URL);
    // on every (re)connect fetch everything: events sent while we were away are not replayed
    source.onopen = () => { setConnection("live"); refresh(); };
    source.addEventListener("alert", () => {
      document.body.dataset.alertEvents = Number(document.body.dataset.alertEvents || 0) + 1;   // for tests
      refresh();
    });
    source.onerror = () => {
      setConnection("reconnecting");
      if (source.readyState === EventSource.CLOSED) {   // the browser will not retry by itself
        source.close();
        setTimeout(connect, RESTART_STREAM_MS);
      }
    };
  }

  // ------------------------------------------------------------------ clock and freshness

  function tick() {
    const now = new Date();
    $("clock-time").textContent = time(now);
    $("clock-date").textContent = now.toLocaleDateString("en-GB",
      { weekday: "short", day: "numeric", month: "short", year: "numeric" });
    const updated = $("updated");
    if (lastUpdate) {
      updated.textContent = `Updated ${time(lastUpdate)}`;
      updated.classList.toggle("old", now - lastUpdate > 2 * REFRESH_MS + 5000);
    }
  }

  tick();
  setInterval(tick, 1000);
  window.addEventListener("resize", fitScreen);
  refresh().then(connect);
  setInterval(refresh, REFRESH_MS);
})();
