// The graphs are drawn on the server (web/graph.py); this adds the read-out: pointing at
// (or tapping) a graph shows the nearest value or bar with its time; and "Export PNG": the
// graph as shown, rendered from its SVG onto a canvas of the graph's size and downloaded.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";

  function readOut(svg, readout) {
    const points = JSON.parse(svg.dataset.points || "[]");
    if (!points.length) return;
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

  function exportPng(svg, name) {
    const box = svg.viewBox.baseVal;
    const copy = svg.cloneNode(true);
    for (const marker of copy.querySelectorAll(".marker")) marker.remove();
    copy.removeAttribute("data-points");
    copy.setAttribute("width", box.width);
    copy.setAttribute("height", box.height);
    const image = new Image();
    image.addEventListener("load", function () {
      const canvas = document.createElement("canvas");
      canvas.width = box.width;
      canvas.height = box.height;
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff"; // the page's background, not transparency
      context.fillRect(0, 0, box.width, box.height);
      context.drawImage(image, 0, 0, box.width, box.height);
      canvas.toBlob(function (png) {
        const link = document.createElement("a");
        link.href = URL.createObjectURL(png);
        link.download = name;
        document.body.appendChild(link);
        link.click();
        link.remove();
        setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
      }, "image/png");
    });
    // a data: URL (the page's policy allows data: images): it does not taint the canvas
    image.src = "data:image/svg+xml;charset=utf-8," +
      encodeURIComponent(new XMLSerializer().serializeToString(copy));
  }

  for (const figure of document.querySelectorAll("figure.graph")) {
    const svg = figure.querySelector("svg");
    if (!svg) continue;
    const readout = figure.querySelector("output.readout");
    if (readout && svg.dataset.points) readOut(svg, readout);
    const button = figure.parentElement.querySelector("button.export-png");
    if (!button) continue;
    button.hidden = false; // without a script there is no PNG: the button stays hidden
    button.addEventListener("click", function () { exportPng(svg, button.dataset.name); });
  }
})();
