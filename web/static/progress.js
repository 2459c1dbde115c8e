// Follows a job (search or reading) from the REST API and updates the page once a second.
"use strict";
(function () {
  const box = document.querySelector("[data-job]");
  if (!box) return;
  const field = name => box.querySelector(`[data-field="${name}"]`);
  async function poll() {
    try {
      const response = await fetch(box.dataset.job, { credentials: "same-origin" });
      if (!response.ok) return;
      const job = await response.json();
      field("state").textContent = job.state;
      field("progress").value = job.progress;
      field("percent").textContent = Math.round(job.progress * 100) + " %";
      field("found").textContent = job.found ?? 0;
      field("expected").textContent = job.expected ? ` of ${job.expected} expected` : "";
      field("message").textContent = job.message || "";
      field("warning").textContent = job.warning || "";
      field("warning").hidden = !job.warning;
      if (job.state === "queued" || job.state === "running") setTimeout(poll, 1000);
    } catch (err) {
      setTimeout(poll, 3000);
    }
  }
  poll();
})();
