"""Public endpoints (tenants, phones, the public page): campers, location, schedule, live streams.

The energy endpoints (now, summary, series) are in :mod:`camperhub.api.routers.workshops`.

Routes stay thin: parameters are validated here (422 names the problem),
reading is the store's job, shaping is :mod:`camperhub.api.views`'s. Every
route is rate limited per client address; GETs carry ``Cache-Control``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from camperhub.api.deps import (
    BroadcasterDep,
    CamperIdDep,
    ClockDep,
    MetricsDep,
    RateLimited,
    ScheduleSettingsDep,
    SchedulesDep,
    SettingsDep,
    StoreDep,
    cache_control,
)
from camperhub.api.location import LocationHub, schedule_view
from camperhub.api.timefmt import when
from camperhub.api.views import sample_view
from camperhub.contract import Stream

router = APIRouter(prefix="/api/v1", tags=["tenants"], dependencies=[RateLimited])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown camper, or nothing stored yet"},
    422: {"description": "A parameter is invalid; `detail` names it"},
    429: {"description": "Too many requests from this address; see Retry-After"},
}


# -- models ------------------------------------------------------------------------------
class Moment(BaseModel):
    utc: str = Field(description="ISO 8601, UTC", examples=["2026-05-04T12:00:00Z"])
    local: str = Field(description="The same instant in Europe/Rome", examples=["2026-05-04T14:00:00+02:00"])


class CamperSummary(BaseModel):
    camper: str
    state: Literal["online", "offline", "unknown"] = Field(description="The agent's last reported state (its Last Will says offline)")
    mode: Literal["normal", "live"] | None = None
    in_service: bool | None = None
    last_seen: Moment | None = Field(default=None, description="Newest reading of any kind (status or energy)")
    status_time: Moment | None = Field(default=None, description="When the agent last reported its status")


class CampersResponse(BaseModel):
    campers: list[CamperSummary]


# -- helpers -------------------------------------------------------------------------------
def _json(request: Request, body: Any, settings_cache: str, *, etag: bool = False) -> Response:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    headers = {"Cache-Control": settings_cache}
    if etag:
        tag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
        headers["ETag"] = tag
        wanted = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
        if tag in wanted or "*" in wanted:
            return Response(status_code=304, headers=headers)
    return Response(payload, media_type="application/json", headers=headers)


# -- routes --------------------------------------------------------------------------------
@router.get("/campers", summary="Every camper with its latest status", response_model=CampersResponse, responses={429: _ERRORS[429]})
def campers(request: Request, store: StoreDep, broadcaster: BroadcasterDep, settings: SettingsDep) -> Response:
    """Campers that have stored anything, with the agent's last reported state, mode and
    service flag and when it was last seen (UTC and Europe/Rome). Answers carry an ETag:
    ``If-None-Match`` gets 304 while nothing changed."""
    out = []
    for camper in store.campers():
        status = store.latest(camper, Stream.STATUS)
        energy = store.latest(camper, Stream.ENERGY)
        s_ts, s_fields = (status.ts_ms, status.fields) if status is not None else (None, {})
        live = broadcaster.latest(camper, Stream.STATUS.value)
        if live is not None and (s_ts is None or live.ts_ms > s_ts):
            s_ts, s_fields = live.ts_ms, live.data["fields"]
        seen = max((t for t in (s_ts, energy.ts_ms if energy else None) if t is not None), default=None)
        out.append(
            CamperSummary(
                camper=camper,
                state=s_fields.get("state", "unknown"),
                mode=s_fields.get("mode"),
                in_service=s_fields.get("in_service"),
                last_seen=Moment(**when(seen)) if seen is not None else None,
                status_time=Moment(**when(s_ts)) if s_ts is not None else None,
            ).model_dump()
        )
    return _json(request, {"campers": out}, cache_control(settings), etag=True)


@router.get(
    "/campers/{camper}/status/stream", summary="The agent's status now and every update (server-sent events)",
    responses={k: _ERRORS[k] for k in (404, 422, 429)}, response_class=EventSourceResponse,
)
async def status_stream(
    camper: CamperIdDep,
    store: StoreDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id (browsers send it on reconnect)")] = None,
) -> EventSourceResponse:
    """Events ``status`` whose data is a sample (``time``, ``local_time``, ``seq``, ``fields``).
    The current status comes at once; with ``Last-Event-ID`` only what came after it
    (or the current status, when too much was missed). A client that falls behind is
    disconnected and should reconnect with its ``Last-Event-ID``."""
    snapshot_id = broadcaster.last_id()
    sub = broadcaster.subscribe(camper, {Stream.STATUS.value}, last_id=last_event_id)
    try:
        snapshot = None
        if last_event_id is None or not sub.replay_complete:
            stored = await run_in_threadpool(store.latest, camper, Stream.STATUS)
            live = broadcaster.latest(camper, Stream.STATUS.value)
            if live is not None and (stored is None or live.ts_ms >= stored.ts_ms):
                snapshot = live.data
            elif stored is not None:
                snapshot = sample_view(camper, Stream.STATUS.value, stored.ts_ms, stored.fields)
            elif camper not in await run_in_threadpool(store.campers):
                raise HTTPException(404, detail=f"unknown camper {camper!r}")
    except BaseException:
        sub.close()
        raise

    async def events() -> Any:
        metrics.sse_clients.inc()
        try:
            if snapshot is not None:
                yield ServerSentEvent(data=json.dumps(snapshot, ensure_ascii=False), event=Stream.STATUS.value, id=snapshot_id)
            async for msg in sub:
                yield ServerSentEvent(data=json.dumps(msg.data, ensure_ascii=False), event=msg.stream, id=msg.id)
        finally:
            sub.close()
            metrics.sse_clients.dec()

    return EventSourceResponse(events(), ping=settings.sse_ping_s, send_timeout=settings.sse_send_timeout_s)


# -- location and schedule (issue 5) --------------------------------------------------------------
_LOCATION_DOC = """The view is privacy-filtered (ARCHITECTURE.md §10): never the camper's own coordinates.
``state`` is ``in_service_at_stop`` (the stop's position, services, until when),
``on_the_way`` (to which stop, ``eta_local`` ± ``eta_uncertainty_min``), or
``not_in_service`` (the next stop and when); ``in_service`` for a camper without a
schedule (no place shown). Instants come as ``*_utc`` with ``*_local_time``
(Europe/Rome) beside them; ``HH:MM`` fields are local."""


@router.get(
    "/campers/{camper}/location", summary="Where the camper is, as the public may know it",
    responses={k: _ERRORS[k] for k in (404, 422, 429)}, description=_LOCATION_DOC,
)
async def location(
    request: Request, camper: CamperIdDep, store: StoreDep, schedules: SchedulesDep, broadcaster: BroadcasterDep,
    clock: ClockDep, settings: SettingsDep, cfg: ScheduleSettingsDep,
) -> Response:
    view = await LocationHub.of(broadcaster).view(
        camper, store=store, schedules=schedules, clock=clock, settings=cfg, fresh_s=settings.location_fresh_s,
    )
    if view is None:
        raise HTTPException(404, detail=f"unknown camper {camper!r} (no schedule, nothing stored)")
    return _json(request, view, f"public, max-age={settings.location_cache_s}")


@router.get(
    "/campers/{camper}/location/stream", summary="The public location now and whenever it changes (server-sent events)",
    responses={k: _ERRORS[k] for k in (404, 422, 429)}, response_class=EventSourceResponse,
)
async def location_stream(
    camper: CamperIdDep,
    store: StoreDep,
    schedules: SchedulesDep,
    broadcaster: BroadcasterDep,
    clock: ClockDep,
    settings: SettingsDep,
    cfg: ScheduleSettingsDep,
    metrics: MetricsDep,
    last_event_id: Annotated[str | None, Header(description="The id of the last view received (browsers send it on reconnect)")] = None,
) -> EventSourceResponse:
    """Events ``location`` whose data is the view of ``/location``. The current view comes at
    once (with ``Last-Event-ID``: only when it differs from the one that id names); then the
    view is recomputed on every live status or position and at least every
    ``CAMPERHUB_API_LOCATION_REFRESH_S`` (30 s: ETAs, windows that start or end), and sent
    when it changed. The privacy filter applies to every event. The view is computed once
    per camper for all its clients (api/location.py, LocationFeed); a client that falls
    far behind skips to the newest view."""
    feed = await LocationHub.of(broadcaster).join(
        camper, store=store, schedules=schedules, clock=clock, refresh_s=settings.location_refresh_s, settings=cfg,
    )
    if feed is None:
        raise HTTPException(404, detail=f"unknown camper {camper!r} (no schedule, nothing stored)")
    seen = last_event_id.rpartition(":")[2].strip() if last_event_id else None

    async def events() -> Any:
        nonlocal seen
        metrics.sse_clients.inc()
        try:
            view = feed.current()
            while view is not None:  # None: the feed closed (shutdown, or it failed); the client reconnects
                if view.sig != seen:
                    seen = view.sig
                    yield view.event  # encoded once for every client of the camper
                await view.changed.wait()
                view = feed.after(view)
        finally:
            feed.leave()
            metrics.sse_clients.dec()

    return EventSourceResponse(events(), ping=settings.sse_ping_s, send_timeout=settings.sse_send_timeout_s)


@router.get(
    "/campers/{camper}/schedule", summary="Stops, the visits of the next days and the exceptions",
    responses={k: _ERRORS[k] for k in (404, 422, 429)},
)
def schedule(
    request: Request, camper: CamperIdDep, schedules: SchedulesDep, clock: ClockDep, settings: SettingsDep,
    days: Annotated[int, Query(ge=1, le=60, description="How many local days of visits, today included")] = 14,
) -> Response:
    """Public: the stops (their public positions), every visit of the next ``days`` local days
    (Europe/Rome dates; start and end in UTC and local time; services), and the exceptions
    from today on (holidays, cancellations, extra visits)."""
    found = schedules.get(camper)
    if found is None:
        raise HTTPException(404, detail=f"camper {camper!r} has no schedule")
    return _json(request, schedule_view(found, clock(), days), cache_control(settings), etag=True)
