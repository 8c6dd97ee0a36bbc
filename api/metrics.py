"""Prometheus metrics of one API process (``GET /metrics``), through prometheus-client.

Each app gets its own registry (not the library's global one), so several apps
in one process (tests, the demo) do not collide. Without prometheus-client
(not installed: it is in the ``server`` extra) the counters are kept as no-ops
and ``/metrics`` answers 503 saying so.

Requests are labelled by route *template* (``/api/v1/campers/{camper}``), never
by the raw path, so label cardinality stays bounded whatever clients ask for.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:  # pragma: no cover - exercised by the import itself
    import prometheus_client as prom
except ImportError:  # pragma: no cover
    prom = None  # type: ignore[assignment]


class _Noop:
    def labels(self, *a: Any, **k: Any) -> "_Noop":
        return self

    def inc(self, *a: Any) -> None: ...
    def dec(self, *a: Any) -> None: ...
    def set(self, *a: Any) -> None: ...
    def clear(self) -> None: ...
    def observe(self, *a: Any) -> None: ...


class ApiMetrics:
    """The API's counters, histograms and gauges."""

    available = prom is not None

    def __init__(self) -> None:
        if prom is None:
            self.registry = None
            n = _Noop()
            self.requests = self.latency = self.store_errors = self.rate_limited = n
            self.sse_clients = self.sse_dropped = self.live_messages = self.live_rejected = n
            self.open_alerts = self.camper_queue_depth = self.dead_letters_recent = n
            return
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = prom.Counter("camperhub_api_requests", "HTTP requests answered", ["method", "route", "status"], registry=r)
        self.latency = prom.Histogram(
            "camperhub_api_request_duration_seconds", "Time to answer (SSE: the whole stream)", ["method", "route"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600),
        )
        self.store_errors = prom.Counter("camperhub_api_store_errors", "Store calls that failed", ["kind"], registry=r)
        self.rate_limited = prom.Counter("camperhub_api_rate_limited", "Requests refused with 429", registry=r)
        self.sse_clients = prom.Gauge("camperhub_api_sse_clients", "Connected server-sent-events clients", registry=r)
        self.sse_dropped = prom.Counter("camperhub_api_sse_dropped", "SSE clients dropped for lagging behind", registry=r)
        self.live_messages = prom.Counter("camperhub_api_live_messages", "MQTT messages received for the live streams", ["stream"], registry=r)
        self.live_rejected = prom.Counter("camperhub_api_live_rejected", "MQTT messages that broke the contract", registry=r)
        # fleet gauges, set at each scrape by GET /metrics (api/routers/ops.py) from what the API can read
        self.open_alerts = prom.Gauge("camperhub_open_alerts", "Open fleet alerts (CAMPERHUB_ALERTS_PATH)", ["kind"], registry=r)
        self.camper_queue_depth = prom.Gauge(
            "camperhub_camper_queue_depth", "Readings queued on the camper, per its latest status", ["camper"], registry=r
        )
        self.dead_letters_recent = prom.Gauge(
            "camperhub_dead_letters_recent", "Messages the ingest refused in the last 24 h, kept as dead letters (counted up to 1000)", registry=r
        )

    def render(self) -> tuple[bytes, str]:
        assert prom is not None and self.registry is not None
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streaming responses)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - started)
