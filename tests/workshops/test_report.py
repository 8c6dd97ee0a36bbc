"""Handouts and recaps rendered from constructed data on both stores; the PDF by the real Chromium."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.store.sqlite import SqliteStore
from camperhub.workshops.report import ReportError, build_handout, find_pdf_engine, html_to_pdf, recap_json, render_recap
from camperhub.workshops.sessions import SessionRepository
from tests.api.conftest import smp

CAMPER = "van-1"
#: 08:00 to 11:00 in Europe/Rome on Monday 4 May 2026: the workshop's three hours of readings
START = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
HOURS = 3
PV_W, LOAD_W = 300.0, 100.0


def seed(store: Store, camper: str = CAMPER, start: datetime = START, hours: int = HOURS) -> None:
    """One reading a minute: PV_W of sun, LOAD_W of use, the rest into the battery (SoC 40 % -> 58 %);
    plus a position (which no handout or recap may show)."""
    t0 = int(start.timestamp() * 1000)
    n = hours * 60
    store.write([
        smp(Stream.ENERGY, t0 + k * 60_000, camper=camper, pv_power_w=PV_W, load_power_w=LOAD_W,
            battery_power_w=PV_W - LOAD_W, battery_soc_pct=40.0 + 18.0 * k / (n - 1), shore_power=False)
        for k in range(n)
    ] + [smp(Stream.POSITION, t0, camper=camper, lat=45.8069, lon=8.8129, fix=3)])


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_handout_in_italian_with_daily_table_charts_and_equivalents(store: Store) -> None:
    seed(store)
    h = build_handout(store, CAMPER, date(2026, 5, 3), date(2026, 5, 5), "it", now=START + timedelta(days=2))
    text = text_of(h.html)
    pv_wh, load_wh = PV_W * HOURS, LOAD_W * HOURS
    assert h.totals.pv_wh == pytest.approx(pv_wh) and h.totals.load_wh == pytest.approx(load_wh)
    assert '<html lang="it">' in h.html
    assert "Energia solare del camper van-1" in text and "3 maggio 2026 – 5 maggio 2026" in text
    assert f"{pv_wh:.0f} Wh" in text and f"{load_wh:.0f} Wh" in text
    assert "40 % → 58 % (min 40 %, max 58 %)" in text  # the battery swing
    assert f"{pv_wh / 18:.0f} ricariche di telefono" in text  # equivalents of the PV energy, translated
    assert "Cosa vogliono dire questi numeri" in text
    # one row per local day; the days without readings show dashes, never zeros
    rows = re.findall(r"<tr(?: class=\"low\")?><td>([^<]+)</td><td>([^<]+)</td>", h.html)
    assert rows == [("dom 3 mag", "–"), ("lun 4 mag", f"{pv_wh:.0f} Wh"), ("mar 5 mag", "–")]
    assert h.html.count("<svg") == 2 and h.html.count("<title>") >= 3  # the power and the daily chart, accessible
    assert "Le misure coprono solo" in text  # three hours of three days: the coverage is said
    assert "45.80" not in h.html and "8.81" not in h.html  # no position of any kind
    assert "<script" not in h.html and "http://" not in h.html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "@page { size: A4" in h.html


def test_handout_in_english_and_progress_over_the_days(store: Store) -> None:
    seed(store)
    done: list[int] = []
    h = build_handout(store, CAMPER, date(2026, 4, 20), date(2026, 5, 10), "en", progress=done.append)
    assert sum(done) == 21 and len(done) == 4  # chunks of six days: 6 + 6 + 6 + 3
    assert len(h.days) == 21 and sum(d.pv_wh is not None for d in h.days) == 1
    text = text_of(h.html)
    assert '<html lang="en">' in h.html and "Energy made by the sun" in text and "What the figures mean" in text


def test_handout_refuses_no_data_and_bad_windows(store: Store) -> None:
    seed(store)
    with pytest.raises(ReportError, match="no energy readings for camper 'van-1' from 2026-06-01 to 2026-06-07"):
        build_handout(store, CAMPER, date(2026, 6, 1), date(2026, 6, 7))
    with pytest.raises(ReportError, match="no energy readings for camper 'nobody'"):
        build_handout(store, "nobody", date(2026, 5, 4), date(2026, 5, 4))
    with pytest.raises(ReportError, match="inverted"):
        build_handout(store, CAMPER, date(2026, 5, 5), date(2026, 5, 4))
    with pytest.raises(ReportError, match="more than 400"):
        build_handout(store, CAMPER, date(2020, 1, 1), date(2026, 5, 4))
    with pytest.raises(ReportError, match="language 'de'"):
        build_handout(store, CAMPER, date(2026, 5, 4), date(2026, 5, 4), "de")


def test_recap_of_a_session_has_the_figures_and_no_location(store: Store, tmp_path: Path) -> None:
    seed(store, camper="varese-1")
    repo = SessionRepository(tmp_path / "sessions.sqlite")
    repo.start("varese-1", "kiosk", START + timedelta(minutes=30))
    session = repo.stop("varese-1", "kiosk", START + timedelta(minutes=150))
    html, totals = render_recap(store, session, START + timedelta(hours=5), "it")
    assert totals.pv_wh == pytest.approx(PV_W * 2) and totals.load_wh == pytest.approx(LOAD_W * 2)
    text = text_of(html)
    assert "Riepilogo del laboratorio" in text and "lunedì 4 maggio 2026, 08:30 – 10:30" in text
    assert f"{PV_W * 2:.0f} Wh" in text and "100 %" in text and "in corso" not in text
    assert "varese" not in html.lower() and "45.80" not in html and "8.81" not in html  # neither the camper's id nor a position
    data = recap_json(totals, session)
    assert data["pv_wh"] == pytest.approx(600) and data["open"] is False and data["started"] == "2026-05-04T06:30:00Z"
    assert "camper" not in data and not any("lat" in k or "lon" in k for k in data)
    # an open session: recapped up to now, marked in progress
    repo.start("varese-1", "button", START + timedelta(minutes=170))
    html, totals = render_recap(store, repo.current("varese-1"), START + timedelta(minutes=180), "en")
    assert "in progress" in html and totals.pv_wh == pytest.approx(PV_W * 10 / 60)


def test_the_pdf_is_made_by_the_real_chromium(tmp_path: Path) -> None:
    engine = find_pdf_engine()
    assert engine is not None, "chromium not found: install Debian's chromium (scripts/install-system-deps.sh)"
    store = SqliteStore(tmp_path / "store.sqlite")
    try:
        seed(store)
        h = build_handout(store, CAMPER, date(2026, 5, 4), date(2026, 5, 4), "it")
    finally:
        store.close()
    out = tmp_path / "out" / "handout.pdf"
    html_to_pdf(h.html, out, engine)
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5_000
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert boxes and all(abs(float(w) - 595.3) < 1 and abs(float(h) - 841.9) < 1 for w, h in boxes)  # A4 pages, in points
