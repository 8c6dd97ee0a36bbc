/* Camper Hub fleet staff page: sign in with a token, the fleet table, a camper's charts and alerts.
   The token lives in sessionStorage of this tab and travels only as "Authorization: Bearer" to
   this origin's /api/v1 (see api/pages/fleet.py for why). Text is set with textContent, never
   as HTML: camper names, alert messages and errors come from outside. */
(function () {
  "use strict";
  var KEY = "camperhub.fleet.token";
  var SVG = "http://www.w3.org/2000/svg";
  var FIELDS = ["battery_voltage_v", "battery_current_a", "battery_temp_c"];
  var UNITS = { battery_voltage_v: "V", battery_current_a: "A", battery_temp_c: "°C" };
  var refreshS = parseInt(document.body.dataset.refreshS, 10) || 30;
  var $ = function (id) { return document.getElementById(id); };
  var selected = null;
  var hours = 24;
  var timer = null;
  var rome = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Rome", day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
  var romeHour = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Rome", hour: "2-digit", minute: "2-digit", hour12: false });
  var romeDay = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Rome", day: "2-digit", month: "2-digit" });

  function token() { try { return sessionStorage.getItem(KEY); } catch (e) { return null; } }

  function Unauthorized(message) { this.message = message; }

  function api(path) {
    return fetch(path, { headers: { Authorization: "Bearer " + token(), Accept: "application/json" }, cache: "no-store", credentials: "omit" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (r.status === 401) { throw new Unauthorized(body.detail || "the token was refused"); }
          if (!r.ok) { throw new Error(body.detail || ("HTTP " + r.status)); }
          return body;
        });
      });
  }

  function show(signedIn) {
    $("sign-in").hidden = signedIn;
    $("fleet").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
    $("who").textContent = signedIn ? "Signed in (this tab only)" : "";
    if (!signedIn) { $("detail").hidden = true; selected = null; }
  }

  function signOut(message) {
    try { sessionStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
    if (timer) { clearInterval(timer); timer = null; }
    $("fleet-rows").textContent = "";
    show(false);
    $("sign-in-error").textContent = message || "";
    $("token").focus();
  }

  function failed(err, where) {
    if (err instanceof Unauthorized) { signOut("Signed out: " + err.message); return; }
    $(where).textContent = String(err && err.message ? err.message : err);
  }

  function num(v, digits) { return v === null || v === undefined ? "—" : Number(v).toFixed(digits); }

  function localTime(moment) { return moment ? rome.format(new Date(moment.utc)) : "—"; }

  function age(s) {
    if (s === null || s === undefined) { return ""; }
    if (s < 120) { return Math.round(s) + " s ago"; }
    if (s < 7200) { return Math.round(s / 60) + " min ago"; }
    if (s < 172800) { return Math.round(s / 3600) + " h ago"; }
    return Math.round(s / 86400) + " days ago";
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }

  function renderFleet(body) {
    var rows = $("fleet-rows");
    rows.textContent = "";
    body.campers.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.dataset.camper = c.camper;
      if (c.camper === selected) { tr.className = "selected"; }
      var th = document.createElement("th");
      th.scope = "row";
      var b = document.createElement("button");
      b.type = "button";
      b.className = "camper-link";
      b.textContent = c.camper;
      b.setAttribute("aria-label", "Show " + c.camper);
      b.addEventListener("click", function () { select(c.camper); });
      th.appendChild(b);
      tr.appendChild(th);
      var online = c.online ? "online" : (c.state === "online" ? "silent" : c.state);
      cell(tr, online, c.online ? "online" : (c.state === "unknown" ? "unknown" : "offline"));
      cell(tr, c.last_data ? localTime(c.last_data) + " · " + age(c.last_data_age_s) : "never");
      cell(tr, c.mode || "—");
      cell(tr, c.queue_depth === null || c.queue_depth === undefined ? "—" : String(c.queue_depth));
      cell(tr, c.battery.soc_pct === null ? "—" : num(c.battery.soc_pct, 0) + " %");
      cell(tr, c.battery.soh_pct === null ? "—" : num(c.battery.soh_pct, 0) + " %" + (c.battery.soh_source === "estimate" ? " (est.)" : ""));
      cell(tr, c.open_alerts ? c.open_alerts + " (" + c.worst_alert + ")" : "0", c.open_alerts ? "sev-" + c.worst_alert : "");
      cell(tr, c.completeness_today_pct === null ? "—" : num(c.completeness_today_pct, 1) + " %");
      rows.appendChild(tr);
    });
    $("updated").textContent = rome.format(new Date(body.generated_at));
    $("fleet-error").textContent = body.alerts_available ? "" : "Alerts are not available just now.";
  }

  function loadFleet() {
    return api("/api/v1/fleet").then(function (body) { renderFleet(body); if (selected) { loadDetail(); } })
      .catch(function (err) { failed(err, "fleet-error"); });
  }

  function select(camper) {
    selected = camper;
    Array.prototype.forEach.call(document.querySelectorAll("#fleet-rows tr"), function (tr) {
      tr.className = tr.dataset.camper === camper ? "selected" : "";
    });
    $("detail-camper").textContent = camper;
    $("detail").hidden = false;
    loadDetail();
  }

  function svg(name, attrs, text) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function niceStep(span) {
    var raw = span / 4;
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = [1, 2, 2.5, 5, 10].find(function (k) { return k * p >= raw; });
    return m * p;
  }

  /* One line chart of one field; times on the x axis in Europe/Rome; a gap (no interval) breaks the line. */
  function chart(field, series, start, end) {
    var W = 600, H = 220, L = 52, R = 10, T = 12, B = 28;
    var box = $("chart-" + field);
    var times = series.time.map(function (t) { return Date.parse(t); });
    var values = series.values[field] || [];
    var known = values.filter(function (v) { return v !== null; });
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "chart-svg", "data-field": field, "data-points": String(known.length) });
    root.appendChild(svg("title", {}, field.replace(/_/g, " ")));
    var desc;
    if (!known.length) {
      desc = "No data in this window.";
      root.appendChild(svg("desc", {}, desc));
      root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, "No data in this window"));
      box.textContent = "";
      box.appendChild(root);
      return;
    }
    var lo = Math.min.apply(null, known), hi = Math.max.apply(null, known);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    var step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    desc = "From " + known.length + " points: min " + Math.min.apply(null, known) + ", max " + Math.max.apply(null, known) +
      ", last " + known[known.length - 1] + " " + UNITS[field] + ".";
    root.appendChild(svg("desc", {}, desc));
    var t0 = Date.parse(start), t1 = Date.parse(end);
    var x = function (t) { return L + (W - L - R) * Math.min(Math.max((t - t0) / (t1 - t0), 0), 1); };
    var y = function (v) { return T + (H - T - B) * (1 - (v - lo) / (hi - lo)); };
    for (var v = lo; v <= hi + step / 2; v += step) {
      root.appendChild(svg("line", { "class": "grid", x1: L, x2: W - R, y1: y(v).toFixed(1), y2: y(v).toFixed(1) }));
      root.appendChild(svg("text", { x: L - 6, y: (y(v) + 4).toFixed(1), "text-anchor": "end" }, String(Math.round(v * 100) / 100)));
    }
    var long = t1 - t0 > 2 * 86400000;
    var tick = long ? 86400000 : 4 * 3600000;
    for (var t = Math.ceil(t0 / tick) * tick; t <= t1; t += tick) {
      var label = long ? romeDay.format(new Date(t)) : romeHour.format(new Date(t));
      root.appendChild(svg("text", { x: x(t).toFixed(1), y: H - 8, "text-anchor": "middle" }, label));
    }
    root.appendChild(svg("line", { "class": "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    var gapMs = 1.5 * 1000 * (series.every_s || 60);
    var run = [], prev = null;
    var flush = function () {
      if (run.length === 1) { run.push([run[0][0] + 1, run[0][1]]); }
      if (run.length) {
        root.appendChild(svg("polyline", { "class": "line " + field, points: run.map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join(" ") }));
      }
      run = [];
    };
    for (var i = 0; i < times.length; i++) {
      if (values[i] === null) { continue; }
      if (prev !== null && times[i] - prev > gapMs) { flush(); }
      run.push([x(times[i]), y(values[i])]);
      prev = times[i];
    }
    flush();
    box.textContent = "";
    box.appendChild(root);
  }

  function renderAlerts(body) {
    var ul = $("alerts");
    ul.textContent = "";
    if (!body.alerts.length) {
      var none = document.createElement("li");
      none.textContent = "No open alerts.";
      ul.appendChild(none);
      return;
    }
    body.alerts.forEach(function (a) {
      var li = document.createElement("li");
      var sev = document.createElement("strong");
      sev.className = "sev-" + a.severity;
      sev.textContent = a.severity + " · " + a.kind.replace(/_/g, " ");
      li.appendChild(sev);
      li.appendChild(document.createTextNode(" — " + a.message + " (since " + rome.format(new Date(a.opened_at)) + ")"));
      ul.appendChild(li);
    });
  }

  function loadDetail() {
    var camper = selected;
    var end = new Date();
    var start = new Date(end.getTime() - hours * 3600000);
    var q = "?fields=" + FIELDS.join(",") + "&start=" + encodeURIComponent(start.toISOString()) + "&end=" + encodeURIComponent(end.toISOString());
    $("detail-error").textContent = "";
    api("/api/v1/fleet/" + encodeURIComponent(camper) + "/series" + q).then(function (series) {
      if (camper !== selected) { return; }
      FIELDS.forEach(function (f) { chart(f, series, series.start, series.end); });
    }).catch(function (err) { failed(err, "detail-error"); });
    api("/api/v1/fleet/alerts?state=open&camper=" + encodeURIComponent(camper)).then(function (body) {
      if (camper === selected) { renderAlerts(body); }
    }).catch(function (err) { failed(err, "detail-error"); });
  }

  function start() {
    show(true);
    loadFleet();
    if (!timer) { timer = setInterval(loadFleet, refreshS * 1000); }
  }

  $("sign-in-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var value = $("token").value.trim();
    $("sign-in-error").textContent = "";
    try { sessionStorage.setItem(KEY, value); } catch (e) { $("sign-in-error").textContent = "This browser keeps no session storage."; return; }
    api("/api/v1/fleet").then(function (body) {
      $("token").value = "";
      show(true);
      renderFleet(body);
      if (!timer) { timer = setInterval(loadFleet, refreshS * 1000); }
      $("fleet-title").setAttribute("tabindex", "-1");
      $("fleet-title").focus();  // screen readers: the table is where the form was
    }).catch(function (err) {
      if (err instanceof Unauthorized) { signOut("The token was refused: " + err.message); return; }
      try { sessionStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
      $("sign-in-error").textContent = String(err.message || err);
    });
  });
  $("sign-out").addEventListener("click", function () { signOut("Signed out."); });
  Array.prototype.forEach.call(document.querySelectorAll(".range button"), function (b) {
    b.addEventListener("click", function () {
      hours = parseInt(b.dataset.hours, 10);
      Array.prototype.forEach.call(document.querySelectorAll(".range button"), function (o) { o.setAttribute("aria-pressed", String(o === b)); });
      if (selected) { loadDetail(); }
    });
  });
  if (token()) { start(); } else { show(false); }
}());
