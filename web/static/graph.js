// Draws a meter series as an SVG line graph from the REST API (no library).
// Each <figure class="graph" data-src="..."> fetches {times, values, series, next} pages.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 900, H = 280, LEFT = 64, RIGHT = 12, TOP = 12, BOTTOM = 28;

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * power) return m * power;
    return 10 * power;
  }

  function label(value) {
    if (Math.abs(value) >= 1e6 || (Math.abs(value) < 1e-3 && value !== 0)) return value.toExponential(2);
    return String(Math.round(value * 1000) / 1000);
  }

  // axis labels in the gateway's time zone (the figure's data-zone), as the pages show times
  function timeLabel(seconds, span, zone) {
    const format = new Intl.DateTimeFormat("en-GB", { timeZone: zone, month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    const part = {};
    for (const p of format.formatToParts(new Date(seconds * 1000))) part[p.type] = p.value;
    return span > 2 * 86400 ? `${part.month}-${part.day}` : `${part.hour}:${part.minute}`;
  }

  async function fetchAll(src) {
    let times = [], values = [], series = null, url = src;
    for (let page = 0; page < 20 && url; page++) {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      series = data.series;
      times = times.concat(data.times);
      values = values.concat(data.values);
      url = data.next ? src.replace(/([?&])since=[^&]*/, "$1since=" + data.next) : null;
    }
    return { times, values, series };
  }

  function draw(figure, data) {
    const points = [];
    for (let i = 0; i < data.times.length; i++) {
      const v = data.values[i];
      if (typeof v === "number" && isFinite(v)) points.push([data.times[i], v]);
    }
    figure.textContent = "";
    if (points.length === 0) {
      figure.textContent = "No numeric values in this range.";
      return;
    }
    const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
    let v0 = Infinity, v1 = -Infinity;
    for (const p of points) { v0 = Math.min(v0, p[1]); v1 = Math.max(v1, p[1]); }
    if (v0 === v1) { v0 -= 1; v1 += 1; }
    const step = niceStep(v1 - v0, 5);
    v0 = Math.floor(v0 / step) * step; v1 = Math.ceil(v1 / step) * step;
    const x = t => LEFT + (t - t0) / (t1 - t0) * (W - LEFT - RIGHT);
    const y = v => TOP + (v1 - v) / (v1 - v0) * (H - TOP - BOTTOM);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `${data.series.quantity} in ${data.series.unit}` });
    for (let v = v0; v <= v1 + step / 2; v += step) {
      el("line", { class: "grid-line", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }, svg);
      el("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = label(v);
    }
    const ticks = 6;
    for (let i = 0; i <= ticks; i++) {
      const t = t0 + (t1 - t0) * i / ticks;
      el("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, svg).textContent = timeLabel(t, t1 - t0, figure.dataset.zone || "UTC");
    }
    el("line", { class: "axis", x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM }, svg);
    el("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM }, svg);
    // At most about two points per pixel column: keep the min and max of each column.
    const columns = new Map();
    for (const p of points) {
      const c = Math.round(x(p[0]));
      const seen = columns.get(c);
      if (!seen) columns.set(c, [p, p]);
      else { if (p[1] < seen[0][1]) seen[0] = p; if (p[1] > seen[1][1]) seen[1] = p; }
    }
    const path = [];
    for (const [, pair] of [...columns.entries()].sort((a, b) => a[0] - b[0])) {
      const ordered = pair[0][0] <= pair[1][0] ? pair : [pair[1], pair[0]];
      for (const p of ordered) path.push((path.length ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1));
    }
    const line = path.join(" ");
    el("path", { class: "area", d: `${line} L${x(points[points.length - 1][0]).toFixed(1)} ${H - BOTTOM} L${x(t0).toFixed(1)} ${H - BOTTOM} Z` }, svg);
    el("path", { class: "line", d: line }, svg);
    if (points.length < 60) for (const p of points) el("circle", { class: "point", cx: x(p[0]), cy: y(p[1]), r: 2.5 }, svg);
    figure.appendChild(svg);
    const caption = document.createElement("figcaption");
    caption.textContent = `${data.series.quantity} [${data.series.unit}] — ${points.length} values, last ${label(points[points.length - 1][1])}`;
    figure.appendChild(caption);
    figure.dataset.drawn = String(points.length);
  }

  for (const figure of document.querySelectorAll("figure.graph[data-src]")) {
    figure.textContent = "Loading…";
    fetchAll(figure.dataset.src).then(data => draw(figure, data)).catch(err => {
      figure.textContent = "The graph could not be loaded: " + err.message;
    });
  }
})();
