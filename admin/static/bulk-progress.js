// The live progress of a bulk job: polls the admin's JSON endpoint (same origin, the session
// cookie) until the job is done, and updates the bar, the status and the counters.
(function () {
  "use strict";
  var bar = document.getElementById("bulk-progress");
  if (!bar) { return; }
  var url = bar.getAttribute("data-url");
  var status = document.getElementById("job-status");

  function render(data) {
    bar.style.width = data.percent + "%";
    bar.setAttribute("aria-valuenow", String(data.percent));
    bar.textContent = data.percent + "%";
    if (status) { status.textContent = data.status; }
    Object.keys(data.counts).forEach(function (name) {
      var cell = document.getElementById("count-" + name);
      if (cell) { cell.textContent = String(data.counts[name]); }
    });
    if (data.done) {
      bar.classList.remove("progress-bar-animated", "progress-bar-striped");
      bar.setAttribute("data-done", "1");
    }
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        render(data);
        if (!data.done) { window.setTimeout(poll, 1000); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  poll();
}());
