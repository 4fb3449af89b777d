// linewatch machine page (/board/machines/{id}): each sensor's last hour against its normal band, the
// machine's open and recent alerts, and its model's state. Refreshed every 15 s; drawn from the same
// API the board uses (/api/v1/machines/{id}, .../trend, .../history).
"use strict";

(() => {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const API = `/api/v1/machines/${encodeURIComponent(id)}`;
  const REFRESH_MS = 15000;
  const { el, svg, triangle, getJSON, UNIT_LABEL } = window.linewatch;   // common.js
  const root = document.getElementById("machine");

  const fmt = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

  // one sensor: its values over the last hour, the normal band shaded; a value outside it is a triangle
  function sensorChart(sensor, unit, values, band, latest) {
    const W = 900, H = 140, PAD = 8;
    const known = values.filter((v) => v !== null);
    const lo = Math.min(...known, band ? band[0] : Infinity), hi = Math.max(...known, band ? band[1] : -Infinity);
    const span = hi - lo || 1;
    const x = (i) => PAD + (i * (W - 2 * PAD)) / Math.max(values.length - 1, 1);
    const y = (v) => H - PAD - ((v - lo) / span) * (H - 2 * PAD);
    const card = el("section", "sensor");
    card.dataset.sensor = sensor;
    const name = sensor.replaceAll("_", " ");
    const now = latest === undefined ? "–" : `${fmt(latest)} ${unit}`.trim();
    const outside = band && latest !== undefined && (latest < band[0] || latest > band[1]);
    const head = el("header", "sensor-head");
    const value = el("span", "sensor-value", now);
    value.dataset.value = latest === undefined ? "" : String(latest);
    if (outside) value.classList.add("over");
    head.append(el("h2", "sensor-name", name), value,
                el("span", "sensor-band", band ? `normal ${fmt(band[0])}–${fmt(band[1])} ${unit}`.trim()
                                               : "normal band: model still learning"));
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
                               "aria-label": `${name}, last hour` });
    if (band) chart.append(svg("rect", { class: "sensor-normal", x: 0, width: W, y: y(band[1]),
                                         height: Math.max(y(band[0]) - y(band[1]), 1) }));
    chart.append(svg("polyline", { class: "sensor-line",
      points: values.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean).join(" ") }));
    values.forEach((v, i) => {
      if (v !== null && band && (v < band[0] || v > band[1])) {
        const cx = x(i), cy = y(v);
        chart.append(triangle("sensor-out", cx, cy, 8));
      }
    });
    card.append(head, chart);
    return card;
  }

  function alertRow(a) {
    const row = el("li", "history-alert");
    row.dataset.status = a.status;
    row.dataset.severity = a.severity;
    const when = a.started_at.slice(11, 16) + (a.ended_at ? `–${a.ended_at.slice(11, 16)}` : " – now");
    const verdict = el("span", "history-verdict", a.verdict ? `${VERDICT[a.verdict]} · ${a.verdict_by}` : "not judged");
    verdict.dataset.verdict = a.verdict || "";
    row.append(el("span", "history-status", a.status.toUpperCase()), el("span", "history-when", `${when} UTC`),
               el("span", "history-summary", a.summary), verdict);
    return row;
  }

  const VERDICT = { true_alarm: "True alarm", false_alarm: "False alarm", new_normal: "New normal",
                    unclear: "Unclear" };

  // what people judged this machine's alerts to be: its detector's live precision
  function precision(v) {
    if (!v || !v.raised) return el("p", "history-precision", "No alerts judged yet.");
    const share = v.true_share === null ? "no true or false verdict yet"
                                        : `${Math.round(v.true_share * 100)} % judged true`;
    const wait = v.median_seconds_to_acknowledge === null ? ""
               : ` · median ${Math.round(v.median_seconds_to_acknowledge / 60)} min to a first response`;
    const p = el("p", "history-precision", `${v.judged} of ${v.raised} alerts judged · ${share}${wait}`);
    p.dataset.trueShare = v.true_share === null ? "" : String(v.true_share);
    return p;
  }

  async function load() {
    try {
      const [detail, trend, history] = await Promise.all([getJSON(API), getJSON(`${API}/trend`),
                                                          getJSON(`${API}/history`)]);
      document.getElementById("machine-title").textContent = `${detail.machine} · ${detail.line}`;
      document.title = `linewatch · ${detail.machine}`;
      const units = Object.fromEntries(detail.mapping.map((m) => [m.sensor, UNIT_LABEL[m.unit] ?? m.unit]));
      const model = detail.model || {};
      const band = model.normal_range || {};
      const latest = (detail.last_normalised || {}).values || {};

      const head = el("section", "machine-head");
      head.append(el("h1", "machine-name", detail.machine),
                  el("span", "machine-kind", `${detail.kind} · ${detail.profile.manufacturer}`),
                  el("span", "machine-model", model.phase === "monitoring" && model.threshold
                    ? `Model${model.version ? ` v${model.version}` : ""} monitoring · anomaly score `
                      + `${model.score.toFixed(2)} / ${model.threshold.toFixed(2)}`
                    : `Model ${(model.phase || "waiting").replaceAll("_", " ")} · ${model.readings || 0} readings`));
      head.dataset.phase = model.phase || "waiting";

      const sensors = el("div", "sensors");
      for (const m of detail.mapping) {
        sensors.append(sensorChart(m.sensor, units[m.sensor] || "", trend.series[m.sensor] || [], band[m.sensor],
                                   latest[m.sensor]));
      }
      const alerts = el("section", "history");
      alerts.append(el("h2", "history-title", "Open and recent alerts"), precision(history.verdicts));
      const list = el("ol", "history-list");
      const ordered = [...history.alerts].sort((a, b) => (a.status === "resolved") - (b.status === "resolved")
                                                        || b.started_at.localeCompare(a.started_at));
      list.append(...ordered.slice(0, 12).map(alertRow));
      alerts.append(history.alerts.length ? list : el("p", "history-none", "No alerts for this machine."));
      root.replaceChildren(head, sensors, alerts);
      document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
      document.body.dataset.loaded = "true";
    } catch (err) {
      console.warn("linewatch machine page: refresh failed", err);
      if (!document.body.dataset.loaded) root.replaceChildren(el("p", "empty", `Waiting for ${id}…`));
    }
  }

  load();
  setInterval(load, REFRESH_MS);
})();
