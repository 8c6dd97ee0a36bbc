// The workshop kiosk's start/stop control (served at /workshop/session.js by api/routers/sessions.py).
// The kiosk is set up once by opening /workshop#kiosk-key=KEY: the key (CAMPERHUB_KIOSK_KEY) is kept in
// this browser's localStorage and removed from the address bar. Without a key the control stays hidden,
// so a visitor of the public kiosk page sees no button. The state is polled every 15 s: a press of the
// camper's GPIO button shows up here too.
(function () {
  "use strict";
  // a key given to an open page (same-document navigation): load the page again to take it up
  window.addEventListener("hashchange", function () { if (/kiosk-key=/.test(location.hash)) { location.reload(); } });
  var slot = document.getElementById("session-slot");
  var camper = document.body.dataset.camper;
  if (!slot || !camper) { return; }
  var STORE = "camperhub.kioskKey";
  var m = /(?:^|[#&])kiosk-key=([^&]+)/.exec(location.hash);
  if (m) {
    try { localStorage.setItem(STORE, decodeURIComponent(m[1])); } catch (e) { /* private mode: keep it for this page */ }
    history.replaceState(null, "", location.pathname + location.search);
  }
  var key = null;
  try { key = localStorage.getItem(STORE); } catch (e) { key = null; }
  if (!key && m) { key = decodeURIComponent(m[1]); }
  if (!key) { return; }
  var base = "/api/v1/campers/" + encodeURIComponent(camper) + "/workshop/sessions";
  var t = slot.dataset;
  var state = document.createElement("p");
  state.className = "session-state";
  state.setAttribute("role", "status");
  var button = document.createElement("button");
  button.type = "button";
  button.className = "session-button";
  var recap = document.createElement("a");
  recap.className = "session-recap";
  recap.textContent = t.recap;
  recap.hidden = true;
  slot.append(state, button, recap);

  function hhmm(iso) {
    return new Date(iso).toLocaleTimeString(document.documentElement.lang || "it", { hour: "2-digit", minute: "2-digit", timeZone: "Europe/Rome" });
  }
  function show(data) {
    var cur = data.current;
    slot.classList.toggle("open", !!cur);
    state.textContent = cur ? t.running.replace("{time}", hhmm(cur.started)) : t.idle;
    button.textContent = cur ? t.stop : t.start;
    button.dataset.action = cur ? "stop" : "start";
    var last = (data.sessions || []).filter(function (s) { return !s.open; })[0];
    recap.hidden = !last;
    if (last) { recap.href = last.recap_url; }
  }
  function call(method, url) {
    return fetch(url, { method: method, headers: { "X-Kiosk-Key": key, "Accept": "application/json" } })
      .then(function (r) { if (!r.ok && r.status !== 409) { throw new Error(String(r.status)); } return r; });
  }
  function refresh() {
    return call("GET", base + "?limit=5").then(function (r) { return r.json(); }).then(show)
      .catch(function () { slot.classList.add("error"); });
  }
  button.addEventListener("click", function () {
    button.disabled = true;
    var url = button.dataset.action === "stop" ? base + "/current/stop" : base;
    call("POST", url).then(refresh).finally(function () { button.disabled = false; });
  });
  refresh();
  setInterval(refresh, 15000);
})();
