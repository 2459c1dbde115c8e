// The graphs are drawn on the server (web/graph.py); this adds the read-out: pointing at
// (or tapping) a graph shows the nearest value or bar with its time.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  for (const figure of document.querySelectorAll("figure.graph")) {
    const svg = figure.querySelector("svg[data-points]");
    const readout = figure.querySelector("output.readout");
    if (!svg || !readout) continue;
    const points = JSON.parse(svg.dataset.points || "[]");
    if (!points.length) continue;
    const marker = document.createElementNS(NS, "circle");
    marker.setAttribute("class", "marker");
    marker.setAttribute("r", "4");
    marker.setAttribute("visibility", "hidden");
    svg.appendChild(marker);
    function show(event) {
      const box = svg.getBoundingClientRect();
      const x = (event.clientX - box.left) / box.width * svg.viewBox.baseVal.width;
      let best = points[0];
      for (const p of points) if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
      marker.setAttribute("cx", best[0]);
      marker.setAttribute("cy", best[1]);
      marker.setAttribute("visibility", "visible");
      readout.textContent = best[2] + ": " + best[3];
    }
    svg.addEventListener("pointermove", show);
    svg.addEventListener("pointerdown", show);
  }
})();
