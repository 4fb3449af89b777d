// What the board and the machine page share: DOM and SVG helpers, the API fetch, the plant's unit
// symbols, and the triangle that marks a point out of normal (state by shape, not only colour).
"use strict";

window.linewatch = (() => {
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;   // never innerHTML: summaries are data
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  // a point over its limit, centred on (cx, cy), half as wide as it is ``size``
  function triangle(className, cx, cy, size) {
    return svg("path", { class: className,
                         d: `M${cx},${cy - size} L${cx + size * 0.85},${cy + size * 0.6} L${cx - size * 0.85},${cy + size * 0.6} Z` });
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  const UNIT_LABEL = { degC: "°C", degF: "°F", percent: "%" };

  return { el, svg, triangle, getJSON, UNIT_LABEL };
})();
