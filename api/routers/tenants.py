"""Public endpoints (tenants, phones, the public page): campers, location, schedule, energy now, energy series, live streams.

Routes stay thin: parameters are validated here (422 names the problem),
reading is the store's job, shaping is :mod:`camperhub.api.views`'s. Every
route is rate limited per client address; GETs carry ``Cache-Control``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from camperhub.api.deps import (
    BroadcasterDep,
    CamperIdDep,
    ClockDep,
    KnownCamperDep,
    MetricsDep,
    PublicCache,
    RateLimited,
    SchedulesDep,
    SettingsDep,
    StoreDep,
    cache_control,
)
from camperhub.api.location import LocationHub, LocationTracker, schedule_view
from camperhub.api.timefmt import iso_local, iso_utc, parse_instant, when
from camperhub.api.views import sample_view
from camperhub.contract import STORAGE_KINDS, SAMPLE_MODELS, Stream, field_specs
from camperhub.store import base as store_base
from camperhub.store.base import StoreRejected

router = APIRouter(prefix="/api/v1", tags=["tenants"], dependencies=[RateLimited])

#: Longest window one series request may cover.
MAX_WINDOW = timedelta(days=400)
#: The window of a series request that gives neither start nor end.
DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_FIELDS = "pv_power_w,load_power_w,battery_soc_pct"
_ENERGY_KINDS = STORAGE_KINDS[Stream.ENERGY]
#: Energy fields a client may ask for (the contract's, without the bookkeeping ones).
ENERGY_FIELDS = [n for n in SAMPLE_MODELS[Stream.ENERGY].model_fields if n not in ("seq", "ts", "readings_n")]
_UNITS = {n: s.unit for n, s in field_specs(Stream.ENERGY).items()}
#: Aggregates that have no meaning for a field kind (as the stores refuse them).
_UNDEFINED = {("text", a) for a in ("mean", "min", "max", "sum")} | {("bool", "mean"), ("bool", "sum")}
_EVERY_RE = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d)?$")
_EVERY_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

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


class FieldValue(BaseModel):
    value: float | int | bool | str
    unit: str | None = Field(description="None for a state or a flag")


class EnergyNow(BaseModel):
    camper: str
    time: str = Field(description="Reading time, ISO 8601 UTC")
    local_time: str = Field(description="Reading time in Europe/Rome")
    age_s: float = Field(description="Seconds between the reading and this answer")
    seq: int | None = None
    readings_n: int | None = Field(default=None, description="Readings this sample is the mean of (absent: one)")
    fields: dict[str, FieldValue]


class SeriesQuery(BaseModel):
    """Query of ``/energy/series``; unknown parameters are refused (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid")

    fields: str = Field(default=DEFAULT_FIELDS, description=f"Comma-separated energy fields: {', '.join(ENERGY_FIELDS)}")
    start: str | None = Field(default=None, description="ISO 8601 with offset (Z, +02:00) or a Europe/Rome date; default end - 24 h")
    end: str | None = Field(default=None, description="Same forms as start, excluded; default now")
    every: str | None = Field(
        default=None, description="Interval of the aggregate: whole seconds (`30`, `30s`), minutes (`5m`), hours (`1h`), days (`1d`); absent = raw samples"
    )
    aggregate: Literal["mean", "min", "max", "last", "first", "sum", "count"] = Field(default="mean", description="Per interval (with every)")


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


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(422, detail=detail)


def _parse_every(text: str) -> timedelta:
    m = _EVERY_RE.fullmatch(text.strip())
    if not m:
        raise _unprocessable(f"every: {text!r} is not a whole number of seconds, minutes, hours or days (30s, 5m, 1h, 1d)")
    return timedelta(seconds=int(m.group(1)) * _EVERY_UNIT[m.group(2) or "s"])


def _parse_fields(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise _unprocessable("fields: give at least one energy field")
    unknown = [n for n in names if n not in ENERGY_FIELDS]
    if unknown:
        raise _unprocessable(f"fields: {', '.join(map(repr, unknown))} not energy fields; known: {', '.join(ENERGY_FIELDS)}")
    return list(dict.fromkeys(names))


def _window(q: SeriesQuery, now: datetime) -> tuple[datetime, datetime]:
    try:
        end = parse_instant(q.end, "end") if q.end is not None else now
        start = parse_instant(q.start, "start") if q.start is not None else end - DEFAULT_WINDOW
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None
    if start >= end:
        raise _unprocessable(f"start ({iso_utc(start)}) must be before end ({iso_utc(end)})")
    if end - start > MAX_WINDOW:
        raise _unprocessable(f"the window of {(end - start).days} days is longer than {MAX_WINDOW.days} days: ask for a shorter one")
    return start, end


def _time_strings(index: pd.DatetimeIndex) -> list[str]:
    ms = index.as_unit("ms").asi8
    unit = "s" if not (ms % 1000).any() else "ms"
    return [s + "Z" for s in np.datetime_as_string(ms.astype("datetime64[ms]"), unit=unit).tolist()]


def _column(series: pd.Series) -> list[Any]:
    return series.astype(object).where(series.notna(), None).tolist()


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
    "/campers/{camper}/energy/now", summary="The latest energy reading", response_model=EnergyNow,
    responses={k: _ERRORS[k] for k in (404, 422, 429)}, dependencies=[PublicCache],
)
def energy_now(camper: CamperIdDep, store: StoreDep) -> EnergyNow:
    """Every field the camper's devices reported in their newest reading, with units
    (absent fields were not reported: never a fake zero); ``age_s`` tells how old it is."""
    sample = store.latest(camper, Stream.ENERGY)
    if sample is None:
        if camper in store.campers():
            raise HTTPException(404, detail=f"camper {camper!r} has no energy readings yet")
        raise HTTPException(404, detail=f"unknown camper {camper!r}")
    f = sample.fields
    values = {
        name: FieldValue(value=f[name], unit=_UNITS.get(name))
        for name in ENERGY_FIELDS
        if f.get(name) is not None
    }
    dt = datetime.fromtimestamp(sample.ts_ms / 1000, UTC)
    return EnergyNow(
        camper=camper, time=iso_utc(dt), local_time=iso_local(dt), age_s=round(max(0.0, (datetime.now(UTC) - dt).total_seconds()), 3),
        seq=f.get("seq"), readings_n=f.get("readings_n"), fields=values,
    )


@router.get(
    "/campers/{camper}/energy/series", summary="Energy fields over a window (JSON, or CSV with Accept: text/csv)",
    responses={**{k: _ERRORS[k] for k in (404, 422, 429)}, 200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def energy_series(
    request: Request, camper: KnownCamperDep, q: Annotated[SeriesQuery, Query()], store: StoreDep, settings: SettingsDep
) -> Response:
    """Raw readings, or with ``every`` one row per interval (aligned to the epoch, labelled by
    its start) holding ``aggregate`` of each field; intervals without data are absent.
    Times are UTC. JSON is columnar: ``time`` and one list per field, ``null`` where a
    field has no value. At most MAX_ROWS points; windows up to 400 days."""
    names = _parse_fields(q.fields)
    start, end = _window(q, datetime.now(UTC))
    every = _parse_every(q.every) if q.every is not None else None
    max_rows = store_base.MAX_ROWS
    if every is not None:
        points = math.ceil((end - start) / every)
        if points > max_rows:
            raise _unprocessable(f"every={q.every} over this window makes {points} intervals, more than {max_rows}: ask for a larger every or a shorter window")
        bad = [n for n in names if (_ENERGY_KINDS[n], q.aggregate) in _UNDEFINED]
        if bad:
            raise _unprocessable(f"aggregate={q.aggregate} is undefined for {', '.join(bad)}: use first, last or count for them")
    try:
        frame = store.series(camper, Stream.ENERGY, names, start, end, every=every, aggregate=q.aggregate if every else "mean")
    except StoreRejected as exc:
        raise _unprocessable(f"{exc} (raw reads return at most {max_rows} samples: add every=, e.g. every=1m)") from None
    times = _time_strings(frame.index)
    if "text/csv" in request.headers.get("accept", ""):
        out = frame.copy()
        out.index = pd.Index(times, name="time")
        buf = io.StringIO()
        out.to_csv(buf, lineterminator="\n")
        return Response(
            buf.getvalue(), media_type="text/csv; charset=utf-8",
            headers={"Cache-Control": cache_control(settings), "Content-Disposition": f'inline; filename="{camper}-energy.csv"'},
        )
    body = {
        "camper": camper,
        "start": iso_utc(start),
        "end": iso_utc(end),
        "every_s": int(every.total_seconds()) if every else None,
        "aggregate": q.aggregate if every else None,
        "units": {n: _UNITS.get(n) for n in names},
        "time": times,
        "values": {n: _column(frame[n]) for n in names},
    }
    return _json(request, body, cache_control(settings))


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


async def _tracker(camper: str, store: StoreDep, schedules: SchedulesDep, broadcaster: BroadcasterDep, clock: ClockDep) -> LocationTracker:
    tracker = await run_in_threadpool(LocationTracker.load, camper, store, schedules, broadcaster, clock())
    if tracker is None:
        raise HTTPException(404, detail=f"unknown camper {camper!r} (no schedule, nothing stored)")
    return tracker


@router.get(
    "/campers/{camper}/location", summary="Where the camper is, as the public may know it",
    responses={k: _ERRORS[k] for k in (404, 422, 429)}, description=_LOCATION_DOC,
)
async def location(
    request: Request, camper: CamperIdDep, store: StoreDep, schedules: SchedulesDep, broadcaster: BroadcasterDep,
    clock: ClockDep, settings: SettingsDep,
) -> Response:
    tracker = await _tracker(camper, store, schedules, broadcaster, clock)
    return _json(request, tracker.view(clock()), f"public, max-age={settings.location_cache_s}")


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
        camper, store=store, schedules=schedules, clock=clock, refresh_s=settings.location_refresh_s
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
