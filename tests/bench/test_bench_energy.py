"""A year's daily energy summary under 1 s (ARCHITECTURE.md §11), on SQLite and on InfluxDB.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_energy.py``
(deselected from the normal run). For each backend it loads one camper's year
at one reading every 10 s (3,153,600 readings: PV, load, battery power, state
of charge, the shore flag), folds it into the per-minute rollups and those into
the per-hour ones (rollup() does both), and times
:func:`camperhub.workshops.analysis.daily_totals` over the 365 local days (read
at one hour, so from the hour tier: 8,760 rows a year instead of 525,600)
(best of three; the first, cold, run is shown too), then prints a Markdown
table. The load is a bulk load as in tests/bench/test_bench_store.py (SQLite:
executemany with the dirty-minute marks; InfluxDB: 5,000-line /write batches
and a fresh rollup journal that finds the year from the data); InfluxDB's
reads are timed once its files have settled. It checks the year's PV energy
against the generator's; nothing here asserts a speed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from camperhub.store.base import Store
from camperhub.store.influx import InfluxStore
from camperhub.store.sqlite import SqliteStore
from camperhub.workshops.analysis import EnergyTotals, daily_totals, day_window
from tests.bench.test_bench_store import _CompactingServer

pytestmark = [pytest.mark.bench, pytest.mark.timeout(2400)]

CAMPER = "bench-1"
FIRST, LAST = date(2025, 1, 1), date(2025, 12, 31)
START = day_window(FIRST)[0]
END = day_window(LAST)[1]
START_MS = int(START.timestamp() * 1000)
STEP_MS = 10_000
DAY_MS = 86_400_000
READINGS = int((END - START).total_seconds() * 1000) // STEP_MS
CHUNK = 432_000  # readings generated at a time (50 days)
FIELDS = ["pv_power_w", "load_power_w", "battery_power_w", "battery_soc_pct"]
ROWS: list[str] = []
PV_WH: list[float] = []


def _chunks() -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """(ts, [values per field], shore flag) of the year: a solar day shape plus noise; shore power
    connected from 18:00 to 08:00 UTC one day in seven."""
    rng = np.random.default_rng(5)
    for lo in range(0, READINGS, CHUNK):
        i = np.arange(lo, min(lo + CHUNK, READINGS), dtype=np.int64)
        ts = START_MS + i * STEP_MS
        phase = 2 * np.pi * ((ts % DAY_MS) / DAY_MS)
        pv = np.round(np.maximum(0.0, -400 * np.cos(phase)) + rng.uniform(0, 5, len(i)), 1)
        load = np.round(30 + rng.uniform(0, 60, len(i)), 1)
        battery = np.round(pv - load, 1)
        soc = np.round(60 + 30 * np.sin(phase - 1.0), 2)
        hour = (ts % DAY_MS) // 3_600_000
        shore = ((ts // DAY_MS) % 7 == 0) & ((hour >= 18) | (hour < 8))
        PV_WH.append(float(pv.sum()) * STEP_MS / 3_600_000)
        yield ts, [pv, load, battery, soc], shore


def _row(backend: str, what: str, seconds: float) -> None:
    ROWS.append(f"| {backend} | {what} | {seconds:.3f} |")
    print(ROWS[-1], flush=True)


def _summary(backend: str, store: Store, what: str = "") -> list[EnergyTotals]:
    times, days = [], []
    for _ in range(3):
        t = time.perf_counter()
        days = daily_totals(store, CAMPER, FIRST, LAST)
        times.append(time.perf_counter() - t)
    _row(backend, f"daily_totals of 365 days{what}, first run", times[0])
    _row(backend, f"daily_totals of 365 days{what}, best of 3", min(times))
    assert len(days) == 365 and all(d.coverage_pct == 100.0 for d in days)
    total = sum(d.pv_wh or 0.0 for d in days)
    assert total == pytest.approx(sum(PV_WH), rel=1e-9)
    return days


@pytest.fixture(scope="module", autouse=True)
def _table() -> Iterator[None]:
    yield
    print(f"\n{READINGS:,} readings every {STEP_MS // 1000} s\n| backend | step | seconds |\n|---|---|---|\n" + "\n".join(ROWS), flush=True)


def test_bench_energy_sqlite(tmp_path: Path) -> None:
    PV_WH.clear()
    with SqliteStore(tmp_path / "bench.sqlite") as store:
        t = time.perf_counter()
        conn = store._conn  # the store's own connection: a bulk load without per-sample checks
        cols = ", ".join(["seq", *FIELDS, "shore_power"])
        seq = 0
        for ts, values, shore in _chunks():
            conn.execute("BEGIN")
            seqs = range(seq + 1, seq + 1 + len(ts))
            seq += len(ts)
            conn.executemany(
                f"INSERT INTO energy (camper, ts_ms, {cols}) VALUES (?, ?, ?{', ?' * (len(FIELDS) + 1)})",
                zip([CAMPER] * len(ts), ts.tolist(), seqs, *(v.tolist() for v in values), shore.astype(int).tolist()),
            )
            minutes = np.unique(ts - ts % 60_000).tolist()
            conn.executemany("INSERT OR IGNORE INTO dirty_minute (camper, minute_ms) VALUES (?, ?)", [(CAMPER, m) for m in minutes])
            conn.execute("COMMIT")
        _row("SQLite", f"load {READINGS:,} readings", time.perf_counter() - t)
        t = time.perf_counter()
        written = store.rollup(now=END + timedelta(minutes=5))
        _row("SQLite", f"rollup() of the year ({written:,} minutes)", time.perf_counter() - t)
        _summary("SQLite", store)


def test_bench_energy_influxdb(tmp_path: Path) -> None:
    PV_WH.clear()
    with _CompactingServer(tmp_path / "influx") as server:
        server.query('CREATE DATABASE "bench"')
        t = time.perf_counter()
        with httpx.Client(base_url=server.url_without_credentials, auth=(server.admin_user, server.admin_password), timeout=120) as http:
            seq = 0
            for ts, values, shore in _chunks():
                lines = []
                for t_ms, pv, load, battery, soc, on in zip(ts.tolist(), *(v.tolist() for v in values), shore.tolist()):
                    seq += 1
                    lines.append(
                        f"energy,camper={CAMPER} pv_power_w={pv!r},load_power_w={load!r},battery_power_w={battery!r},"
                        f"battery_soc_pct={soc!r},shore_power={'true' if on else 'false'},seq={seq}i {t_ms}"
                    )
                for k in range(0, len(lines), 5000):
                    r = http.post("/write", params={"db": "bench", "precision": "ms"}, content="\n".join(lines[k : k + 5000]))
                    assert r.status_code == 204, r.text
        _row("InfluxDB", f"load {READINGS:,} readings", time.perf_counter() - t)
        with InfluxStore(server.url, database="bench", timeout_s=300, journal_path=tmp_path / "journal") as store:
            t = time.perf_counter()
            written = store.rollup(now=END + timedelta(minutes=5))
            _row("InfluxDB", f"rollup() of the year ({written:,} minutes)", time.perf_counter() - t)
            server.settle()
            _summary("InfluxDB", store, ", files compacted")
