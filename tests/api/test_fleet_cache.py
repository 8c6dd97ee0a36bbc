"""The fleet overview's cache: fresh lines as kept, stale ones served while refreshed behind, never a stall."""

from __future__ import annotations

import threading
import time

import pytest

from camperhub.api import fleet_cache
from camperhub.api.fleet_cache import FleetCache

pytestmark = pytest.mark.timeout(30)


def _wait(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_fresh_is_kept_stale_is_served_while_refreshed_too_old_is_computed(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(fleet_cache.time, "monotonic", lambda: clock[0])
    cache = FleetCache()
    calls: list[str] = []
    release = threading.Event()

    def slow(value: str):
        def compute() -> str:
            calls.append(value)
            if value == "v2":
                assert release.wait(5)
            return value
        return compute

    try:
        assert cache.fetch("line", "van-1", 10, slow("v1")) == "v1"  # never computed: in the request
        clock[0] += 5
        assert cache.fetch("line", "van-1", 10, slow("x")) == "v1" and calls == ["v1"]  # fresh
        clock[0] += 10  # 15 s old: stale, served at once while v2 computes behind
        assert cache.fetch("line", "van-1", 10, slow("v2")) == "v1"
        assert cache.fetch("line", "van-1", 10, slow("v3")) == "v1"  # one refresh at a time per line
        release.set()
        _wait(lambda: cache.get("line", "van-1", 10) == "v2")
        assert calls == ["v1", "v2"] and cache.background_refreshes == 1
        clock[0] += 10 * fleet_cache.STALE_FACTOR + 1  # far too old: computed in the request
        assert cache.fetch("line", "van-1", 10, slow("v4")) == "v4"
    finally:
        release.set()
        cache.close()


def test_a_failed_refresh_keeps_the_old_line_and_close_stops_refreshing(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(fleet_cache.time, "monotonic", lambda: clock[0])
    cache = FleetCache()

    def broken() -> str:
        raise ConnectionError("store down")

    try:
        cache.put("line", "van-1", "old")
        clock[0] += 20
        assert cache.fetch("line", "van-1", 10, broken) == "old"
        _wait(lambda: not cache._refreshing)
        assert cache.fetch("line", "van-1", 10, lambda: "new") == "old"  # stale again: refreshed behind
        _wait(lambda: cache.get("line", "van-1", 10) == "new")
    finally:
        cache.close()
    clock[0] += 20
    assert cache.fetch("line", "van-1", 10, lambda: "after") == "after"  # closed: computed in the request
    with pytest.raises(ConnectionError):
        cache.fetch("line", "van-2", 10, broken)  # nothing kept: the request fails as without a cache
