"""Per-camper figures of the fleet overview, kept for a while and refreshed behind the answer.

Why: a camper's line (latest samples, battery summary, today's completeness) costs
about 20 ms on SQLite and up to 200 ms on InfluxDB over HTTP; 50 campers computed in
the request made one request a minute take 1 s (SQLite) to 9 s (InfluxDB) whenever
the lines expired together (tests/bench/test_bench_fleet.py). So a line younger than
its time to live is served as it is; an older one (up to ``STALE_FACTOR`` times the
time to live) is still served while one background thread recomputes it; only a line
never computed, or far too old, is computed in the request. Staff see figures at
most a refresh late, never a stall.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: A line older than its time to live times this is computed in the request, not served.
STALE_FACTOR = 10.0


@dataclass
class _Entry:
    at: float
    value: Any


class FleetCache:
    """Values per (kind, camper) with a time to live (monotonic seconds); thread-safe. ``close()``
    waits for the refreshes under way (the app's lifespan calls it)."""

    def __init__(self, workers: int = 2) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], _Entry] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._closed = False
        self.background_refreshes = 0

    def get(self, kind: str, camper: str, ttl_s: float) -> Any:
        """The value if younger than ``ttl_s``, else None."""
        with self._lock:
            e = self._items.get((kind, camper))
        return e.value if e is not None and time.monotonic() - e.at < ttl_s else None

    def put(self, kind: str, camper: str, value: Any) -> None:
        with self._lock:
            self._items[(kind, camper)] = _Entry(time.monotonic(), value)

    def fetch(self, kind: str, camper: str, ttl_s: float, compute: Callable[[], Any]) -> Any:
        """The value: fresh as kept, stale as kept while ``compute`` runs in the background, else
        computed now (its exceptions propagate: the request fails as it would without a cache)."""
        key = (kind, camper)
        with self._lock:
            e = self._items.get(key)
        age = time.monotonic() - e.at if e is not None else float("inf")
        if e is not None and age < ttl_s:
            return e.value
        if e is not None and age < ttl_s * STALE_FACTOR and self._refresh_soon(key, compute):
            return e.value
        value = compute()
        self.put(kind, camper, value)
        return value

    def _refresh_soon(self, key: tuple[str, str], compute: Callable[[], Any]) -> bool:
        with self._lock:
            if self._closed:
                return False
            if key in self._refreshing:
                return True
            self._refreshing.add(key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fleet-refresh")
            pool = self._pool

        def run() -> None:
            try:
                self.put(*key, compute())
                self.background_refreshes += 1
            except Exception as exc:  # the store is down just now: keep serving the old line, try again later
                log.warning("fleet overview: refreshing %s of %s failed: %s", key[0], key[1], exc)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        pool.submit(run)
        return True

    def close(self) -> None:
        """No more background refreshes; wait for those under way."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
