// Camper Hub, tenants' page: live updates where JavaScript runs (the page reads fully without it).
// The location stream only signals a change; the state text comes back server-rendered and
// translated (GET /?part=state), so no phrase is built here. Same origin only.
(function () {
  "use strict";
  var body = document.body;
  var streamUrl = body.getAttribute("data-stream");
  var pollUrl = body.getAttribute("data-poll");
  var box = document.getElementById("state");
  if (!pollUrl || !box || !window.fetch) { return; }
  var POLL_MS = 60000;
  var pollTimer = null;
  var pending = false;

  function mark(kind, stop) {
    var groups = document.querySelectorAll("#map .stop");
    for (var i = 0; i < groups.length; i++) {
      var g = groups[i];
      g.classList.remove("here", "at_stop", "on_the_way", "not_in_service");
      if (stop && g.getAttribute("data-stop") === stop) { g.classList.add("here", kind); }
    }
    var desc = document.getElementById("map-desc");
    var text = document.getElementById("state-text");
    if (desc && text) { desc.textContent = text.textContent; }
  }

  function refresh() {
    if (pending) { return; }
    pending = true;
    fetch(pollUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        if (box.getAttribute("data-kind") !== data.kind || box.getAttribute("data-stop") !== (data.stop || "") ||
            box.innerHTML.trim() !== data.html.trim()) {
          box.innerHTML = data.html;
          box.setAttribute("data-kind", data.kind);
          box.setAttribute("data-stop", data.stop || "");
          mark(data.kind, data.stop);
        }
      })
      .catch(function () { /* offline: keep what is shown */ })
      .then(function () { pending = false; });
  }

  function poll() {
    if (pollTimer === null) { pollTimer = window.setInterval(refresh, POLL_MS); }
  }

  var note = document.getElementById("live-note");
  if (note) { note.hidden = false; }
  if (streamUrl && window.EventSource) {
    var source = new EventSource(streamUrl);
    var opened = false;
    source.onopen = function () { opened = true; };
    source.onmessage = refresh;
    ["location", "status", "state"].forEach(function (name) { source.addEventListener(name, refresh); });
    source.onerror = function () {
      if (!opened) { source.close(); poll(); }  // no stream here (yet): poll instead
    };
  } else {
    poll();
  }
})();
