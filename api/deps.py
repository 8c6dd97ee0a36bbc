"""FastAPI dependencies as ``Annotated`` aliases: the app's objects, camper ids, rate limits, caching.

Dependencies that do not block are ``async def``: FastAPI runs a plain ``def``
dependency in its thread pool, and with a dozen of them a public request made
as many thread hand-offs, which under load cost more than the request's own
work (tests/bench/test_bench_api.py). Those that read a file or the store
(``known_camper``, the token checks) stay plain ``def``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from camperhub.api.auth import TokenInfo, authenticate, bearer
from camperhub.api.events import Broadcaster
from camperhub.api.metrics import ApiMetrics
from camperhub.api.ratelimit import TokenBucketLimiter
from camperhub.api.settings import ApiSettings
from camperhub.contract import CAMPER_ID_PATTERN, Stream, is_valid_camper_id
from camperhub.schedule import ScheduleSettings
from camperhub.schedule_io import ScheduleRepository
from camperhub.store.base import Store


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_broadcaster(request: Request) -> Broadcaster:
    return request.app.state.broadcaster


async def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


_schedules_lock = threading.Lock()


async def get_schedules(request: Request) -> ScheduleRepository:
    """The app's schedule repository; opened on first use (CAMPERHUB_SCHEDULE_PATH) unless the app was given one."""
    state = request.app.state
    if state.schedules is None:
        with _schedules_lock:
            if state.schedules is None:
                state.schedules = ScheduleRepository(state.schedule_settings.schedule_path)
    return state.schedules


async def get_clock(request: Request) -> Callable[[], datetime]:
    return request.app.state.clock


async def get_schedule_settings(request: Request) -> ScheduleSettings:
    return request.app.state.schedule_settings


StoreDep = Annotated[Store, Depends(get_store)]
SchedulesDep = Annotated[ScheduleRepository, Depends(get_schedules)]
ClockDep = Annotated[Callable[[], datetime], Depends(get_clock)]
ScheduleSettingsDep = Annotated[ScheduleSettings, Depends(get_schedule_settings)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
BroadcasterDep = Annotated[Broadcaster, Depends(get_broadcaster)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


async def valid_camper(camper: Annotated[str, Path(description="Camper id, [a-z0-9-]{1,32}", examples=["varese-1"])]) -> str:
    """422 for an id that cannot be a camper's (the contract's pattern), before any store call."""
    if not is_valid_camper_id(camper):
        raise HTTPException(422, detail=f"camper id {camper!r} does not match {CAMPER_ID_PATTERN}")
    return camper


CamperIdDep = Annotated[str, Depends(valid_camper)]


def known_camper(camper: CamperIdDep, store: StoreDep, broadcaster: BroadcasterDep) -> str:
    """404 for a camper that never stored anything (nor is live on the broker)."""
    if broadcaster.latest(camper, Stream.STATUS.value) is None and camper not in store.campers():
        raise HTTPException(404, detail=f"unknown camper {camper!r}")
    return camper


KnownCamperDep = Annotated[str, Depends(known_camper)]


def client_address(request: Request) -> str:
    """The peer address (behind a proxy: run uvicorn with --proxy-headers and --forwarded-allow-ips)."""
    return request.client.host if request.client else "unknown"


async def rate_limit(request: Request, metrics: MetricsDep) -> None:
    """Public endpoints: a token bucket per client address; 429 with Retry-After when empty."""
    limiter: TokenBucketLimiter = request.app.state.limiter
    address = client_address(request)
    allowed, retry_s = limiter.allow(address)
    if not allowed:
        metrics.rate_limited.inc()
        wait = limiter.retry_after_header(retry_s)
        raise HTTPException(
            429,
            detail=f"too many requests from {address}: at most {limiter.rate:g} per second (bursts of {limiter.burst:g}); retry in {wait} s",
            headers={"Retry-After": wait},
        )


RateLimited = Depends(rate_limit)


def cache_control(settings: ApiSettings) -> str:
    return f"public, max-age={settings.cache_max_age_s}"


async def public_cache(response: Response, settings: SettingsDep) -> None:
    """``Cache-Control: public, max-age=N`` on a public GET that returns a model."""
    response.headers["Cache-Control"] = cache_control(settings)


PublicCache = Depends(public_cache)


def require_staff(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> TokenInfo:
    return authenticate(request, credentials, "staff")


def require_admin(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> TokenInfo:
    return authenticate(request, credentials, "admin")


#: A staff (or admin) bearer token: 401 without or with a bad one.
StaffDep = Annotated[TokenInfo, Depends(require_staff)]
#: An admin bearer token: 401 without or with a bad one, 403 for a staff token.
AdminDep = Annotated[TokenInfo, Depends(require_admin)]
