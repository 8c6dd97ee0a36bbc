"""FastAPI dependencies as ``Annotated`` aliases: the app's objects, camper ids, rate limits, caching."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Response

from camperhub.api.events import Broadcaster
from camperhub.api.metrics import ApiMetrics
from camperhub.api.ratelimit import TokenBucketLimiter
from camperhub.api.settings import ApiSettings
from camperhub.contract import CAMPER_ID_PATTERN, Stream, is_valid_camper_id
from camperhub.store.base import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_broadcaster(request: Request) -> Broadcaster:
    return request.app.state.broadcaster


def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
BroadcasterDep = Annotated[Broadcaster, Depends(get_broadcaster)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


def valid_camper(camper: Annotated[str, Path(description="Camper id, [a-z0-9-]{1,32}", examples=["varese-1"])]) -> str:
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


def rate_limit(request: Request, metrics: MetricsDep) -> None:
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


def public_cache(response: Response, settings: SettingsDep) -> None:
    """``Cache-Control: public, max-age=N`` on a public GET that returns a model."""
    response.headers["Cache-Control"] = cache_control(settings)


PublicCache = Depends(public_cache)
