"""Fleet staff API (ARCHITECTURE.md §6, §10; issue 7 parts 3-4): every route needs a staff bearer token.

* ``GET /api/v1/fleet``: one line per camper: online state (latest status), last data,
  mode, queue, battery SoC/SoH (:func:`camperhub.fleet.battery.battery_summary`), open
  alerts, today's data completeness (:mod:`camperhub.completeness`).
* ``GET /api/v1/fleet/{camper}/battery``: the full battery report.
* ``GET /api/v1/fleet/alerts``: open alerts, or the history (``CAMPERHUB_ALERTS_PATH``).
* ``GET /api/v1/fleet/{camper}/positions``: position history, a bounded window, every
  read written to the audit log first (:mod:`camperhub.api.audit`, ``CAMPERHUB_AUDIT_PATH``).
* ``GET /api/v1/fleet/{camper}/series``: battery voltage, current, temperature for the
  page's charts: ``/energy/series`` itself (same parameters, same intervals), privately cached.
* ``GET /api/v1/fleet/audit`` (admin): the audit log.
* ``POST /api/v1/campers/{camper}/mode``: live mode for a while, published on ``cmd/mode`` (api/commands.py).

Why the overview caches: 50 campers × (3 ``latest`` + a battery summary + a day's
seq summary) is a few hundred store queries, about a second on InfluxDB over HTTP.
A camper's line is kept ``fleet_cache_s`` (default 10 s) and its completeness six
times that (a day's percentage hardly moves in a minute); the live status from the
broker (when the API listens) and the open alerts (one SQLite read) are fresh on
every request, so "online" and alert counts do not lag.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from camperhub.api.audit import AuditEntry, AuditError, AuditLog
from camperhub.api.commands import CommandNotSent, publish_command
from camperhub.api.deps import AdminDep, BroadcasterDep, KnownCamperDep, SettingsDep, StaffDep, StoreDep, client_address
from camperhub.api.fleet_cache import FleetCache
from camperhub.api.routers import workshops
from camperhub.api.timefmt import LOCAL_TZ, iso_utc, parse_instant, when
from camperhub.contract import CAMPER_ID_PATTERN, ModeCommand, Stream, command_topic, is_valid_camper_id
from camperhub.fleet.alerts_rules import Alert
from camperhub.settings import MqttClientSettings
from camperhub.store.base import Store, StoreRejected

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["staff"])

#: A status older than this is not "online", whatever it said (the agent reports every 5 min).
STATUS_STALE = timedelta(minutes=15)
#: Longest window of one position-history read (staff need a trip, not a year of movements).
POSITIONS_MAX_WINDOW = timedelta(days=7)
POSITIONS_DEFAULT_WINDOW = timedelta(hours=24)
POSITION_FIELDS = ["lat", "lon", "alt_m", "speed_kmh", "course_deg", "hdop", "sats", "fix"]
BATTERY_DEFAULT_WINDOW = timedelta(days=30)
BATTERY_MAX_WINDOW = timedelta(days=400)
CHART_FIELDS = "battery_voltage_v,battery_current_a,battery_temp_c"
_NO_STORE = {"Cache-Control": "no-store"}

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or not a valid one (see WWW-Authenticate)"},
    403: {"description": "The token's role may not do this"},
    404: {"description": "Unknown camper"},
    422: {"description": "A parameter is invalid; `detail` names it"},
    503: {"description": "A service this needs is down or not configured; `detail` says which"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: _ERRORS[c] for c in codes}


# -- models ---------------------------------------------------------------------------------
class Moment(BaseModel):
    utc: str = Field(description="ISO 8601 UTC")
    local: str = Field(description="The same instant in Europe/Rome, ISO 8601 with its offset")


class BatteryLine(BaseModel):
    soc_pct: float | None = Field(description="Latest state of charge [%]")
    soc_time: str | None = Field(description="Time of the SoC reading, ISO 8601 UTC")
    soh_pct: float | None = Field(description="State of health [%]: the BMS's, else the last report's measurement")
    soh_source: Literal["bms", "estimate"] | None
    cycles: float | None = Field(description="Battery cycles: the BMS counter, else equivalent full cycles")
    days_since_full_reset: float | None = Field(description="Days since SoC last reached 99.5 % (null: not within the looked-back days)")
    full_reset_looked_back_days: float


class FleetCamper(BaseModel):
    camper: str
    state: Literal["online", "offline", "unknown"] = Field(description="What the latest status said")
    online: bool = Field(description=f"state is online and the status is at most {int(STATUS_STALE.total_seconds() // 60)} min old")
    status_time: Moment | None
    last_data: Moment | None = Field(description="Newest sample of any stream")
    last_data_age_s: float | None
    mode: str | None
    in_service: bool | None
    queue_depth: int | None = Field(description="Readings queued on the camper per its latest status")
    oldest_queued_s: float | None
    agent_version: str | None
    last_error: str | None
    battery: BatteryLine
    open_alerts: int = Field(description="Open alerts of the camper (null figures never hide an alert)")
    worst_alert: Literal["info", "warning", "critical"] | None
    completeness_today_pct: float | None = Field(description="Share of today's (Europe/Rome) readings that arrived [%]; null: none taken")


class FleetResponse(BaseModel):
    generated_at: str
    timezone: str
    alerts_available: bool = Field(description="False when the alerts file could not be opened (counts are then 0)")
    campers: list[FleetCamper]


class AlertsResponse(BaseModel):
    state: Literal["open", "all"]
    alerts: list[Alert]


class Series(BaseModel):
    camper: str
    start: str
    end: str
    time: list[str]
    values: dict[str, list[Any]] = Field(description="One list per field, aligned with time; null where a field has no value")


class AuditResponse(BaseModel):
    entries: list[dict[str, Any]]


class ModeRequest(BaseModel):
    """Body of ``POST .../mode`` (the contract's ``cmd/mode`` without ``issued_ts``: the API stamps it)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["normal", "live"]
    minutes: int | None = Field(default=None, ge=1, le=24 * 60, description="How long live mode lasts (needed for live)")

    @model_validator(mode="after")
    def _live_needs_minutes(self) -> "ModeRequest":
        if self.mode == "live" and self.minutes is None:
            raise ValueError("live mode needs minutes (1-1440): it falls back to normal by itself")
        return self


class ModeAccepted(BaseModel):
    camper: str
    topic: str
    command: dict[str, Any]
    issued_by: str


# -- state of the app -----------------------------------------------------------------------
_state_lock = threading.Lock()


def _lazy(request: Request, name: str, make: Any) -> Any:
    state = request.app.state
    if getattr(state, name, None) is None:
        with _state_lock:
            if getattr(state, name, None) is None:
                setattr(state, name, make())
    return getattr(state, name)


def _alerts(request: Request) -> Any:
    """The alerts repository (CAMPERHUB_ALERTS_PATH), opened on first use; 503 when it cannot be."""
    from camperhub.fleet.alerts import open_repository

    try:
        return _lazy(request, "alerts", open_repository)
    except (OSError, sqlite3.Error, ValidationError, ValueError) as exc:  # a bad path or setting: say so, do not crash
        log.error("cannot open the alerts file: %s", exc)
        raise HTTPException(503, detail=f"the alerts file cannot be opened: {exc}") from None


def _audit(request: Request) -> AuditLog:
    from camperhub.api.settings import AuthSettings

    try:
        return _lazy(request, "audit", lambda: AuditLog(AuthSettings().audit_path))
    except AuditError as exc:
        log.error("%s", exc)
        raise HTTPException(503, detail="the audit log cannot be written, so position history is not served") from None


def _fleet_cache(request: Request) -> FleetCache:
    return _lazy(request, "fleet_cache", FleetCache)


def _battery_cache(request: Request) -> Any:
    from camperhub.fleet.battery import SummaryCache

    return _lazy(request, "battery_cache", SummaryCache)


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


# -- the overview ---------------------------------------------------------------------------
def _completeness_today(store: Store, camper: str, now: datetime) -> float | None:
    from camperhub.completeness import completeness

    today = now.astimezone(LOCAL_TZ).date()
    report = completeness(store, camper, today, today, now=now)
    return report.days[0].arrived_pct if report.days else None


def _stored_line(
    store: Store, camper: str, clock: Callable[[], datetime], cache: FleetCache, battery_cache: Any, ttl_s: float,
) -> dict[str, Any]:
    """What the store says of one camper (kept ``ttl_s``, refreshed behind the answer: api/fleet_cache.py):
    latest samples, battery, completeness."""
    from camperhub.fleet.battery import battery_summary

    def compute() -> dict[str, Any]:  # also run later, in the background: "now" is when it runs
        now = clock()
        status = store.latest(camper, Stream.STATUS)
        newest = [s.ts_ms for s in (status, store.latest(camper, Stream.ENERGY), store.latest(camper, Stream.POSITION)) if s is not None]
        b = battery_summary(store, camper, now, cache=battery_cache)
        pct = cache.fetch("completeness", camper, ttl_s * 6, lambda: (_completeness_today(store, camper, now),))
        return {
            "status": (status.ts_ms, status.fields) if status is not None else None,
            "last_ms": max(newest, default=None),
            "battery": {
                "soc_pct": b.soc_pct, "soc_time": iso_utc(b.soc_at) if b.soc_at else None, "soh_pct": b.soh_pct,
                "soh_source": b.soh_source, "cycles": b.cycles, "days_since_full_reset": b.days_since_full_reset,
                "full_reset_looked_back_days": b.full_reset_looked_back_days,
            },
            "completeness": None if pct[0] is None else round(pct[0], 1),
        }

    return cache.fetch("line", camper, ttl_s, compute)


def _fleet_line(camper: str, stored: dict[str, Any], live: Any, alerts: list[Alert], now: datetime) -> dict[str, Any]:
    s_ts, fields = stored["status"] if stored["status"] is not None else (None, {})
    if live is not None and (s_ts is None or live.ts_ms > s_ts):
        s_ts, fields = live.ts_ms, live.data.get("fields", {})
    last_ms = max((t for t in (stored["last_ms"], s_ts) if t is not None), default=None)
    now_ms = now.timestamp() * 1000
    state = fields.get("state") if fields.get("state") in ("online", "offline") else "unknown"
    fresh = s_ts is not None and now_ms - s_ts <= STATUS_STALE.total_seconds() * 1000
    rank = {"info": 0, "warning": 1, "critical": 2}
    worst = max((a.severity for a in alerts), key=rank.__getitem__, default=None)
    return {
        "camper": camper, "state": state, "online": state == "online" and fresh,
        "status_time": when(s_ts) if s_ts is not None else None,
        "last_data": when(last_ms) if last_ms is not None else None,
        "last_data_age_s": round(max(0.0, (now_ms - last_ms) / 1000), 1) if last_ms is not None else None,
        "mode": fields.get("mode"), "in_service": fields.get("in_service"), "queue_depth": fields.get("queue_depth"),
        "oldest_queued_s": fields.get("oldest_queued_s"), "agent_version": fields.get("agent_version"), "last_error": fields.get("last_error"),
        "battery": stored["battery"], "open_alerts": len(alerts), "worst_alert": worst, "completeness_today_pct": stored["completeness"],
    }


@router.get("/fleet", summary="Every camper's health at a glance (staff)", response_model=FleetResponse, responses=_errors(401, 403))
def fleet(request: Request, token: StaffDep, store: StoreDep, broadcaster: BroadcasterDep, settings: SettingsDep) -> Response:
    """One line per camper that stored anything: online state and mode from its latest status
    (live from the broker when the API listens), when data last came, the queue on the camper,
    battery state of charge and health, open alerts, and the share of today's readings
    (Europe/Rome day) that arrived. Store figures are at most ``CAMPERHUB_API_FLEET_CACHE_S``
    old (default 10 s)."""
    now = _now(request)
    cache, battery_cache = _fleet_cache(request), _battery_cache(request)
    try:
        open_alerts = _alerts(request).open_alerts()
        alerts_ok = True
    except HTTPException:
        open_alerts, alerts_ok = [], False
    by_camper: dict[str, list[Alert]] = {}
    for a in open_alerts:
        by_camper.setdefault(a.camper, []).append(a)
    lines = []
    for camper in store.campers():
        stored = _stored_line(store, camper, lambda: _now(request), cache, battery_cache, settings.fleet_cache_s)
        live = broadcaster.latest(camper, Stream.STATUS.value)
        lines.append(_fleet_line(camper, stored, live, by_camper.get(camper, []), now))
    body = {"generated_at": iso_utc(now), "timezone": LOCAL_TZ.key, "alerts_available": alerts_ok, "campers": lines}
    return JSONResponse(body, headers=_NO_STORE)


# -- battery, alerts, series, positions -----------------------------------------------------
class WindowQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str | None = Field(default=None, description="ISO 8601 with offset, or a Europe/Rome date (its midnight); default end - the default window")
    end: str | None = Field(default=None, description="Same forms as start, excluded; default now")


def _window(q: WindowQuery, now: datetime, default: timedelta, longest: timedelta) -> tuple[datetime, datetime]:
    try:
        end = parse_instant(q.end, "end") if q.end is not None else now
        start = parse_instant(q.start, "start") if q.start is not None else end - default
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if start >= end:
        raise HTTPException(422, detail=f"start ({iso_utc(start)}) must be before end ({iso_utc(end)})")
    if end - start > longest:
        raise HTTPException(422, detail=f"the window is longer than {longest.days} days: ask for a shorter one")
    return start, end


@router.get("/fleet/alerts", summary="Open alerts, or every alert since a time (staff)", response_model=AlertsResponse,
            responses=_errors(401, 403, 422, 503))
def fleet_alerts(
    request: Request,
    token: StaffDep,
    camper: Annotated[str | None, Query(description="Only this camper's", max_length=64)] = None,
    state: Annotated[Literal["open", "all"], Query(description="open: open now; all: open at any time since `since`")] = "open",
    since: Annotated[str | None, Query(description="With state=all: ISO 8601 with offset or a Europe/Rome date", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="With state=all: at most this many, newest first")] = 500,
) -> Response:
    """Open alerts come most severe first; the history newest first. Each alert: kind,
    severity, when it opened (and closed), the last value its rule saw and a message."""
    if camper is not None and not is_valid_camper_id(camper):
        raise HTTPException(422, detail=f"camper: {camper!r} does not match {CAMPER_ID_PATTERN}")
    since_dt = None
    if since is not None:
        if state != "all":
            raise HTTPException(422, detail="since: only with state=all (open alerts are open now, whenever they opened)")
        try:
            since_dt = parse_instant(since, "since")
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
    repo = _alerts(request)
    alerts = repo.open_alerts(camper) if state == "open" else repo.history(camper, since_dt, limit)
    return JSONResponse({"state": state, "alerts": [a.model_dump(mode="json") for a in alerts]}, headers=_NO_STORE)


@router.get("/fleet/audit", summary="The audit log of position-history reads (admin)", response_model=AuditResponse,
            responses=_errors(401, 403, 422))
def fleet_audit(
    request: Request,
    token: AdminDep,
    camper: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    """Newest first: who read which camper's positions, over which window, when, from where."""
    if camper is not None and not is_valid_camper_id(camper):
        raise HTTPException(422, detail=f"camper: {camper!r} does not match {CAMPER_ID_PATTERN}")
    entries = _audit(request).entries(camper, limit=limit)
    return JSONResponse({"entries": [e.public() for e in entries]}, headers=_NO_STORE)


@router.get("/fleet/{camper}/battery", summary="The full battery report of a camper over a window (staff)",
            responses=_errors(401, 403, 404, 422))
def fleet_battery(request: Request, token: StaffDep, camper: KnownCamperDep, q: Annotated[WindowQuery, Query()], store: StoreDep) -> Response:
    """Cycles, depth-of-discharge histogram, capacity and state of health with its trend,
    internal resistance, time at high SoC / hot / cold, cell imbalance, SoC drift, days since
    a full charge: each figure with its unit, method and confidence, or ``value: null`` and
    the reason. Default window: the last 30 days; at most 400 days."""
    from camperhub.fleet.battery import battery_report

    start, end = _window(q, _now(request), BATTERY_DEFAULT_WINDOW, BATTERY_MAX_WINDOW)
    try:
        report = battery_report(store, camper, start, end, cache=_battery_cache(request))
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return JSONResponse(report.public(), headers=_NO_STORE)


class ChartQuery(workshops.SeriesQuery):
    fields: str = Field(default=CHART_FIELDS, description=f"Comma-separated energy fields; default {CHART_FIELDS}")


@router.get("/fleet/{camper}/series", summary="Battery voltage, current, temperature (or other energy fields) over a window (staff)",
            response_model=Series, responses=_errors(401, 403, 404, 422))
def fleet_series(
    request: Request, token: StaffDep, camper: KnownCamperDep, q: Annotated[ChartQuery, Query()], store: StoreDep, settings: SettingsDep,
) -> Response:
    """``/api/v1/campers/{camper}/energy/series`` with the battery's fields by default and a
    private cache: the same parameters, the same automatic interval (a day: 1 minute, a
    week: 5 minutes; gaps are absent, never zeros)."""
    response = workshops.energy_series(request, camper, q, store, settings)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@router.get("/fleet/{camper}/positions", summary="Position history over a bounded window (staff; every read is audited)",
            response_model=Series, responses=_errors(401, 403, 404, 422, 503))
def fleet_positions(request: Request, token: StaffDep, camper: KnownCamperDep, q: Annotated[WindowQuery, Query()], store: StoreDep) -> Response:
    """The raw positions (WGS84) of ``[start, end)``, default the last 24 hours, at most 7 days.
    Positions are kept for a bounded time (CAMPERHUB_POSITION_RETENTION_DAYS). Every call is
    written to the audit log (who, when, camper, window) before anything is read: when the
    log cannot be written, nothing is served (503)."""
    start, end = _window(q, _now(request), POSITIONS_DEFAULT_WINDOW, POSITIONS_MAX_WINDOW)
    entry = AuditEntry(datetime.now(UTC), token.name, token.role, "positions.read", camper, start, end, client_address(request))
    try:
        _audit(request).record(entry)
    except AuditError as exc:
        log.error("%s", exc)
        raise HTTPException(503, detail="the audit log cannot be written, so position history is not served") from None
    log.info("position history of %s read by %s (%s .. %s)", camper, token.name, iso_utc(start), iso_utc(end))
    try:
        frame = store.series(camper, Stream.POSITION, POSITION_FIELDS, start, end)
    except StoreRejected as exc:
        raise HTTPException(422, detail=f"{exc}: ask for a shorter window") from None
    body = {
        "camper": camper, "start": iso_utc(start), "end": iso_utc(end), "time": workshops._time_strings(frame.index),
        "values": {n: workshops._column(frame[n]) for n in POSITION_FIELDS},
    }
    return JSONResponse(body, headers=_NO_STORE)


# -- downlink: the mode command -------------------------------------------------------------
@router.post("/campers/{camper}/mode", summary="Switch the camper to live mode for a while, or back to normal (staff)",
             status_code=202, response_model=ModeAccepted, responses=_errors(401, 403, 404, 422, 503))
async def post_mode(
    request: Request, token: StaffDep, camper: KnownCamperDep, body: Annotated[ModeRequest, Body()], settings: SettingsDep,
) -> Response:
    """Publishes ``{"mode": "live", "minutes": 60, "issued_ts": ...}`` on
    ``camperhub/v1/{camper}/cmd/mode`` (QoS 1). 202: the broker has it; the camper applies
    it when it next connects (the minutes count from ``issued_ts``). 503 when the API has
    no broker configured (CAMPERHUB_MQTT_URL) or the broker does not take it."""
    mqtt_settings: MqttClientSettings | None = getattr(request.app.state, "mqtt", None)
    if mqtt_settings is None:
        raise HTTPException(503, detail="no broker configured for the API (CAMPERHUB_MQTT_URL): commands cannot be sent")
    command = ModeCommand(mode=body.mode, minutes=body.minutes, issued_ts=int(time.time() * 1000))
    topic = command_topic(camper, "mode")
    payload = json.dumps(command.model_dump(exclude_none=True), separators=(",", ":")).encode()
    try:
        await run_in_threadpool(publish_command, mqtt_settings, settings.mqtt_protocol, topic, payload)
    except CommandNotSent as exc:
        log.warning("mode command for %s not sent: %s", camper, exc)
        raise HTTPException(503, detail=f"the command was not sent: {exc}") from None
    log.info("mode command %s for %s sent by %s", command.mode, camper, token.name)
    return JSONResponse(
        {"camper": camper, "topic": topic, "command": command.model_dump(exclude_none=True), "issued_by": token.name},
        status_code=202, headers=_NO_STORE,
    )


# -- /metrics: what the API can know of the fleet -------------------------------------------
DEAD_LETTER_WINDOW = timedelta(hours=24)
DEAD_LETTER_COUNT_MAX = 1000


def update_fleet_gauges(app: Any, metrics: Any, store: Store) -> None:
    """Set the fleet gauges of ``/metrics`` before a scrape: open alerts per kind (every kind,
    0 included, so a closed alert drops to 0), each camper's queue depth from its latest
    status (live when newer), and the dead letters of the last 24 h.

    Why dead letters are a windowed gauge and not a counter: the store offers no count,
    only ``dead_letters(since, limit)``; counting up to DEAD_LETTER_COUNT_MAX keeps a scrape
    cheap. Each part is skipped (and logged) when its source is down: a scrape must answer."""
    from camperhub.fleet.alerts import open_repository
    from camperhub.fleet.alerts_rules import AlertKind, AlertSettings
    from camperhub.store.base import StoreError

    state = app.state
    try:
        if getattr(state, "alerts", None) is None:
            with _state_lock:
                # a scrape does not create the alerts file: without one no alerts service ran (gauges absent)
                if getattr(state, "alerts", None) is None and AlertSettings().path.exists():
                    state.alerts = open_repository()
        counts = Counter(a.kind.value for a in state.alerts.open_alerts()) if getattr(state, "alerts", None) is not None else None
        for kind in AlertKind if counts is not None else ():
            metrics.open_alerts.labels(kind.value).set(counts.get(kind.value, 0))  # type: ignore[union-attr]
    except (OSError, sqlite3.Error, ValidationError, ValueError) as exc:
        log.warning("metrics: alerts not readable: %s", exc)
    try:
        depths: dict[str, int] = {}
        for camper in store.campers():
            status = store.latest(camper, Stream.STATUS)
            ts, fields = (status.ts_ms, status.fields) if status is not None else (None, {})
            live = state.broadcaster.latest(camper, Stream.STATUS.value)
            if live is not None and (ts is None or live.ts_ms > ts):
                fields = live.data.get("fields", {})
            if isinstance(fields.get("queue_depth"), int):
                depths[camper] = fields["queue_depth"]
        metrics.camper_queue_depth.clear()
        for camper, depth in depths.items():
            metrics.camper_queue_depth.labels(camper).set(depth)
        letters = store.dead_letters(since=datetime.now(UTC) - DEAD_LETTER_WINDOW, limit=DEAD_LETTER_COUNT_MAX)
        metrics.dead_letters_recent.set(len(letters))
    except StoreError as exc:
        log.warning("metrics: store not readable: %s", exc)


# -- the OpenAPI document: 422 as the app sends it ---------------------------------------------
