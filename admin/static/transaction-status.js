// A transaction in flight (pending, processing, review): poll its status and reload the page
// when it changes, so the timeline, the attempts and the actions follow without a click.
(function () {
  "use strict";
  var status = document.getElementById("transaction-status");
  if (!status || !status.getAttribute("data-live")) { return; }
  var url = status.getAttribute("data-live");
  var shown = status.textContent.trim();

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        if (data.status !== shown) { window.location.reload(); return; }
        window.setTimeout(poll, shown === "review" ? 5000 : 1000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  window.setTimeout(poll, 1000);
}());
