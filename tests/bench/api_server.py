"""Launcher of the API benches (tests/bench/test_bench_api.py): one uvicorn worker on 127.0.0.1:PORT.

``camperhub``: the Camper Hub app exactly as ``camperhub api`` builds it (store,
schedules, rate limit and live listener from the CAMPERHUB_* variables), but
without uvicorn's access log, which ``camperhub api`` keeps on and which would
cost more than some requests. ``bare``: a FastAPI app whose one endpoint returns
a constant JSON, the anchor. Both: same uvicorn (asyncio loop, h11), same
options, RLIMIT_NOFILE raised to its hard limit.

Garbage collections over 50 ms are printed to stderr (the bench reads them);
``CAMPERHUB_BENCH_GC_THRESHOLD2`` sets the third collection threshold (diagnostic).

Usage: python api_server.py camperhub|bare PORT
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time

import uvicorn


def _log_slow_gc(threshold_s: float = 0.05) -> None:
    """Print every garbage collection that stops the process longer than ``threshold_s`` (the bench
    reads them from the log to tell a collection from the work it measures)."""
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (took := time.perf_counter() - started[0]) > threshold_s:
            print(f"gc: generation {info['generation']} took {took * 1000:.0f} ms at {time.time():.3f}", file=sys.stderr, flush=True)

    gc.callbacks.append(callback)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    _log_slow_gc()
    if os.environ.get("CAMPERHUB_BENCH_GC_THRESHOLD2"):  # diagnostic only: how often full collections run
        t0, t1, _ = gc.get_threshold()
        gc.set_threshold(t0, t1, int(os.environ["CAMPERHUB_BENCH_GC_THRESHOLD2"]))
    if kind == "bare":
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/bare")
        async def bare() -> dict:
            return {"camper": "varese-1", "state": "on_the_way", "ok": True}
    else:
        from camperhub.api.app import create_app
        from camperhub.api.settings import ApiSettings
        from camperhub.settings import MqttClientSettings

        settings = ApiSettings(port=port)
        app = create_app(settings, mqtt=MqttClientSettings() if settings.live else None)
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False, backlog=8192,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
