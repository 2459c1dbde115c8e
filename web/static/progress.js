// Follows a job (search, reading or report) from the REST API and updates the page once a second.
"use strict";
(function () {
  const box = document.querySelector("[data-job]");
  if (!box) return;
  // a field the page does not show (a report job has no meters found) is skipped
  const show = (name, text) => {
    const element = box.querySelector(`[data-field="${name}"]`);
    if (element) element.textContent = text;
    return element;
  };
  async function poll() {
    try {
      const response = await fetch(box.dataset.job, { credentials: "same-origin" });
      if (!response.ok) return;
      const job = await response.json();
      show("state", job.state);
      box.querySelector('[data-field="progress"]').value = job.progress;
      show("percent", Math.round(job.progress * 100) + " %");
      show("found", job.found ?? 0);
      show("expected", job.expected ? ` of ${job.expected} expected` : "");
      show("message", job.message || "");
      const warning = show("warning", job.warning || "");
      if (warning) warning.hidden = !job.warning;
      if (job.state === "queued" || job.state === "running") setTimeout(poll, 1000);
      else for (const notice of document.querySelectorAll(".notice")) notice.remove();  // "… started"
    } catch (err) {
      setTimeout(poll, 3000);
    }
  }
  poll();
})();
