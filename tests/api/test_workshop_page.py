"""The workshop kiosk ``/workshop`` server-side: what it shows without JavaScript, its languages,
its clear answers for an unknown camper and for a camper without readings; the power flow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.pages import i18n
from camperhub.api.pages.workshop import local_day, power_flow
from camperhub.contract import Stream
from camperhub.store.sqlite import SqliteStore
from camperhub.workshops.equivalents import PHONE_CHARGE_WH
from tests.api.conftest import settings, smp

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "api" / "pages"
#: Monday 2026-05-04, 14:00 in Europe/Rome.
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
CAMPER = "varese-1"
MIN = 60_000
#: Readings every minute from 08:00 to 14:00 local (06:00Z-12:00Z), both included.
MINUTES = 361
PV_W, LOAD_W, BATTERY_W = 200.0, 100.0, 100.0


def seed_energy(store: SqliteStore, *, shore_power: bool = False) -> None:
    """Six hours of a steady sunny morning: 200 W of sun, 100 W used, 100 W into the battery."""
    store.write([
        smp(Stream.ENERGY, NOW_MS - k * MIN, camper=CAMPER, seq=10_000 - k, pv_power_w=PV_W, load_power_w=LOAD_W,
            battery_power_w=BATTERY_W, battery_soc_pct=80.0 - k * 0.05, shore_power=shore_power)
        for k in range(MINUTES)
    ])


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "store.sqlite")
    seed_energy(store)
    with TestClient(create_app(settings(), store, clock=lambda: NOW)) as client:
        yield client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


def test_italian_by_default_with_flow_totals_gauge_and_equivalents(kiosk: TestClient) -> None:
    r = kiosk.get("/workshop")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    body, text = r.text, text_of(r.text)
    assert '<html lang="it">' in body and r.headers["content-language"] == "it"
    assert "L'energia del camper" in text and CAMPER in text and "lunedì 4 maggio 2026" in text
    # the power flow: the newest reading's watts on the arrows, the battery charging at 80 %
    assert re.search(r'id="w-pv"[^>]*>200 W<', body) and re.search(r'id="w-load"[^>]*>100 W<', body)
    assert re.search(r'id="w-battery"[^>]*>100 W<', body) and 'class="arrow battery charging"' in body
    assert re.search(r'id="w-shore"[^>]*>0 W<', body) and re.search(r'class="arrow shore idle"', body)
    assert re.search(r'id="soc"[^>]*>80 %<', body) and "in carica" in text and "lettura delle 14:00" in text
    # today's totals (Italian decimals): 361 minutes at 200 W and 100 W; no shore power: 100 % self-sufficient
    assert f'id="t-pv">{MINUTES * PV_W / 60 / 1000:.2f}'.replace(".", ",") in body
    assert f'id="t-load">{MINUTES * LOAD_W / 60 / 1000:.2f}'.replace(".", ",") in body
    assert re.search(r'id="ss-value"[^>]*>100 %<', body) and 'stroke-dasharray="100.0 100"' in body
    phones = round(MINUTES * PV_W / 60 / PHONE_CHARGE_WH)
    assert re.search(rf'data-key="phone_charges"[^>]*><strong class="count">{phones}</strong> <span class="name">ricariche di telefono', body)
    assert 'title="una ricarica completa di uno smartphone richiede circa 18 Wh"' in body  # the assumption, for the leader
    assert "Il sole di oggi vale" in text and "Autosufficienza" in text
    # the live parts: the stream, series and summary of this camper, the stale banner's words, the sessions' slot
    assert f'data-stream="/api/v1/campers/{CAMPER}/energy/stream"' in body
    assert f'data-series="/api/v1/campers/{CAMPER}/energy/series"' in body
    assert 'data-text="Dati non aggiornati dalle {time}"' in body and re.search(r'<div id="stale"[^>]*hidden', body)
    assert '<div id="session-slot"' in body
    assert 'data-day-start="2026-05-03T22:00:00Z"' in body and 'data-day-end="2026-05-04T22:00:00Z"' in body
    # assets are the app's own: nothing from another host, and the CSP says so
    assert not re.search(r'(src|href)="(https?:)?//', body)
    assert "default-src 'self'" in r.headers["content-security-policy"] and "connect-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/workshop.css", "/static/workshop.js"):
        assert asset in body and kiosk.get(asset).status_code == 200


def test_english_with_lang_en(kiosk: TestClient) -> None:
    r = kiosk.get("/workshop", params={"lang": "en", "camper": CAMPER})
    assert r.status_code == 200
    body, text = r.text, text_of(r.text)
    assert '<html lang="en">' in body and r.headers["content-language"] == "en"
    assert "The camper's energy" in text and "Monday, May 4, 2026" in text
    assert "charging" in text and "reading of 14:00" in text and "Today so far" in text
    assert f'id="t-pv">{MINUTES * PV_W / 60 / 1000:.2f}<' in body  # English decimal point
    assert 'data-text="Data not updated since {time}"' in body
    assert "L'energia del camper" not in text
    assert 'href="?lang=it&amp;camper=varese-1"' in body  # the way back to Italian


def test_unknown_camper_is_a_clear_404_page(kiosk: TestClient) -> None:
    r = kiosk.get("/workshop", params={"camper": "nobody-9"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    text = text_of(r.text)
    assert "Camper sconosciuto" in text and "«nobody-9»" in text
    assert 'id="flow"' not in r.text and "/static/workshop.js" not in r.text
    en = kiosk.get("/workshop", params={"camper": "nobody-9", "lang": "en"})
    assert en.status_code == 404 and "Unknown camper" in text_of(en.text)


def test_bad_parameters_are_named(kiosk: TestClient) -> None:
    r = kiosk.get("/workshop", params={"camper": "Not A Camper"})
    assert r.status_code == 422 and "camper id 'Not A Camper'" in r.json()["detail"]
    r = kiosk.get("/workshop", params={"lang": "de"})
    assert r.status_code == 422 and "lang: 'de'" in r.json()["detail"] and "it, en" in r.json()["detail"]


def test_no_data_yet(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    with TestClient(create_app(settings(), store, clock=lambda: NOW)) as client:
        r = client.get("/workshop")  # no camper at all
        assert r.status_code == 200 and "Ancora nessun dato" in text_of(r.text)
        assert 'id="flow"' not in r.text
        # a camper that reported its status but no energy yet
        store.write([smp(Stream.STATUS, NOW_MS - MIN, camper=CAMPER, state="online")])
        r = client.get("/workshop", params={"camper": CAMPER})
        assert r.status_code == 200
        text = text_of(r.text)
        assert "Ancora nessun dato" in text and "non ha ancora inviato letture" in text and CAMPER in text


def test_readings_only_from_earlier_days_show_the_flow_but_no_totals_for_today(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write([smp(Stream.ENERGY, NOW_MS - 2 * 86_400_000, camper=CAMPER, pv_power_w=50.0, load_power_w=20.0)])
    with TestClient(create_app(settings(), store, clock=lambda: NOW)) as client:
        r = client.get("/workshop")
        text = text_of(r.text)
        assert r.status_code == 200 and re.search(r'id="w-pv"[^>]*>50 W<', r.text)
        assert "Oggi non ci sono ancora abbastanza letture per i totali." in text
        assert 'class="reading old"' in r.text  # two days old: marked as such


# -- the power flow ----------------------------------------------------------------------------
def test_power_flow_from_a_reading() -> None:
    f = power_flow({"pv_power_w": 50, "load_power_w": 300, "battery_power_w": -100, "shore_power": True, "battery_soc_pct": 41.5})
    assert f == {"pv_w": 50.0, "load_w": 300.0, "battery_w": -100.0, "shore_w": 150.0, "shore_on": True, "soc_pct": 41.5}
    # battery from current and voltage; shore power off is 0; never below 0
    f = power_flow({"pv_power_w": 400, "load_power_w": 100, "battery_current_a": 10.0, "battery_voltage_v": 13.2, "shore_power": False})
    assert f["battery_w"] == pytest.approx(132.0) and f["shore_w"] == 0.0
    assert power_flow({"pv_power_w": 400, "load_power_w": 100, "battery_power_w": 0, "shore_power": True})["shore_w"] == 0.0


def test_power_flow_never_invents_a_value() -> None:
    f = power_flow({"pv_power_w": 120})
    assert f == {"pv_w": 120.0, "load_w": None, "battery_w": None, "shore_w": None, "shore_on": None, "soc_pct": None}
    # shore power on but the balance incomplete: connected, watts unknown
    f = power_flow({"pv_power_w": 120, "load_power_w": 80, "shore_power": True})
    assert f["shore_on"] is True and f["shore_w"] is None


def test_local_day_is_23_or_25_hours_on_dst_days() -> None:
    day, start, end = local_day(datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert day.isoformat() == "2026-03-29" and (end - start).total_seconds() == 23 * 3600
    day, start, end = local_day(datetime(2026, 10, 25, 12, 0, tzinfo=UTC))
    assert (end - start).total_seconds() == 25 * 3600 and start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)


# -- the catalogue ----------------------------------------------------------------------------
def _kiosk_messages() -> set[str]:
    """Messages of the kiosk's code and templates (Babel's extractors)."""
    templates = ("templates/workshop.html", "templates/workshop_*.html")
    method_map = [("workshop.py", "python"), *((t, "jinja2") for t in templates)]
    options = {t: {"extensions": "jinja2.ext.i18n"} for t in templates}
    found = extract_from_dir(str(PAGES), method_map, options_map=options, keywords={"_": None, "N_": None})
    return {msg for _, _, msg, _, _ in found if isinstance(msg, str)}


@pytest.mark.parametrize("code", ["it", "en"])
def test_every_kiosk_message_is_translated(code: str) -> None:
    used = _kiosk_messages()
    assert len(used) > 30
    with i18n.po_path(code, "workshop").open("rb") as fh:
        catalog = read_po(fh, locale=i18n.babel_locale(code))
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(used - set(translated))
    assert not missing, f"{code}: not in workshop.po: {missing}"
    for msg in used:
        assert set(re.findall(r"\{(\w+)\}", msg)) == set(re.findall(r"\{(\w+)\}", translated[msg])), msg
