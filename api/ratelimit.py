"""A small in-process token bucket per client address for the public endpoints (§10).

Why hand-written rather than slowapi: slowapi (over ``limits``) wants a
decorator and a ``request`` parameter on every route, its own exception type
and handler, and brings storage backends (Redis, memcached) that one API
process does not need; it also counts SSE connections like any request. The
whole job here is ~40 lines: a bucket of ``burst`` tokens refilled at ``rate``
per second, per address, used as one router-level dependency. Counters live in
the process: with several API processes behind a proxy each limits on its own
(the proxy is the place for a global limit).

Memory stays bounded: at most ``max_clients`` buckets; when full, the buckets
that have refilled completely (idle clients, indistinguishable from new ones)
are dropped, and if none has, the oldest is.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucketLimiter:
    """``allow(key)`` -> (allowed, seconds until the next token)."""

    def __init__(self, rate_per_s: float, burst: int, *, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, float]:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                allowed, retry = True, 0.0
                tokens -= 1.0
            else:
                allowed, retry = False, (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)  # most recent last
            if len(self._buckets) > self.max_clients:
                self._evict(now)
        return allowed, retry

    def _evict(self, now: float) -> None:
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Retry-After takes whole seconds (RFC 9110), at least 1."""
        return str(max(1, math.ceil(seconds)))
