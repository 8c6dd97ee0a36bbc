"""The workshop kiosk in headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

The app runs under uvicorn on a free 127.0.0.1 port in a thread (the helpers and the
browser fixture of tests/api/test_page_browser.py), over a SQLite store with the
last half hour of readings. The browser must show the live watts after a live
sample is published into the Broadcaster, draw today's curve, fit a 1920×1080
screen and a 1280×800 tablet with big type, keep the last values and show the
"stale" banner once the server is gone, and never send a request off loopback.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

from camperhub.api.app import create_app
from camperhub.api.pages import workshop
from camperhub.api.views import sample_view
from camperhub.contract import Stream
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings, smp
from tests.api.test_page_browser import Server, _requested_urls, _text, browser  # noqa: F401  (browser: fixture)

CAMPER = "varese-1"
ROME = ZoneInfo("Europe/Rome")


def seed(tmp_path: Path, now: datetime) -> SqliteStore:
    """A reading a minute over the last 30 minutes (from local midnight at most): 200 W of sun, 100 W used."""
    midnight = datetime.combine(now.astimezone(ROME).date(), datetime.min.time(), ROME)
    store = SqliteStore(tmp_path / "store.sqlite")
    now_ms = int(now.timestamp() * 1000)
    samples = [
        smp(Stream.ENERGY, now_ms - k * 60_000, camper=CAMPER, seq=1000 - k, pv_power_w=200.0, load_power_w=100.0,
            battery_power_w=100.0, battery_soc_pct=75.0, shore_power=False)
        for k in range(30)
        if now - timedelta(minutes=k) >= midnight
    ]
    store.write(samples)
    return store


def _content(driver: webdriver.Chrome, css: str) -> str:
    """An element's text content, read in one step (SVG text has no innerText)."""
    return str(driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';", css))


def _layout(driver: webdriver.Chrome, width: int, height: int) -> dict:
    driver.set_window_size(width, height)
    time.sleep(0.3)
    return driver.execute_script(
        """
        const r = (s) => document.querySelector(s).getBoundingClientRect();
        const px = (s) => parseFloat(getComputedStyle(document.querySelector(s)).fontSize);
        return {inner: window.innerWidth, scroll: document.documentElement.scrollWidth,
                watts_h: r('#w-pv').height, flow_w: r('#flow').width, soc_px: px('#soc'), h1_px: px('h1'),
                curve_w: r('#curve').width};
        """
    )


def test_the_kiosk_in_headless_chromium(tmp_path: Path, browser: webdriver.Chrome, monkeypatch) -> None:
    monkeypatch.setattr(workshop, "STALE_AFTER_S", 3)  # the page's thresholds (30 s, 3 min in service)
    monkeypatch.setattr(workshop, "REFRESH_S", 2)
    start = datetime.now(UTC)
    store = seed(tmp_path, start)
    app = create_app(settings(), store)
    wait = WebDriverWait(browser, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    server = Server(app)
    server.__enter__()
    try:
        base = f"http://127.0.0.1:{server.port}"
        browser.get(base + "/workshop")
        # 1. Italian, the camper's flow from the server, today's curve drawn by the script
        assert browser.execute_script("return document.documentElement.lang") == "it"
        assert _text(browser, "h1") == "L'energia del camper"
        assert _content(browser, "#w-pv") == "200 W" and _text(browser, "#soc") == "75 %"
        wait.until(lambda d: len(d.execute_script("return document.getElementById('curve-pv').getAttribute('d') || ''")) > 10)
        assert browser.execute_script("return document.getElementById('stale').hidden") is True

        # 2. a live sample published into the Broadcaster moves the arrows and the battery
        time.sleep(0.5)  # let the event stream connect
        ts = int(time.time() * 1000)
        fields = {"seq": 2000, "pv_power_w": 345.0, "load_power_w": 1234.0, "battery_power_w": -400.0,
                  "battery_soc_pct": 62.0, "shore_power": True}
        app.state.broadcaster.publish_threadsafe(CAMPER, "energy", ts, sample_view(CAMPER, "energy", ts, fields))
        wait.until(lambda d: _content(d, "#w-pv") == "345 W")
        assert _content(browser, "#w-load") == "1.234 W"  # Italian thousands separator
        assert _content(browser, "#w-battery") == "400 W" and _text(browser, "#battery-state") == "in scarica"
        assert _content(browser, "#w-shore") == "489 W"  # 1234 - 400 - 345: what the socket gave
        assert _text(browser, "#soc") == "62 %"
        assert browser.execute_script("return document.querySelector('#arrow-battery line').getAttribute('marker-start')") == "url(#head-battery)"

        # 3. today's totals are refreshed from /energy/summary: more sun stored, more kWh shown
        before = _text(browser, "#t-pv")
        now_ms = int(start.timestamp() * 1000)
        midnight = datetime.combine(start.astimezone(ROME).date(), datetime.min.time(), ROME)
        store.write([
            smp(Stream.ENERGY, now_ms - k * 60_000 - 30_000, camper=CAMPER, seq=3000 - k, pv_power_w=1000.0, load_power_w=100.0)
            for k in range(30) if start - timedelta(minutes=k, seconds=30) >= midnight
        ])
        wait.until(lambda d: _text(d, "#t-pv") not in (before, ""))
        assert float(_text(browser, "#t-pv").replace(",", ".")) > float(before.replace(",", "."))

        # 4. full screen at 1920×1080 and on a 1280×800 tablet: no sideways scrolling, big type
        for width, height in ((1920, 1080), (1280, 800)):
            box = _layout(browser, width, height)
            assert box["scroll"] <= box["inner"], (width, box)
            assert box["watts_h"] >= 28 and box["soc_px"] >= 28 and box["h1_px"] >= 28, (width, box)
            assert box["flow_w"] >= 0.4 * box["inner"] and box["curve_w"] >= 0.8 * box["inner"], (width, box)

        # 5. nothing left loopback; the page's own assets and the energy endpoints were used; no script error
        urls = _requested_urls(browser)
        assert any(u.endswith("/static/workshop.css") for u in urls) and any(u.endswith("/static/workshop.js") for u in urls)
        assert any("/energy/stream" in u for u in urls) and any("/energy/series" in u for u in urls)
        off = [u for u in urls if urlsplit(u).hostname != "127.0.0.1"]
        assert not off, f"requests off loopback: {off}"
        problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not problems, problems
    finally:
        server.__exit__(None, None, None)

    # 6. the server is gone: the last values stay, and the banner says since when (Europe/Rome time)
    lost = datetime.now(ROME)
    wait.until(lambda d: d.execute_script("return !document.getElementById('stale').hidden"))
    banner = _text(browser, "#stale")
    m = re.fullmatch(r"Dati non aggiornati dalle (\d\d:\d\d)", banner)
    assert m, banner
    allowed = {(lost + timedelta(minutes=d)).strftime("%H:%M") for d in (-1, 0)}
    assert m.group(1) in allowed, (banner, allowed)
    assert _content(browser, "#w-pv") == "345 W" and _text(browser, "#soc") == "62 %"
    urls = _requested_urls(browser)
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in urls), urls
