"""The API application (ARCHITECTURE.md §6): ``create_app(settings, store) -> FastAPI``.

The app owns the store it is given (its lifespan closes it), one
:class:`~camperhub.api.events.Broadcaster` for the live streams and, when given
broker settings and ``CAMPERHUB_API_LIVE`` is on, the MQTT
:class:`~camperhub.api.live.LiveListener` that feeds it. Errors are JSON with a
``detail`` that says what is wrong: 404/422/429 as HTTP means them, 503 (with
Retry-After) while the store is unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from camperhub.api.events import Broadcaster
from camperhub.api.gctune import GcFreezer
from camperhub.api.metrics import ApiMetrics, MetricsMiddleware
from camperhub.api.pages import STATIC_DIR
from camperhub.api.pages.router import router as pages_router
from camperhub.api.ratelimit import TokenBucketLimiter
from camperhub.api.auth import TokenStore
from camperhub.api.openapi_doc import openapi_errors_as_sent
from camperhub.api.pages.fleet import router as fleet_page_router
from camperhub.api.pages.workshop import router as workshop_page_router
from camperhub.api.routers import fleet, ops, sessions, staff, tenants, workshops
from camperhub.api.settings import ApiSettings
from camperhub.schedule import ScheduleSettings
from camperhub.schedule_io import ScheduleRepository
from camperhub.settings import MqttClientSettings
from camperhub.store.base import Store, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

DESCRIPTION = """\
Energy and whereabouts of a solar camper, for its tenants, workshop leaders and fleet staff.

* **tenants** (public, rate limited per address): campers and their status, where the camper is (privacy-filtered: a stop, "on the way to", or not in service) and its schedule, live status and location (server-sent events).
* **workshops** (public, rate limited): energy now, per day and over time, the kiosk's live stream; workshop sessions (kiosk key or staff token) and their read-only recaps.
* **staff** (bearer token): schedules, the service switch, the fleet's state, battery health, alerts, position history (audited), live mode.
* **operations**: liveness, readiness, Prometheus metrics.

Times are UTC (ISO 8601, `Z`) in answers, with Europe/Rome beside them where people read them;
inputs take an explicit offset (`2026-05-04T14:00:00+02:00`) or a date (Europe/Rome midnight).
Errors are JSON: `{"detail": "..."}`.
"""


def create_app(
    settings: ApiSettings | None = None,
    store: Store | None = None,
    *,
    mqtt: MqttClientSettings | None = None,
    schedules: ScheduleRepository | None = None,
    tokens: TokenStore | None = None,
    clock: Callable[[], datetime] | None = None,
    schedule_settings: ScheduleSettings | None = None,
) -> FastAPI:
    """The app over ``store`` (default: the one of ``CAMPERHUB_STORE``, opened at start-up).

    ``mqtt``: the broker the live listener subscribes to (only when
    ``settings.live``); None: the live streams carry what the store has.
    ``schedules`` / ``tokens``: default the files of CAMPERHUB_SCHEDULE_PATH /
    CAMPERHUB_TOKENS_PATH, opened on first use. ``clock``: "now" of the public
    location (tests fix it; default the system clock). ``schedule_settings``: service
    windows' grace, geofence factors, the schedule file (default: read from
    ``CAMPERHUB_*`` here, once, and validated at start-up).
    """
    settings = settings if settings is not None else ApiSettings()
    metrics = ApiMetrics()
    broadcaster = Broadcaster(queue_size=settings.sse_queue, replay=settings.sse_replay, on_drop=metrics.sse_dropped.inc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.store is None:
            from camperhub.store import open_store

            app.state.store = open_store()
        broadcaster.bind()
        listener = None
        if mqtt is not None and settings.live:
            from camperhub.api.live import LiveListener

            listener = LiveListener(mqtt, broadcaster, metrics=metrics, protocol=settings.mqtt_protocol)
            listener.start()
        app.state.live = listener
        freezer = GcFreezer(settings.gc_freeze_s, settings.gc_unfreeze_s)
        freezer.start()
        try:
            yield
        finally:
            await freezer.stop()
            fleet_cache = getattr(app.state, "fleet_cache", None)
            if fleet_cache is not None:
                fleet_cache.close()  # background refreshes of the fleet overview
            broadcaster.close()
            if listener is not None:
                listener.stop()
            app.state.store.close()

    app = FastAPI(
        title="Camper Hub API", description=DESCRIPTION, version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None,
        openapi_tags=[
            {"name": "tenants", "description": "Public: what tenants and the public page read"},
            {"name": "workshops", "description": "Public: the camper's energy, for the kiosk, recaps and handouts"},
            {"name": "workshop", "description": "Workshop sessions (kiosk key or staff token) and their recaps (read-only links)"},
            {"name": "staff", "description": "Fleet staff: bearer token (`camperhub token create NAME --role staff`)"},
            {"name": "operations", "description": "Health, readiness and metrics for the operators"},
        ],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    app.state.broadcaster = broadcaster
    app.state.limiter = TokenBucketLimiter(settings.rate_per_s, settings.rate_burst)
    app.state.live = None
    app.state.schedules = schedules
    app.state.tokens = tokens
    app.state.sessions = None  # workshop sessions: CAMPERHUB_SESSIONS_PATH, opened on first use (api/routers/sessions.py)
    app.state.clock = clock or (lambda: datetime.now(UTC))
    # read once: building it from the environment on every location request cost more than the view
    app.state.schedule_settings = schedule_settings if schedule_settings is not None else ScheduleSettings()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        errors = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header", "body"))
            msg = "unknown parameter" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
            problems.append(f"{loc}: {msg}" if loc else msg)
            errors.append({"loc": list(err.get("loc", ())), "msg": msg, "type": err.get("type")})
        return JSONResponse({"detail": "; ".join(problems), "errors": errors}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        metrics.store_errors.labels("StoreUnavailable").inc()
        log.warning("store unavailable: %s", exc)
        return JSONResponse({"detail": "the store is unavailable just now; try again shortly"}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StoreRejected)
    async def _rejected(request: Request, exc: StoreRejected) -> JSONResponse:
        metrics.store_errors.labels("StoreRejected").inc()
        log.error("store refused a read: %s", exc)
        return JSONResponse({"detail": "the store refused the request"}, status_code=500)

    app.state.mqtt = mqtt  # the broker POST /campers/{camper}/mode publishes to (None: 503) and /readyz checks
    # one router per audience, then the pages
    for r in (tenants.router, workshops.router, sessions.router, staff.router, fleet.router, ops.router,
              pages_router, workshop_page_router, fleet_page_router):
        app.include_router(r)
    app.openapi = openapi_errors_as_sent(app)  # type: ignore[method-assign]  # 422 bodies as _invalid sends them
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET"],
            allow_headers=["Accept", "Last-Event-ID", "If-None-Match"], expose_headers=["ETag", "Retry-After"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
