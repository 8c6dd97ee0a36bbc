"""Operations: liveness, readiness (the store answers) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from camperhub.api.deps import MetricsDep, StoreDep
from camperhub.store.base import StoreError

router = APIRouter(tags=["operations"])
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", summary="The process is alive")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


@router.get("/readyz", summary="The store answers and, when the API listens to a broker, it is connected (503 naming what is down)")
def readyz(request: Request, store: StoreDep, metrics: MetricsDep) -> JSONResponse:
    live = getattr(request.app.state, "live", None)
    body: dict[str, Any] = {"live": "off" if live is None else "connected" if live.connected.is_set() else "disconnected"}
    down = []
    try:
        store.ping()
        body["store"] = "ok"
    except StoreError as exc:
        metrics.store_errors.labels(type(exc).__name__).inc()
        body["store"] = "down"
        down.append(f"store unavailable: {exc}")
    if body["live"] == "disconnected":  # the broker, as the live listener sees it (it reconnects by itself)
        down.append(f"broker unavailable: not connected to {live.url.redacted()}")
    if down:
        return JSONResponse({"detail": "; ".join(down), **body}, status_code=503, headers=_NO_STORE)
    return JSONResponse({"status": "ready", **body}, headers=_NO_STORE)


@router.get("/metrics", summary="Prometheus text exposition", response_class=Response)
def metrics_text(request: Request, metrics: MetricsDep, store: StoreDep) -> Response:
    if not metrics.available:
        return JSONResponse({"detail": "metrics need prometheus-client (pip install 'camperhub[server]')"}, status_code=503)
    from camperhub.api.routers.fleet import update_fleet_gauges  # open alerts, queues, dead letters

    update_fleet_gauges(request.app, metrics, store)
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type, headers=_NO_STORE)
