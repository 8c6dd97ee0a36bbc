"""Printable handouts and session recaps: HTML from Jinja2, PDF from headless Chromium.

One renderer serves both: ``camperhub workshop report`` (a camper over some
days: daily table, charts, equivalents) and the recap of a workshop session
(one window: the same figures without the daily table). Templates live with
the pages (``api/pages/templates/handout.html``, ``recap.html`` extends it);
texts are in the ``workshop`` gettext domain, Italian first.

Privacy: nothing here reads or prints a position. The recap does not even
name the camper (its id may name a town); the handout, made by staff for a
camper they chose, names it.

PDF: headless Chromium's print-to-PDF (the Debian ``chromium``) on the HTML
written to a temporary file; its A4 print CSS is in the template. Without a
PDF engine the caller writes the HTML and says so.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from babel.dates import format_datetime

from camperhub.api.pages import i18n
from camperhub.api.pages.i18n import N_
from camperhub.store.base import Store
from camperhub.workshops import analysis
from camperhub.workshops.analysis import LOCAL_TZ, EnergyTotals, day_window
from camperhub.workshops.charts import Line, daily_bar_chart, power_chart
from camperhub.workshops.sessions import Session

DOMAIN = "workshop"
LANGS: tuple[str, ...] = ("it", "en")
#: Days read per store query while building a handout: the progress bar's step on long windows.
CHUNK_DAYS = 6
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")

EQUIVALENT_NAMES = {
    "phone_charges": N_("phone charges"),
    "led_lamp_hours": N_("hours of an LED lamp"),
    "kettles_boiled": N_("litres of water boiled"),
    "ebike_km": N_("km by e-bike"),
}
EQUIVALENT_ASSUMPTIONS = {
    "phone_charges": N_("a full smartphone charge takes about {wh} Wh"),
    "led_lamp_hours": N_("an LED bulb as bright as an old 60 W bulb uses about {wh} Wh an hour"),
    "kettles_boiled": N_("boiling a litre of water in a kettle takes about {wh} Wh"),
    "ebike_km": N_("a city e-bike uses about {wh} Wh per km"),
}


class ReportError(ValueError):
    """The report cannot be made as asked (no data, bad window); the message says why."""


class Words(i18n.Words):
    """The handout's words: one optional decimal by default, energy and shares for people."""

    digits = 1
    optional_decimals = True

    def __init__(self, lang: str) -> None:
        if lang not in LANGS:
            raise ReportError(f"language {lang!r} is not one of {', '.join(LANGS)}")
        super().__init__(lang, DOMAIN)

    def kwh(self, wh: float | None) -> str:
        """Energy for people: Wh under 1 kWh, kWh above."""
        if wh is None:
            return self.dash
        return f"{self.num(wh, 0)} Wh" if abs(wh) < 1000 else f"{self.num(wh / 1000, 2)} kWh"

    def pct(self, value: float | None) -> str:
        return self.dash if value is None else f"{self.num(value, 0)} %"

    def when(self, moment: datetime) -> str:
        return format_datetime(moment, "d MMM y, HH:mm", tzinfo=LOCAL_TZ, locale=self.locale)

    def day(self, day: date, fmt: str = "EEE d MMM") -> str:
        return super().day(day, fmt)


# -- shaping ---------------------------------------------------------------------------------
def chart_every(start: datetime, end: datetime) -> timedelta:
    """Interval of a power chart: whole minutes, at most ~600 points across the window."""
    minutes = (end - start).total_seconds() / 60 / 600
    for m in (1, 5, 15, 30, 60, 180, 360, 1440):
        if minutes <= m:
            return timedelta(minutes=m)
    return timedelta(days=1)


def figures(t: EnergyTotals, w: Words) -> list[dict[str, str]]:
    """The headline figures, each with what it means in plain words."""
    swing = "–"
    if t.battery_soc_start_pct is not None and t.battery_soc_end_pct is not None:
        swing = w._(N_("{start} → {end} (min {min}, max {max})"), start=w.pct(t.battery_soc_start_pct), end=w.pct(t.battery_soc_end_pct),
                    min=w.pct(t.battery_soc_min_pct), max=w.pct(t.battery_soc_max_pct))
    return [
        {"key": "pv", "label": w._(N_("Energy made by the sun")), "value": w.kwh(t.pv_wh),
         "meaning": w._(N_("What the solar panels on the roof produced."))},
        {"key": "load", "label": w._(N_("Energy used")), "value": w.kwh(t.load_wh),
         "meaning": w._(N_("What the lights, computers and appliances on board consumed."))},
        {"key": "self_sufficiency", "label": w._(N_("Self-sufficiency")), "value": w.pct(t.self_sufficiency_pct),
         "meaning": w._(N_("The share of the energy used that did not come from a socket (shore power)."))},
        {"key": "battery", "label": w._(N_("Battery charge")), "value": swing,
         "meaning": w._(N_("How full the battery was at the start and at the end, and its lowest and highest level."))},
        {"key": "co2", "label": w._(N_("CO2 avoided")), "value": "–" if t.co2_avoided_kg is None else f"{w.num(t.co2_avoided_kg, 2)} kg",
         "meaning": w._(N_("What the Italian grid would have emitted to supply the same solar energy."))},
        {"key": "coverage", "label": w._(N_("Data coverage")), "value": w.pct(t.coverage_pct),
         "meaning": w._(N_("The share of the time for which the camper sent readings."))},
    ]


def equivalents(t: EnergyTotals, w: Words) -> list[dict[str, str]]:
    return [
        {"key": e.key, "count": w.num(e.count, 1 if e.count < 10 else 0), "what": w._(EQUIVALENT_NAMES.get(e.key, e.key)),
         "assumption": w._(EQUIVALENT_ASSUMPTIONS[e.key], wh=w.num(e.wh_each, 0)) if e.key in EQUIVALENT_ASSUMPTIONS else e.assumption}
        for e in t.equivalents
    ]


def power_svg(store: Store, camper: str, start: datetime, end: datetime, w: Words) -> str:
    every = chart_every(start, end)
    frame = analysis.power_frame(store, camper, start, end, every)
    lines = [Line("pv_w", w._(N_("Solar")), "pv", area=True), Line("load_w", w._(N_("Consumption")), "load")]
    desc = w._(N_("Mean power every {n} minutes from {start} to {end} (Italian time); gaps are times without readings."),
               n=int(every.total_seconds() // 60), start=w.when(start), end=w.when(end))
    return power_chart(frame, lines, start, end, title=w._(N_("Solar power and consumption")), desc=desc, every=every)


def daily_rows(days: list[EnergyTotals], w: Words) -> list[dict[str, Any]]:
    return [
        {"day": w.day(d.day) if d.day else "", "pv": w.kwh(d.pv_wh), "load": w.kwh(d.load_wh),
         "self_sufficiency": w.pct(d.self_sufficiency_pct), "sunny": w.num(d.sunny_hours, 1),
         "peak_pv": "–" if d.peak_pv_w is None else f"{w.num(d.peak_pv_w, 0)} W", "coverage": w.pct(d.coverage_pct),
         "low": d.low_coverage}
        for d in days
    ]


def _has_data(t: EnergyTotals) -> bool:
    return t.pv_wh is not None or t.load_wh is not None


def _coverage_note(t: EnergyTotals, w: Words) -> str | None:
    if not t.low_coverage:
        return None
    return w._(N_("Readings cover only {pct} of this time: the figures are those of the covered part."), pct=w.pct(t.coverage_pct))


# -- handout ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Handout:
    html: str
    days: list[EnergyTotals]
    totals: EnergyTotals


def build_handout(
    store: Store, camper: str, first_day: date, last_day: date, lang: str = "it", *,
    progress: Callable[[int], None] | None = None, now: datetime | None = None,
) -> Handout:
    """The handout of ``camper`` over Europe/Rome days ``first_day..last_day`` (inclusive).

    ``progress(n)`` is called after each chunk of ``n`` days is read. ReportError
    when the window is inverted or too long, or holds no readings at all.
    """
    w = Words(lang)
    if last_day < first_day:
        raise ReportError(f"the window is inverted: {last_day.isoformat()} is before {first_day.isoformat()}")
    n_days = (last_day - first_day).days + 1
    if n_days > analysis.MAX_DAYS:
        raise ReportError(f"{n_days} days is more than {analysis.MAX_DAYS}: ask for a shorter window")
    days: list[EnergyTotals] = []
    chunk_start = first_day
    while chunk_start <= last_day:
        chunk_end = min(chunk_start + timedelta(days=CHUNK_DAYS - 1), last_day)
        days += analysis.daily_totals(store, camper, chunk_start, chunk_end)
        if progress is not None:
            progress((chunk_end - chunk_start).days + 1)
        chunk_start = chunk_end + timedelta(days=1)
    start, end = day_window(first_day)[0], day_window(last_day)[1]
    if not any(_has_data(d) for d in days):
        raise ReportError(f"no energy readings for camper {camper!r} from {first_day.isoformat()} to {last_day.isoformat()}")
    totals = analysis.window_totals(store, camper, start, end)
    daily_svg = daily_bar_chart(
        [(d.day, {"pv": d.pv_wh, "load": d.load_wh}) for d in days if d.day is not None],
        [("pv", w._(N_("Solar")), "pv"), ("load", w._(N_("Consumption")), "load")],
        title=w._(N_("Energy per day")),
        desc=w._(N_("Solar energy and consumption of each day, in watt-hours; a dash is a day without readings.")),
    )
    period = (w.day(first_day, "d MMMM y") if n_days == 1
              else w._(N_("{first} – {last}"), first=w.day(first_day, "d MMMM y"), last=w.day(last_day, "d MMMM y")))
    html = i18n.environment(lang, DOMAIN).get_template("handout.html").render(
        lang=lang, kind="handout",
        title=w._(N_("Solar energy of the camper {camper}"), camper=camper),
        period=period,
        figures=figures(totals, w), coverage_note=_coverage_note(totals, w),
        equivalents=equivalents(totals, w),
        power_svg=power_svg(store, camper, start, end, w), daily_svg=daily_svg,
        days=daily_rows(days, w),
        generated=w.when(now or datetime.now(UTC)),
    )
    return Handout(html, days, totals)


# -- recap -----------------------------------------------------------------------------------
def recap_totals(store: Store, session: Session, now: datetime) -> EnergyTotals:
    """Totals of a session's window (up to ``now`` while it is open)."""
    end = session.end(now)
    if end <= session.started:
        end = session.started + timedelta(minutes=1)
    return analysis.window_totals(store, session.camper, session.started, end)


def recap_json(totals: EnergyTotals, session: Session) -> dict[str, Any]:
    """The recap as data: no camper id, no position (a recap link is public)."""
    return {
        "started": session.started.isoformat().replace("+00:00", "Z"),
        "stopped": None if session.stopped is None else session.stopped.isoformat().replace("+00:00", "Z"),
        "open": session.open,
        "coverage_pct": totals.coverage_pct,
        "pv_wh": totals.pv_wh, "load_wh": totals.load_wh,
        "battery_charge_wh": totals.battery_charge_wh, "battery_discharge_wh": totals.battery_discharge_wh,
        "shore_wh": totals.shore_wh,
        "self_sufficiency_pct": totals.self_sufficiency_pct,
        "self_consumption_pct": totals.self_consumption_pct,
        "peak_pv_w": totals.peak_pv_w, "peak_load_w": totals.peak_load_w,
        "co2_avoided_kg": totals.co2_avoided_kg,
        "battery_soc_start_pct": totals.battery_soc_start_pct, "battery_soc_end_pct": totals.battery_soc_end_pct,
        "battery_soc_min_pct": totals.battery_soc_min_pct, "battery_soc_max_pct": totals.battery_soc_max_pct,
        "equivalents": [{"key": e.key, "count": e.count, "wh_each": e.wh_each, "assumption": e.assumption} for e in totals.equivalents],
    }


def render_recap(store: Store, session: Session, now: datetime, lang: str = "it") -> tuple[str, EnergyTotals]:
    """The recap page of a session (HTML) and its totals."""
    w = Words(lang)
    totals = recap_totals(store, session, now)
    start, end = totals.start, totals.end
    period = w._(N_("{day}, {start} – {end}"), day=w.day(start.astimezone(LOCAL_TZ).date(), "EEEE d MMMM y"),
                 start=w.time(start), end=w.time(end))
    html = i18n.environment(lang, DOMAIN).get_template("recap.html").render(
        lang=lang, kind="recap",
        title=w._(N_("Workshop recap")),
        period=period, open=session.open,
        figures=figures(totals, w), coverage_note=_coverage_note(totals, w) if _has_data(totals) else None,
        no_data=None if _has_data(totals) else w._(N_("No readings arrived for this session yet.")),
        equivalents=equivalents(totals, w),
        power_svg=power_svg(store, session.camper, start, end, w), daily_svg=None, days=[],
        generated=w.when(now),
    )
    return html, totals


# -- PDF -------------------------------------------------------------------------------------
def find_pdf_engine() -> str | None:
    """The headless Chromium binary on PATH, or None."""
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    return None


def html_to_pdf(html: str, out: Path, engine: str, timeout_s: float = 120.0) -> None:
    """Print ``html`` to ``out`` (A4, the template's print CSS) with headless Chromium.

    A private profile in a temporary folder keeps it apart from any other
    Chromium running; network features are off (the HTML is self-contained).
    ReportError when Chromium fails or writes nothing.
    """
    with tempfile.TemporaryDirectory(prefix="camperhub-pdf-") as tmp:
        page = Path(tmp) / "handout.html"
        page.write_text(html, encoding="utf-8")
        target = Path(tmp) / "out.pdf"
        cmd = [
            engine, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-default-apps", "--no-pdf-header-footer", f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--print-to-pdf={target}", page.as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ReportError(f"{engine} did not finish the PDF within {timeout_s:g} s") from exc
        except OSError as exc:
            raise ReportError(f"cannot run {engine}: {exc}") from exc
        if not target.exists() or target.stat().st_size == 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise ReportError(f"{engine} wrote no PDF (exit {done.returncode}): {' '.join(tail)}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), out)
