"""``GET /workshop``: the kiosk page of the energy workshop, server-rendered, live by SSE.

Why server-rendered first: the kiosk is a tablet or a TV on a trolley in a
community room; if its script fails or the network drops, the page must still
show today's numbers. So the power flow, the battery, today's totals, the
self-sufficiency gauge and the equivalents are rendered here (Italian by
default, ``?lang=en``; texts from the gettext domain ``workshop``), and
``static/workshop.js`` then keeps them live from
``/api/v1/campers/{camper}/energy/stream``, draws today's curve from
``/energy/series`` and refreshes the totals from ``/energy/summary``.

:func:`power_flow` is the one place where a reading becomes the four arrows
(sun, battery, loads, shore power); the energy stream sends its result with
every event so that the script does no energy arithmetic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from camperhub.api.deps import RateLimited
from camperhub.api.pages import i18n
from camperhub.api.pages.i18n import N_
from camperhub.api.pages.router import _csp
from camperhub.api.timefmt import LOCAL_TZ, iso_utc
from camperhub.api.views import sample_view
from camperhub.contract import CAMPER_ID_PATTERN, Stream, is_valid_camper_id

DOMAIN = "workshop"
#: Languages of the kiosk: Italian (the default) and English.
LANGUAGES: tuple[str, ...] = ("it", "en")
#: Seconds without the live stream before the page says its data are not current.
STALE_AFTER_S = 30
#: Seconds between refreshes of today's totals, curve included (the stream keeps "now" live).
REFRESH_S = 180
#: A reading older than this is not "now": the flow says how old it is.
OLD_READING_S = 120

#: Equivalents of the analyses (workshops/analysis.py ``Equivalent.key``), in the words of the page.
EQUIVALENT_NAMES: dict[str, str] = {
    "phone_charges": N_("phone charges"),
    "led_lamp_hours": N_("hours of an LED lamp"),
    "kettles_boiled": N_("litres of water boiled"),
    "ebike_km": N_("km by e-bike"),
}
#: The assumption behind each equivalent, in words (shared with the recaps and handouts).
EQUIVALENT_ASSUMPTIONS: dict[str, str] = {
    "phone_charges": N_("a full smartphone charge takes about {wh} Wh"),
    "led_lamp_hours": N_("an LED bulb as bright as an old 60 W bulb uses about {wh} Wh an hour"),
    "kettles_boiled": N_("boiling a litre of water in a kettle takes about {wh} Wh"),
    "ebike_km": N_("a city e-bike uses about {wh} Wh per km"),
}

router = APIRouter(tags=["pages"], dependencies=[RateLimited])


# -- the power flow ---------------------------------------------------------------------------
def power_flow(fields: dict[str, Any]) -> dict[str, float | bool | None]:
    """The four arrows of the kiosk from one energy reading, in watts (None: not known).

    ``battery_w`` is positive while charging (the contract's sign); without
    ``battery_power_w`` it is current × voltage. ``shore_w`` is not measured by
    any device: while ``shore_power`` is on it is what the balance leaves
    (loads + charging − sun, never below 0); while off it is 0; unknown when
    the reading does not say whether shore power is connected.
    """
    pv = _num(fields.get("pv_power_w"))
    load = _num(fields.get("load_power_w"))
    battery = _num(fields.get("battery_power_w"))
    if battery is None:
        amps, volts = _num(fields.get("battery_current_a")), _num(fields.get("battery_voltage_v"))
        battery = amps * volts if amps is not None and volts is not None else None
    shore_on = fields.get("shore_power")
    shore_on = bool(shore_on) if isinstance(shore_on, bool) else None
    shore: float | None
    if shore_on is False:
        shore = 0.0
    elif shore_on and None not in (pv, load, battery):
        shore = max(0.0, load + battery - pv)  # type: ignore[operator]
    else:
        shore = None
    soc = _num(fields.get("battery_soc_pct"))
    return {"pv_w": pv, "load_w": load, "battery_w": battery, "shore_w": shore, "shore_on": shore_on, "soc_pct": soc}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# -- reading ----------------------------------------------------------------------------------
@dataclass
class KioskData:
    camper: str | None
    known: bool
    reading: dict[str, Any] | None  # sample_view of the newest energy reading
    totals: Any | None  # workshops.analysis.EnergyTotals of today (None: no data)
    day: date
    day_start: datetime
    day_end: datetime
    now: datetime


def local_day(now: datetime) -> tuple[date, datetime, datetime]:
    """Today's Europe/Rome date, its midnight and the next one in UTC (23 or 25 hours apart on DST days)."""
    day = now.astimezone(LOCAL_TZ).date()
    start = datetime.combine(day, time(0), LOCAL_TZ).astimezone(UTC)
    return day, start, datetime.combine(day + timedelta(days=1), time(0), LOCAL_TZ).astimezone(UTC)


def read_kiosk(request: Request, camper: str | None) -> KioskData:
    """Blocking (run it in a thread): the camper, its newest energy reading and today's totals."""
    from camperhub.workshops.analysis import daily_totals  # pandas: loaded on the first kiosk request, not at import

    clock = getattr(request.app.state, "clock", None)
    now = clock() if clock is not None else datetime.now(UTC)
    store = request.app.state.store
    broadcaster = request.app.state.broadcaster
    day, start, end = local_day(now)
    campers = store.campers()
    if camper is None:
        camper = campers[0] if campers else None
    if camper is None:
        return KioskData(None, False, None, None, day, start, end, now)
    live = broadcaster.latest(camper, Stream.ENERGY.value)
    known = camper in campers or live is not None or broadcaster.latest(camper, Stream.STATUS.value) is not None
    if not known:
        return KioskData(camper, False, None, None, day, start, end, now)
    stored = store.latest(camper, Stream.ENERGY)
    reading = None
    if live is not None and (stored is None or live.ts_ms >= stored.ts_ms):
        reading = live.data
    elif stored is not None:
        reading = sample_view(camper, Stream.ENERGY.value, stored.ts_ms, stored.fields)
    totals = None
    if stored is not None:
        rows = daily_totals(store, camper, day, day)
        totals = rows[0] if rows and rows[0].coverage_pct > 0 else None
    return KioskData(camper, True, reading, totals, day, start, end, now)


# -- shaping ----------------------------------------------------------------------------------
class Words(i18n.Words):
    """The kiosk's words: whole numbers by default, an em dash for what is not known."""

    dash = "—"

    def __init__(self, lang: str) -> None:
        super().__init__(lang, DOMAIN)


def _count_digits(count: float) -> int:
    """Whole numbers from 10 on (9.96 is "10", not "10,0"); one decimal below."""
    return 0 if count >= 9.95 else 1


def flow_context(data: KioskData, w: Words) -> dict[str, Any] | None:
    if data.reading is None:
        return None
    flow = power_flow(data.reading.get("fields", {}))
    reading_time = datetime.fromisoformat(data.reading["time"].replace("Z", "+00:00"))
    age_s = (data.now - reading_time).total_seconds()
    return {
        **{k: (w.num(v) if isinstance(v, float) else None) for k, v in flow.items() if k.endswith("_w")},
        "raw": flow,
        "battery_dir": "charging" if (flow["battery_w"] or 0) > 0 else ("discharging" if (flow["battery_w"] or 0) < 0 else "idle"),
        "battery_abs": w.num(abs(flow["battery_w"])) if flow["battery_w"] is not None else "—",  # type: ignore[arg-type]
        "soc": w.num(flow["soc_pct"]) if flow["soc_pct"] is not None else None,
        "soc_pct": flow["soc_pct"],
        "shore_on": flow["shore_on"],
        "time": w.time(reading_time),
        "time_iso": iso_utc(reading_time),
        "old": age_s > OLD_READING_S,
    }


def totals_context(data: KioskData, w: Words) -> dict[str, Any] | None:
    t = data.totals
    if t is None:
        return None
    ss = t.self_sufficiency_pct
    return {
        "pv_kwh": w.num(t.pv_wh / 1000, 2) if t.pv_wh is not None else "—",
        "load_kwh": w.num(t.load_wh / 1000, 2) if t.load_wh is not None else "—",
        "co2_kg": w.num(t.co2_avoided_kg, 1) if t.co2_avoided_kg is not None else "—",
        "self_sufficiency": w.num(ss) if ss is not None else "—",
        "self_sufficiency_pct": ss,
        "coverage": w.num(t.coverage_pct),
        "equivalents": [
            {"key": e.key, "count": w.num(e.count, _count_digits(e.count)), "name": w._(EQUIVALENT_NAMES.get(e.key, e.key)),
             "assumption": w._(EQUIVALENT_ASSUMPTIONS.get(e.key, "{wh} Wh"), wh=w.num(e.wh_each, 0 if e.wh_each >= 10 else 1))}
            for e in t.equivalents
        ],
    }


def _language(lang: str | None) -> str | None:
    if lang is None:
        return i18n.DEFAULT
    code = i18n.supported(lang)
    return code if code in LANGUAGES else None


# -- route ------------------------------------------------------------------------------------
@router.get("/workshop", include_in_schema=False, response_model=None)
async def workshop_page(
    request: Request,
    camper: Annotated[str | None, Query(max_length=32)] = None,
    lang: Annotated[str | None, Query(max_length=35)] = None,
) -> Response:
    """The kiosk; 422 (JSON) for a malformed camper id or an unsupported language, 404 (a page) for an unknown camper."""
    code = _language(lang)
    if code is None:
        return JSONResponse({"detail": f"lang: {lang!r} is not a language of the kiosk; use one of {', '.join(LANGUAGES)}"}, status_code=422)
    if camper is not None and not is_valid_camper_id(camper):
        return JSONResponse({"detail": f"camper id {camper!r} does not match {CAMPER_ID_PATTERN}"}, status_code=422)
    data = await run_in_threadpool(read_kiosk, request, camper)
    w = Words(code)
    headers = {
        "Cache-Control": "no-cache", "Content-Language": code, "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _csp(None),
    }
    base = f"/api/v1/campers/{data.camper}" if data.camper else ""
    flow = flow_context(data, w)
    body = i18n.environment(code, DOMAIN).get_template("workshop.html").render(
        lang=code,
        other_lang=[c for c in LANGUAGES if c != code][0],
        camper=data.camper,
        known=data.known,
        flow=flow,
        totals=totals_context(data, w),
        today=w.day(data.day),
        day_iso=data.day.isoformat(),
        day_start=iso_utc(data.day_start),
        day_end=iso_utc(data.day_end),
        now=w.time(data.now),
        urls={
            "stream": f"{base}/energy/stream" if base else "",
            "series": f"{base}/energy/series" if base else "",
            "summary": f"{base}/energy/summary" if base else "",
        },
        stale_after_s=STALE_AFTER_S,
        refresh_s=REFRESH_S,
        eq_names={k: w._(v) for k, v in EQUIVALENT_NAMES.items()},
    )
    status = 404 if data.camper is not None and not data.known else 200
    return HTMLResponse(body, status_code=status, headers=headers)

