"""Energy endpoints (public; the kiosk page, workshop leaders, outside tools): energy now,
energy summary per Europe/Rome day, energy series.

Routes stay thin: parameters are validated here (422 names the problem), reading
is the store's job, the arithmetic is :mod:`camperhub.workshops.analysis`'s.
Every route is rate limited per client address; GETs carry ``Cache-Control``.

Why ``/energy/series`` chooses its own interval: a phone or a kiosk asking for a
year must not receive millions of points. Without ``every`` a window up to
:data:`RAW_WINDOW` answers the raw readings; a longer one answers means over the
smallest interval of :data:`AUTO_STEPS` that keeps it within :data:`MAX_POINTS`
(a day: 1 minute, 1,440 points; a year: 2 hours, 4,380 points), read from the
per-minute rollups so that a year is fast. An explicit ``every`` that would make
more than MAX_POINTS intervals is refused (422 names the limit).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from camperhub.api.deps import BroadcasterDep, MetricsDep
from camperhub.api.deps import CamperIdDep, KnownCamperDep, PublicCache, RateLimited, SettingsDep, StoreDep, cache_control
from camperhub.api.pages.workshop import power_flow
from camperhub.api.views import sample_view
from camperhub.api.routers.tenants import _ERRORS, _json
from camperhub.api.timefmt import LOCAL_TZ, iso_local, iso_utc, parse_instant
from camperhub.contract import SAMPLE_MODELS, STORAGE_KINDS, Stream, field_specs
from camperhub.store import base as store_base
from camperhub.store.base import StoreRejected

router = APIRouter(prefix="/api/v1", tags=["workshops"], dependencies=[RateLimited])

#: Longest window one series or summary request may cover.
MAX_WINDOW = timedelta(days=400)
#: The window of a series request that gives neither start nor end.
DEFAULT_WINDOW = timedelta(hours=24)
#: Days of a summary request that gives neither start nor end (today included).
DEFAULT_SUMMARY_DAYS = 7
DEFAULT_FIELDS = "pv_power_w,load_power_w,battery_soc_pct"
#: Most intervals a series answers (a chart has a few thousand pixels at most).
MAX_POINTS = 5_000
#: Longest window answered with raw readings when ``every`` is absent (1 Hz in live mode: 3,600).
RAW_WINDOW = timedelta(hours=1)
#: Intervals chosen when ``every`` is absent on a longer window: the smallest that fits MAX_POINTS.
AUTO_STEPS = tuple(
    timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
)
_ENERGY_KINDS = STORAGE_KINDS[Stream.ENERGY]
#: Energy fields a client may ask for (the contract's, without the bookkeeping ones).
ENERGY_FIELDS = [n for n in SAMPLE_MODELS[Stream.ENERGY].model_fields if n not in ("seq", "ts", "readings_n")]
_UNITS = {n: s.unit for n, s in field_specs(Stream.ENERGY).items()}
#: Aggregates that have no meaning for a field kind (as the stores refuse them).
_UNDEFINED = {("text", a) for a in ("mean", "min", "max", "sum")} | {("bool", "mean"), ("bool", "sum")}
_EVERY_RE = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d)?$")
_EVERY_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: Columns of a summary row, with units (JSON ``units``, CSV header order).
SUMMARY_UNITS: dict[str, str | None] = {
    "coverage_pct": "%",
    "pv_wh": "Wh",
    "load_wh": "Wh",
    "battery_charge_wh": "Wh",
    "battery_discharge_wh": "Wh",
    "shore_wh": "Wh",
    "self_sufficiency_pct": "%",
    "self_consumption_pct": "%",
    "peak_pv_w": "W",
    "peak_load_w": "W",
    "sunny_hours": "h",
    "co2_avoided_kg": "kg",
    "battery_soc_start_pct": "%",
    "battery_soc_end_pct": "%",
    "battery_soc_min_pct": "%",
    "battery_soc_max_pct": "%",
}


# -- models ------------------------------------------------------------------------------
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
        default=None,
        description=(
            "Interval of the aggregate: whole seconds (`30`, `30s`), minutes (`5m`), hours (`1h`), days (`1d`); "
            f"at most {MAX_POINTS} intervals. Absent: raw readings for windows up to 1 hour, else the smallest of "
            "1m, 2m, 5m, 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h, 1d that fits"
        ),
    )
    aggregate: Literal["mean", "min", "max", "last", "first", "sum", "count"] = Field(default="mean", description="Per interval (with every)")


class SummaryQuery(BaseModel):
    """Query of ``/energy/summary``; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")

    start: str | None = Field(default=None, description="First Europe/Rome day, YYYY-MM-DD; default 6 days before end")
    end: str | None = Field(default=None, description="Last Europe/Rome day, YYYY-MM-DD, included; default today")


# -- helpers -------------------------------------------------------------------------------
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


def auto_every(start: datetime, end: datetime) -> timedelta | None:
    """The interval of a series request without ``every``: None (raw) up to RAW_WINDOW, else
    the smallest of AUTO_STEPS that keeps the answer within MAX_POINTS intervals."""
    if end - start <= RAW_WINDOW:
        return None
    return next((s for s in AUTO_STEPS if math.ceil((end - start) / s) <= MAX_POINTS), AUTO_STEPS[-1])


def _time_strings(index: pd.DatetimeIndex) -> list[str]:
    ms = index.as_unit("ms").asi8
    unit = "s" if not (ms % 1000).any() else "ms"
    return [s + "Z" for s in np.datetime_as_string(ms.astype("datetime64[ms]"), unit=unit).tolist()]


def _column(series: pd.Series) -> list[Any]:
    return series.astype(object).where(series.notna(), None).tolist()


def _parse_day(text: str, name: str) -> date:
    text = text.strip()
    if not _DATE_RE.fullmatch(text):
        raise _unprocessable(f"{name}: {text!r} is not a Europe/Rome day such as 2026-05-04 (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise _unprocessable(f"{name}: {text!r} is not a date ({exc})") from None


def _summary_days(q: SummaryQuery, today: date) -> tuple[date, date]:
    last = _parse_day(q.end, "end") if q.end is not None else today
    first = _parse_day(q.start, "start") if q.start is not None else last - timedelta(days=DEFAULT_SUMMARY_DAYS - 1)
    if last < first:
        raise _unprocessable(f"start ({first.isoformat()}) must not be after end ({last.isoformat()}); end is the last day, included")
    days = (last - first).days + 1
    if days > MAX_WINDOW.days:
        raise _unprocessable(f"{days} days is longer than {MAX_WINDOW.days} days: ask for a shorter range")
    return first, last


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _totals_view(t: Any) -> dict[str, Any]:
    """One summary row (an EnergyTotals) as JSON: its window, the numbers rounded, equivalents by key."""
    row: dict[str, Any] = {
        "day": t.day.isoformat() if t.day is not None else None,
        "start": iso_utc(t.start),
        "end": iso_utc(t.end),
        "start_local": iso_local(t.start),
        "hours": round((t.end - t.start).total_seconds() / 3600, 3),
        "low_coverage": t.low_coverage,
    }
    row.update({k: _num(getattr(t, k)) for k in SUMMARY_UNITS})
    row["equivalents"] = {e.key: round(e.count, 2) for e in t.equivalents} or None
    return row


# -- routes --------------------------------------------------------------------------------
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
    "/campers/{camper}/energy/summary", summary="Energy per Europe/Rome day and over the range (JSON, or CSV with Accept: text/csv)",
    responses={**{k: _ERRORS[k] for k in (404, 422, 429)}, 200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def energy_summary(
    request: Request, camper: KnownCamperDep, q: Annotated[SummaryQuery, Query()], store: StoreDep, settings: SettingsDep
) -> Response:
    """One row per Europe/Rome day from ``start`` to ``end`` (both included; DST days
    last 23 or 25 hours) and a ``totals`` row for the whole range: PV and load energy,
    battery charge and discharge, energy from shore power, self-sufficiency (share of
    the load not drawn from shore power), self-consumption (share of the PV energy
    used), peaks, sunny hours, CO2 avoided (Italian grid factor, ``co2``) and everyday
    equivalents of the PV energy (``equivalents``: their assumptions). Values are
    computed over the minutes that have readings: ``coverage_pct`` says how many;
    ``null`` means no data (a gap, never a zero), and ``low_coverage`` marks rows
    under ``low_coverage_below_pct``. At most 400 days. The method is documented in
    camperhub.workshops.analysis."""
    from camperhub.workshops import analysis, equivalents  # pandas work: imported on first use

    first, last = _summary_days(q, datetime.now(LOCAL_TZ).date())
    days, total = await run_in_threadpool(analysis.period_totals, store, camper, first, last)
    rows = [_totals_view(d) for d in days]
    totals = _totals_view(total)
    if "text/csv" in request.headers.get("accept", ""):
        columns = ["day", "start", "end", "hours", *SUMMARY_UNITS]
        frame = pd.DataFrame([{**r, "day": r["day"] or "total"} for r in [*rows, totals]], columns=columns)
        buf = io.StringIO()
        frame.to_csv(buf, index=False, lineterminator="\n")
        return Response(
            buf.getvalue(), media_type="text/csv; charset=utf-8",
            headers={"Cache-Control": cache_control(settings), "Content-Disposition": f'inline; filename="{camper}-energy-summary.csv"'},
        )
    body = {
        "camper": camper,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "timezone": "Europe/Rome",
        "units": SUMMARY_UNITS,
        "low_coverage_below_pct": analysis.LOW_COVERAGE_PCT,
        "message": None if total.coverage_pct > 0 else f"no energy readings of {camper} between {first.isoformat()} and {last.isoformat()}",
        "co2": {"kg_per_kwh": equivalents.ITALY_GRID_CO2_KG_PER_KWH, "year": equivalents.ITALY_GRID_CO2_YEAR, "source": equivalents.ITALY_GRID_CO2_SOURCE},
        "equivalents": {key: {"wh_each": each, "assumption": words} for key, each, words in equivalents.ASSUMPTIONS},
        "days": rows,
        "totals": totals,
    }
    return _json(request, body, cache_control(settings))


@router.get(
    "/campers/{camper}/energy/series", summary="Energy fields over a window (JSON, or CSV with Accept: text/csv)",
    responses={**{k: _ERRORS[k] for k in (404, 422, 429)}, 200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def energy_series(
    request: Request, camper: KnownCamperDep, q: Annotated[SeriesQuery, Query()], store: StoreDep, settings: SettingsDep
) -> Response:
    """Raw readings, or with ``every`` one row per interval (aligned to the epoch, labelled by
    its start) holding ``aggregate`` of each field; intervals without data are absent.
    Without ``every``, windows longer than an hour get the smallest interval of 1m, 2m,
    5m, 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h, 1d that keeps them within 5,000 points
    (``every_s`` in the answer says which). Times are UTC. JSON is columnar: ``time``
    and one list per field, ``null`` where a field has no value. Windows up to 400 days."""
    names = _parse_fields(q.fields)
    start, end = _window(q, datetime.now(UTC))
    every = _parse_every(q.every) if q.every is not None else auto_every(start, end)
    max_rows = store_base.MAX_ROWS
    if every is not None:
        points = math.ceil((end - start) / every)
        if points > MAX_POINTS:
            raise _unprocessable(f"every={q.every} over this window makes {points} intervals, more than {MAX_POINTS}: ask for a larger every or a shorter window")
        bad = [n for n in names if (_ENERGY_KINDS[n], q.aggregate) in _UNDEFINED]
        if bad:
            hint = "use first, last or count for them" if q.every is not None else "ask for them with every= and aggregate=first, last or count"
            raise _unprocessable(f"aggregate={q.aggregate} is undefined for {', '.join(bad)}: {hint}")
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


# -- live energy (the workshop kiosk) ------------------------------------------------------
#: Seconds between looks at the store for a newer reading than the last one sent: the
#: stream moves even when no broker feeds the Broadcaster (an API without CAMPERHUB_MQTT_URL).
ENERGY_STREAM_STORE_POLL_S = 15.0


def _energy_event(data: dict[str, Any], event_id: str) -> ServerSentEvent:
    """One ``energy`` event: the sample as the API shows it, plus its power ``flow`` (the kiosk's arrows)."""
    body = {**data, "flow": power_flow(data.get("fields", {}))}
    return ServerSentEvent(data=json.dumps(body, ensure_ascii=False), event=Stream.ENERGY.value, id=event_id)


def _current_energy(store: Any, broadcaster: Any, camper: str) -> tuple[int, dict[str, Any]] | None:
    """The newest energy reading (time in ms, sample view), live or stored, whichever is newer."""
    stored = store.latest(camper, Stream.ENERGY)
    live = broadcaster.latest(camper, Stream.ENERGY.value)
    if live is not None and (stored is None or live.ts_ms >= stored.ts_ms):
        return live.ts_ms, live.data
    if stored is not None:
        return stored.ts_ms, sample_view(camper, Stream.ENERGY.value, stored.ts_ms, stored.fields)
    return None


@router.get(
    "/campers/{camper}/energy/stream", summary="The latest energy reading now and every new one (server-sent events)",
    responses={k: _ERRORS[k] for k in (404, 422, 429)}, response_class=EventSourceResponse,
)
async def energy_stream(
    camper: CamperIdDep,
    store: StoreDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id (browsers send it on reconnect)")] = None,
) -> EventSourceResponse:
    """Events ``energy`` whose data is a sample (``time``, ``local_time``, ``seq``, ``fields``)
    plus ``flow``: the watts of the kiosk's arrows (``pv_w``, ``load_w``, ``battery_w``
    positive = charging, ``shore_w`` estimated from the balance while shore power is on,
    ``shore_on``, ``soc_pct``; null = not known). The current reading comes at once; with
    ``Last-Event-ID`` only what came after it (or the current reading, when too much was
    missed). Live readings come from the broker as they arrive; the store is also looked
    at every ENERGY_STREAM_STORE_POLL_S seconds. Time only moves forward: a reading older
    than the last one sent on the connection (a late backlog replay) is not sent (after a
    resume, from the first replayed reading on). A client that falls
    behind is disconnected and should reconnect with its ``Last-Event-ID``."""
    snapshot_id = broadcaster.last_id()
    sub = broadcaster.subscribe(camper, {Stream.ENERGY.value}, last_id=last_event_id)
    try:
        current = await run_in_threadpool(_current_energy, store, broadcaster, camper)
        if current is None and broadcaster.latest(camper, Stream.STATUS.value) is None and camper not in await run_in_threadpool(store.campers):
            raise HTTPException(404, detail=f"unknown camper {camper!r}")
    except BaseException:
        sub.close()
        raise
    resumed = last_event_id is not None and sub.replay_complete
    poll_s = ENERGY_STREAM_STORE_POLL_S

    async def events() -> Any:
        metrics.sse_clients.inc()
        sent_ms = -1  # newest reading sent from the Broadcaster or the store
        polled_ms = -1  # newest reading the store poll knows the client has
        getter: asyncio.Future[Any] | None = None
        try:
            if current is not None:
                polled_ms = current[0]
                if not resumed:  # resumed: the client had it, the replay brings what is newer
                    sent_ms = current[0]
                    yield _energy_event(current[1], snapshot_id)
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait({getter}, timeout=poll_s)
                if getter in done:
                    msg, getter = getter.result(), None
                    if msg is None:  # dropped or shut down: the client reconnects
                        return
                    if msg.ts_ms > sent_ms:
                        sent_ms = msg.ts_ms
                        yield _energy_event(msg.data, msg.id)
                    continue
                stored = await run_in_threadpool(store.latest, camper, Stream.ENERGY)
                if stored is not None and stored.ts_ms > max(sent_ms, polled_ms):
                    sent_ms = polled_ms = stored.ts_ms
                    yield _energy_event(sample_view(camper, Stream.ENERGY.value, stored.ts_ms, stored.fields), broadcaster.last_id())
        finally:
            if getter is not None:
                getter.cancel()
            sub.close()
            metrics.sse_clients.dec()

    return EventSourceResponse(events(), ping=settings.sse_ping_s, send_timeout=settings.sse_send_timeout_s)
