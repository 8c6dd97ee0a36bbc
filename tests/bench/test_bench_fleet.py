"""``GET /api/v1/fleet`` for 50 campers with a year of history each: p99 latency (target 100 ms).

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_fleet.py`` (deselected from
the normal run); it prints a Markdown table and asserts no speed.

The data, per camper (``CAMPERS`` = 50): a year of energy readings at one an hour
(8,760: battery SoC, voltage, current, temperature on a daily cycle, a BMS's SoH),
the last 24 hours at one a minute (1,440, seq running on, so today's completeness
has something to count), a status and a position; the per-minute rollups folded
as the ingest does. The overview reads what it needs from that: the latest samples,
a battery summary (a full charge looked for in the last 2 to 35 days, from the
rollups) and today's completeness. Stores: SQLite (the embedded default) and a
private InfluxDB server (production), each its own run.

The app runs under uvicorn on a loopback port; one client asks ``/api/v1/fleet``
with a staff token 200 times in a row. Rows:

* default settings (``CAMPERHUB_API_FLEET_CACHE_S`` = 10 s): the first request
  computes every camper's line (cold), the rest are served from the per-camper cache
  while it is fresh, plus the live parts (the alerts read, the live status);
* ``fleet_cache_s = 0``: every request computes every line again (the battery
  summary keeps its own 60-s cache), i.e. what a request costs when all lines are
  stale at once.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.contract import Stream
from camperhub.store.base import Store, StoredSample
from camperhub.store.influx import InfluxStore
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings
from tests.api.test_page_browser import Server
from tests.fixtures.influxdb import InfluxServer

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

CAMPERS = 50
REQUESTS = 200
UNCACHED_REQUESTS = 50
HOUR_MS, MIN_MS = 3_600_000, 60_000
ROWS: list[str] = []


def _energy(camper: int, ts: np.ndarray, seq0: int) -> list[StoredSample]:
    hour = (ts // HOUR_MS) % 24
    phase = 2 * np.pi * (hour - 6) / 24
    soc = np.round(np.clip(65 + 34 * np.sin(phase) + camper % 5, 5, 100), 1)
    volts = np.round(12.9 + 0.006 * (soc - 50), 3)
    amps = np.round(20 * np.cos(phase), 2)
    temp = np.round(15 + 8 * np.sin(phase), 1)
    name = f"van-{camper:02d}"
    return [
        StoredSample(name, Stream.ENERGY, int(t), {"seq": seq0 + i, "battery_soc_pct": float(s), "battery_voltage_v": float(v),
                                                    "battery_current_a": float(a), "battery_temp_c": float(c), "battery_soh_pct": 96.0})
        for i, (t, s, v, a, c) in enumerate(zip(ts.tolist(), soc, volts, amps, temp))
    ]


def load(store: Store, now_ms: int) -> float:
    """The fleet's year; seconds it took, rollup included."""
    t0 = time.perf_counter()
    day_start = now_ms - 24 * HOUR_MS
    year = np.arange(now_ms - 365 * 24 * HOUR_MS, day_start, HOUR_MS, dtype=np.int64)
    today = np.arange(day_start - day_start % MIN_MS, now_ms - MIN_MS, MIN_MS, dtype=np.int64)
    for c in range(CAMPERS):
        samples = _energy(c, year, 1) + _energy(c, today, len(year) + 1)
        for k in range(0, len(samples), 20_000):
            store.write(samples[k : k + 20_000])
        name = f"van-{c:02d}"
        store.write([
            StoredSample(name, Stream.STATUS, now_ms - 2 * MIN_MS, {"seq": 1, "state": "online" if c % 7 else "offline", "mode": "normal",
                                                                    "queue_depth": c % 4, "oldest_queued_s": float(c % 4) * 5}),
            StoredSample(name, Stream.POSITION, now_ms - 3 * MIN_MS, {"seq": 1, "lat": 45.82, "lon": 8.83, "fix": 3}),
        ])
    while store.rollup(datetime.now(UTC)):
        pass
    return time.perf_counter() - t0


def _q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def _measure(url: str, token: str, n: int) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=120) as client:
        t0 = time.perf_counter()
        r = client.get(url, headers=headers)
        cold = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200 and len(r.json()["campers"]) == CAMPERS, r.text[:300]
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.get(url, headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
    lines = r.json()["campers"]
    assert all(line["battery"]["soc_pct"] is not None and line["completeness_today_pct"] is not None for line in lines)
    return cold, times


def _bench(name: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPERHUB_ALERTS_PATH", str(tmp_path / "alerts.sqlite"))
    monkeypatch.setenv("CAMPERHUB_AUDIT_PATH", str(tmp_path / "audit.sqlite"))
    now_ms = int(time.time() * 1000)
    load_s = load(store, now_ms)
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    token = tokens.create("bench", "staff")
    for label, cache_s, n in (("default (10 s line cache)", 10.0, REQUESTS), ("fleet_cache_s=0 (every line recomputed)", 0.0, UNCACHED_REQUESTS)):
        app = create_app(settings(fleet_cache_s=cache_s), store, tokens=tokens)
        with Server(app) as server:
            cold, times = _measure(f"http://127.0.0.1:{server.port}/api/v1/fleet", token, n)
        ROWS.append(f"| {name} | {label} | {load_s:.0f} s | {cold:.0f} ms | {n} | {statistics.median(times):.1f} ms "
                    f"| {_q(times, 99):.1f} ms | {max(times):.1f} ms |")
    print(f"\n| store | setting | load {CAMPERS} × (8,760 h + 1,440 min) + rollup | first request | requests | p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(ROWS), flush=True)


class _Unclosed:
    """The store behind a proxy whose close() does nothing: the app's lifespan closes its store, and
    the benchmark serves the same loaded store to two apps in turn."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_bench_fleet_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(tmp_path / "fleet.sqlite")
    try:
        _bench("sqlite", _Unclosed(store), tmp_path, monkeypatch)  # type: ignore[arg-type]
    finally:
        store.close()


def test_bench_fleet_influx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with InfluxServer(tmp_path / "influx") as server:
        store = InfluxStore(server.url, database="camperhub", journal_path=tmp_path / "journal.sqlite")
        try:
            _bench("influx", _Unclosed(store), tmp_path, monkeypatch)  # type: ignore[arg-type]
        finally:
            store.close()
