"""``GET /``: the tenants' page, server-rendered (the schedule reads without JavaScript).

What it shows, in the visitor's language (``?lang=``, then the ``lang`` cookie,
then Accept-Language, then Italian): where the camper is by the public rule of
:func:`camperhub.service_state.public_view` (never its own coordinates), the
services today at the stop it is at, the visits of the next seven days with
local times, and a map of the stops drawn as inline SVG. ``GET /?part=state``
answers the state section alone as JSON, for the page's script to refresh it
when the live stream says something changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from babel.dates import format_date, format_time
from babel.lists import format_list
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from camperhub.api.deps import RateLimited
from camperhub.api.location import LocationTracker
from camperhub.api.pages import i18n
from camperhub.api.pages.i18n import N_
from camperhub.api.pages.mapsvg import layout
from camperhub.api.timefmt import LOCAL_TZ
from camperhub.contract import CAMPER_ID_PATTERN, is_valid_camper_id
from camperhub.schedule import Schedule, ScheduleSettings, Service
from camperhub.schedule_io import ScheduleRepository
from camperhub.service_state import AtStop, NotInService, OnTheWay, public_view

DAYS_SHOWN = 7

SERVICE_NAMES: dict[Service, str] = {
    Service.MAINTENANCE_DESK: N_("Repairs and maintenance desk"),
    Service.PAPERWORK_HELP: N_("Help with forms and paperwork"),
    Service.ARREARS_MEDIATION: N_("Help with rent arrears"),
    Service.ENERGY_WORKSHOP: N_("Energy workshop"),
    Service.JOB_ORIENTATION: N_("Job guidance"),
    Service.CULTURAL_MEDIATION: N_("Cultural mediation"),
}

router = APIRouter(tags=["pages"], dependencies=[RateLimited])


_schedules_lock = threading.Lock()


def _schedule_settings(request: Request) -> ScheduleSettings:
    """The app's schedule settings (read once by create_app); from the environment for an app without."""
    cfg = getattr(request.app.state, "schedule_settings", None)
    return cfg if cfg is not None else ScheduleSettings()


def _schedules(request: Request) -> ScheduleRepository:
    """The app's schedule repository (``app.state.schedules``), opened on first use when the app has none."""
    state = request.app.state
    if getattr(state, "schedules", None) is None:
        with _schedules_lock:
            if getattr(state, "schedules", None) is None:
                state.schedules = ScheduleRepository(_schedule_settings(request).schedule_path)
    return state.schedules


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


# -- reading -------------------------------------------------------------------------------
@dataclass
class Snapshot:
    camper: str | None
    schedule: Schedule | None
    view: AtStop | OnTheWay | NotInService | None
    now: datetime


def read_snapshot(request: Request, camper: str | None) -> Snapshot:
    """Blocking (run it in a thread): the camper's schedule and public view, by the location module's gathering."""
    now = _now(request)
    repo = _schedules(request)
    campers = repo.campers()
    camper = camper if camper is not None else (campers[0] if campers else None)
    if camper is None:
        return Snapshot(None, None, None, now)
    cfg = _schedule_settings(request)
    tracker = LocationTracker.load(camper, request.app.state.store, repo, request.app.state.broadcaster, now, settings=cfg)
    if tracker is None or tracker.schedule is None:
        return Snapshot(camper, None, None, now)
    view = public_view(
        tracker.schedule, tracker.status, list(tracker.positions.values()), now, staff_override=tracker.staff_override(now), settings=cfg,
    )
    return Snapshot(camper, tracker.schedule, view, now)


# -- shaping -------------------------------------------------------------------------------
class Words:
    """Translation and local formatting for one language."""

    def __init__(self, lang: str, tz: Any) -> None:
        self.lang = lang
        self.locale = i18n.babel_locale(lang)
        self.tr = i18n.translations(lang)
        self.tz = tz

    def _(self, message: str, **kw: Any) -> str:
        text = self.tr.gettext(message)
        return text.format(**kw) if kw else text

    def time(self, moment: datetime) -> str:
        return format_time(moment, "short", tzinfo=self.tz, locale=self.locale)

    def day(self, day: date) -> str:
        return format_date(day, "full", locale=self.locale)

    def service(self, s: Service) -> str:
        return self.tr.gettext(SERVICE_NAMES[s])

    def services(self, services: Any) -> str:
        """Translated names as the language lists them ("a, b e c"; Arabic's comma)."""
        return format_list([self.service(s) for s in services], locale=self.locale)


def state_context(snap: Snapshot, w: Words) -> dict[str, Any]:
    """The state section: one sentence, the stop it concerns and that stop's services."""
    view = snap.view
    out: dict[str, Any] = {"text": w._(N_("No schedule has been published yet.")), "kind": "none",
                           "stop": None, "services": [], "services_title": "", "note": None}
    if view is None:
        return out
    if isinstance(view, AtStop):
        out["kind"], out["stop"] = "at_stop", view.stop.id
        out["text"] = (w._(N_("At {stop} until {time}"), stop=view.stop.name, time=w.time(view.until_utc))
                       if view.until_utc else w._(N_("At {stop}"), stop=view.stop.name))
        out["services_title"] = w._(N_("Services today at {stop}"), stop=view.stop.name)
        out["services"] = [w.service(s) for s in view.services]
        out["address"] = view.stop.address
    elif isinstance(view, OnTheWay):
        out["kind"], out["stop"] = "on_the_way", view.to.id
        if view.eta_utc is not None:
            out["text"] = w._(N_("On the way to {stop}, arriving around {time} (± {n} min)"),
                              stop=view.to.name, time=w.time(view.eta_utc), n=view.eta_uncertainty_min)
        else:
            start = snap.schedule.next_visit(snap.now) if snap.schedule else None
            out["text"] = w._(N_("On the way to {stop}"), stop=view.to.name)
            if start is not None and start.stop.id == view.to.id:
                out["text"] = w._(N_("On the way to {stop}; the visit starts at {time}"), stop=view.to.name, time=w.time(start.start_utc))
        out["services_title"] = w._(N_("Services at {stop}"), stop=view.to.name)
        out["services"] = [w.service(s) for s in view.services]
        out["address"] = view.to.address
    else:
        out["kind"] = "not_in_service"
        if view.next_stop is not None and view.next_start_utc is not None and view.next_date_local is not None:
            out["text"] = w._(N_("Not in service; next stop {stop} on {day} at {time}"),
                              stop=view.next_stop.name, day=w.day(view.next_date_local), time=w.time(view.next_start_utc))
            out["stop"] = view.next_stop.id
        else:
            out["text"] = w._(N_("Not in service"))
        out["note"] = view.note
    return out


def week_context(snap: Snapshot, w: Words) -> list[dict[str, Any]]:
    if snap.schedule is None:
        return []
    schedule = snap.schedule
    today = snap.now.astimezone(schedule.tz).date()
    days = []
    for i in range(DAYS_SHOWN):
        day = today + timedelta(days=i)
        visits = [
            {"start": w.time(v.start_utc), "end": w.time(v.end_utc), "start_iso": v.start_utc.astimezone(schedule.tz).isoformat(),
             "stop": v.stop.name, "stop_id": v.stop.id, "address": v.stop.address,
             "services": w.services(v.services)}
            for v in schedule.visits_on(day)
        ]
        notes = [e.note for e in schedule.exceptions_on(day) if e.note and e.kind != "extra"]
        days.append({"label": w.day(day), "iso": day.isoformat(), "today": i == 0, "visits": visits, "notes": notes})
    return days


def map_context(snap: Snapshot, tile_url: str | None) -> Any:
    if snap.schedule is None:
        return None
    return layout([(s.id, s.name, s.lat, s.lon) for s in snap.schedule.stops], tile_url)


def _csp(tile_url: str | None) -> str:
    img = "'self'"
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        if parts.scheme and parts.netloc:
            img += f" {parts.scheme}://{parts.netloc}"
    return (f"default-src 'self'; img-src {img}; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# -- route ---------------------------------------------------------------------------------
@router.get("/", include_in_schema=False, response_model=None)
async def tenants_page(
    request: Request,
    lang: Annotated[str | None, Query(max_length=35)] = None,
    camper: Annotated[str | None, Query(max_length=32)] = None,
    part: Annotated[str | None, Query(pattern="^state$")] = None,
) -> Response:
    if camper is not None and not is_valid_camper_id(camper):
        return JSONResponse({"detail": f"camper id {camper!r} does not match {CAMPER_ID_PATTERN}"}, status_code=422)
    code = i18n.negotiate(lang, request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
    snap = await run_in_threadpool(read_snapshot, request, camper)
    w = Words(code, snap.schedule.tz if snap.schedule is not None else LOCAL_TZ)
    env = i18n.environment(code)
    state = state_context(snap, w)
    headers = {"Cache-Control": "no-cache", "Vary": "Accept-Language, Cookie", "Content-Language": code}
    if part == "state":
        html = env.get_template("_state.html").render(state=state)
        return JSONResponse({"lang": code, "kind": state["kind"], "stop": state["stop"], "html": html}, headers=headers)
    tile_url = getattr(request.app.state.settings, "tile_url", None)
    lang_obj = i18n.language(code)
    body = env.get_template("index.html").render(
        lang=lang_obj,
        languages=[i18n.language(c) for c in i18n.LANGUAGES],
        camper=snap.camper,
        state=state,
        week=week_context(snap, w),
        map=map_context(snap, tile_url),
        updated=w.time(snap.now),
        stream_url=f"/api/v1/campers/{snap.camper}/location/stream" if snap.camper else "",
        poll_url=f"/?part=state&lang={code}" + (f"&camper={snap.camper}" if snap.camper else ""),
    )
    response = HTMLResponse(body, headers={**headers, "Content-Security-Policy": _csp(tile_url), "X-Content-Type-Options": "nosniff"})
    if lang is not None and i18n.supported(lang) == code:
        response.set_cookie(i18n.COOKIE, code, max_age=365 * 86400, samesite="lax", httponly=False)
    return response
