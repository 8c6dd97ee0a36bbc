// Camper Hub, workshop kiosk: keeps the server-rendered page live. Same origin only, no library.
// - the energy stream (SSE) moves the power flow and the battery, and extends today's curve;
// - today's curve comes from /energy/series (every=5m), today's totals from /energy/summary,
//   both refreshed every few minutes;
// - when the stream has been gone for data-stale-after-s seconds, the last values stay on screen
//   and a banner says since when they are not current (Europe/Rome time).
// No phrase is built here: texts come from the page (data-* attributes), in its language.
(function () {
  "use strict";
  var body = document.body;
  var lang = body.getAttribute("data-lang") || "it";
  var streamUrl = body.getAttribute("data-stream");
  var seriesUrl = body.getAttribute("data-series");
  var summaryUrl = body.getAttribute("data-summary");
  var day = body.getAttribute("data-day");
  var dayStart = Date.parse(body.getAttribute("data-day-start"));
  var dayEnd = Date.parse(body.getAttribute("data-day-end"));
  var staleMs = 1000 * (parseFloat(body.getAttribute("data-stale-after-s")) || 30);
  var refreshMs = 1000 * (parseFloat(body.getAttribute("data-refresh-s")) || 180);
  var OLD_READING_MS = 120000;
  var BUCKET_MS = 5 * 60000;
  var W = 1600, H = 300;
  var TZ = "Europe/Rome";

  // grouping always, as the server (Babel) writes numbers: "1.234 W", not CLDR's "1234 W" in Italian
  var fmtInt = new Intl.NumberFormat(lang, { maximumFractionDigits: 0, useGrouping: "always" });
  var fmt1 = new Intl.NumberFormat(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  var fmt2 = new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2, useGrouping: "always" });
  var fmtTime = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: TZ });
  var fmtDay = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit", timeZone: TZ });

  function $(id) { return document.getElementById(id); }
  function setText(id, text) { var e = $(id); if (e && e.textContent !== text) { e.textContent = text; } }
  function watts(v) { return v === null || v === undefined ? "—" : fmtInt.format(Math.round(v)) + " W"; }

  // -- the power flow ---------------------------------------------------------------------------
  var readingMs = null;
  var reading = $("reading");
  var readingTemplate = reading ? reading.getAttribute("data-template") : "";

  function arrow(id, value, text) {
    var g = $("arrow-" + id);
    if (!g) { return; }
    g.classList.toggle("idle", !(value > 0));
    setText("w-" + id, text);
  }

  function showFlow(data) {
    var f = data.flow || {};
    arrow("pv", f.pv_w, watts(f.pv_w));
    arrow("load", f.load_w, watts(f.load_w));
    var shoreText = f.shore_w !== null && f.shore_w !== undefined ? watts(f.shore_w) : (f.shore_on ? "…" : "—");
    arrow("shore", f.shore_w, shoreText);
    var node = $("node-shore");
    if (node) { node.classList.toggle("on", !!f.shore_on); }
    var b = f.battery_w;
    var dir = b > 0 ? "charging" : (b < 0 ? "discharging" : "idle");
    var g = $("arrow-battery");
    if (g) {
      g.classList.remove("charging", "discharging");
      g.classList.add(dir);
      g.classList.toggle("idle", dir === "idle");
      var line = g.querySelector("line");
      line.removeAttribute("marker-start");
      line.removeAttribute("marker-end");
      if (dir !== "idle") { line.setAttribute(dir === "charging" ? "marker-end" : "marker-start", "url(#head-battery)"); }
      setText("w-battery", b === null || b === undefined ? "—" : fmtInt.format(Math.abs(Math.round(b))) + " W");
    }
    var state = $("battery-state");
    if (state) { setText("battery-state", state.getAttribute("data-" + dir) || ""); }
    var soc = f.soc_pct;
    var socText = soc === null || soc === undefined ? "—" : fmtInt.format(Math.round(soc)) + " %";
    setText("soc", socText);
    setText("soc-in-flow", socText);
    setSoc(soc);
    readingMs = Date.parse(data.time);
    if (reading && !isNaN(readingMs)) { setText("reading", readingTemplate.replace("{time}", fmtTime.format(new Date(readingMs)))); }
    markOld();
  }

  function setSoc(pct) {
    var bar = $("soc-bar");
    if (bar) { bar.style.width = Math.max(0, Math.min(100, pct || 0)) + "%"; }
  }

  function markOld() {
    if (reading && readingMs !== null) { reading.classList.toggle("old", Date.now() - readingMs > OLD_READING_MS); }
  }

  // -- today's curve ----------------------------------------------------------------------------
  var curve = { t: [], pv: [], load: [], n: [] };  // one point per 5-minute interval (epoch-aligned)

  function niceMax(v) {
    var steps = [100, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000];
    for (var i = 0; i < steps.length; i++) { if (v <= steps[i]) { return steps[i]; } }
    return Math.ceil(v / 5000) * 5000;
  }

  function pathOf(values, max) {
    var d = "", prev = null;
    for (var i = 0; i < curve.t.length; i++) {
      var v = values[i];
      if (v === null || v === undefined) { prev = null; continue; }
      var x = (curve.t[i] + BUCKET_MS / 2 - dayStart) / (dayEnd - dayStart) * W;
      var y = H - Math.max(0, v) / max * (H - 6);
      var gap = prev === null || curve.t[i] - curve.t[prev] > BUCKET_MS;
      d += (gap ? "M" : "L") + x.toFixed(1) + "," + y.toFixed(1);
      if (gap && (i + 1 >= curve.t.length || values[i + 1] === null || values[i + 1] === undefined)) {
        d += "h2";  // a lone interval still shows as a dot
      }
      prev = i;
    }
    return d;
  }

  function drawCurve() {
    var svgPv = $("curve-pv");
    if (!svgPv) { return; }
    var max = 0;
    for (var i = 0; i < curve.t.length; i++) { max = Math.max(max, curve.pv[i] || 0, curve.load[i] || 0); }
    max = niceMax(max);
    svgPv.setAttribute("d", pathOf(curve.pv, max));
    $("curve-load").setAttribute("d", pathOf(curve.load, max));
    var grid = $("curve-grid"), axis = $("curve-axis");
    var hours = (dayEnd - dayStart) / 3600000;
    if (grid && !grid.firstChild) {
      var ns = "http://www.w3.org/2000/svg";
      for (var h = 3; h < hours; h += 3) {
        var ln = document.createElementNS(ns, "line");
        var x = (h / hours * W).toFixed(1);
        ln.setAttribute("x1", x); ln.setAttribute("x2", x); ln.setAttribute("y1", "0"); ln.setAttribute("y2", String(H));
        grid.appendChild(ln);
      }
      for (var k = 0; k <= hours; k += 3) {
        var s = document.createElement("span");
        s.style.left = (k / hours * 100) + "%";
        s.textContent = fmtTime.format(new Date(dayStart + k * 3600000)).slice(0, 2);
        if (k === 0) { s.style.transform = "none"; }
        if (k >= hours) { s.style.transform = "translateX(-100%)"; }
        axis.appendChild(s);
      }
    }
    setText("curve-max", "0–" + fmtInt.format(max) + " W");
  }

  function addLive(ms, f) {
    if (isNaN(ms) || ms < dayStart || ms >= dayEnd) { return; }
    var b = Math.floor(ms / BUCKET_MS) * BUCKET_MS;
    var last = curve.t.length - 1;
    if (last >= 0 && curve.t[last] > b) { return; }  // older than what is drawn: the next refresh has it
    if (last < 0 || curve.t[last] < b) {
      curve.t.push(b); curve.pv.push(null); curve.load.push(null); curve.n.push(0); last += 1;
    }
    var n = curve.n[last];
    ["pv", "load"].forEach(function (key) {
      var v = f[key + "_w"];
      if (v === null || v === undefined) { return; }
      var old = curve[key][last];
      curve[key][last] = old === null || old === undefined || n === 0 ? v : (old * n + v) / (n + 1);
    });
    curve.n[last] = n + 1;
    drawCurve();
  }

  function loadSeries() {
    if (!seriesUrl) { return Promise.resolve(); }
    // the page's own day, both ends: the server's "now" may differ from the browser's clock
    var url = seriesUrl + "?fields=pv_power_w,load_power_w&every=5m&start=" + encodeURIComponent(new Date(dayStart).toISOString()) +
      "&end=" + encodeURIComponent(new Date(dayEnd).toISOString());
    return getJson(url).then(function (s) {
      if (!s) { return; }
      var c = { t: [], pv: [], load: [], n: [] };
      for (var i = 0; i < s.time.length; i++) {
        c.t.push(Date.parse(s.time[i]));
        c.pv.push(s.values.pv_power_w[i]);
        c.load.push(s.values.load_power_w[i]);
        c.n.push(1);
      }
      curve = c;
      drawCurve();
    });
  }

  // -- today's totals ---------------------------------------------------------------------------
  function applyTotals(row) {
    if (!row) { return; }
    if (row.pv_wh !== null && row.pv_wh !== undefined) { setText("t-pv", fmt2.format(row.pv_wh / 1000)); }
    if (row.load_wh !== null && row.load_wh !== undefined) { setText("t-load", fmt2.format(row.load_wh / 1000)); }
    if (row.co2_avoided_kg !== null && row.co2_avoided_kg !== undefined) { setText("t-co2", fmt1.format(row.co2_avoided_kg)); }
    var ss = row.self_sufficiency_pct;
    if (ss !== null && ss !== undefined) {
      setText("ss-value", fmtInt.format(Math.round(ss)) + " %");
      var arc = $("ss-arc");
      if (arc) { arc.setAttribute("stroke-dasharray", (Math.round(ss * 10) / 10) + " 100"); }
    }
    var eq = row.equivalents || {};  // {key: count} of /energy/summary
    Object.keys(eq).forEach(function (key) {
      var li = document.querySelector('#equivalents li[data-key="' + key + '"] .count');
      var n = eq[key];
      if (li && typeof n === "number") { li.textContent = n >= 9.95 ? fmtInt.format(Math.round(n)) : fmt1.format(n); }
    });
  }

  function loadSummary() {
    if (!summaryUrl) { return Promise.resolve(); }
    return getJson(summaryUrl + "?start=" + day + "&end=" + day).then(function (s) {
      if (!s) { return; }
      var rows = s.days || [];
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].day === day) { applyTotals(rows[i]); return; }
      }
    });
  }

  function getJson(url) {
    return fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; });  // offline: keep what is shown
  }

  function refresh() {
    if (fmtDay.format(new Date()) !== day) { window.location.reload(); return; }  // a new local day
    loadSeries();
    loadSummary();
  }

  // -- the live stream and the "not current" banner ---------------------------------------------
  var banner = $("stale");
  var connected = false;
  var goodUntil = Date.now();  // the last moment the page knew its data were current
  var source = null;

  function connect() {
    source = new EventSource(streamUrl);
    source.onopen = function () { connected = true; goodUntil = Date.now(); tick(); };
    source.addEventListener("energy", function (ev) {
      connected = true;
      goodUntil = Date.now();
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (readingMs !== null && Date.parse(data.time) < readingMs) { return; }  // a late reading: keep the newer one
      showFlow(data);
      addLive(Date.parse(data.time), data.flow || {});
      tick();
    });
    source.onerror = function () {
      if (connected) { goodUntil = Date.now(); }
      connected = false;
      if (source.readyState === EventSource.CLOSED) {  // refused (e.g. 404/429): the browser gives up, we do not
        source.close();
        window.setTimeout(connect, 5000);
      }
      tick();
    };
  }

  function tick() {
    if (connected) { goodUntil = Date.now(); }
    var stale = !connected && Date.now() - goodUntil > staleMs;
    if (banner) {
      if (stale) {
        var text = banner.getAttribute("data-text").replace("{time}", fmtTime.format(new Date(goodUntil)));
        if (banner.textContent !== text) { banner.textContent = text; }
      }
      if (banner.hidden === stale) { banner.hidden = !stale; }
      body.classList.toggle("is-stale", stale);
    }
    setText("clock", fmtTime.format(new Date()));
    markOld();
  }

  var bar = $("soc-bar");
  if (bar) { setSoc(parseFloat(bar.getAttribute("data-pct"))); }
  if (reading) { readingMs = Date.parse(reading.getAttribute("data-time")); }
  if (streamUrl && window.EventSource) { connect(); }
  window.setInterval(tick, 1000);
  loadSeries();
  window.setInterval(refresh, refreshMs);
})();
