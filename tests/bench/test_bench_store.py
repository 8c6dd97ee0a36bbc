"""A year's daily summary under 1 s (ARCHITECTURE.md §11), from raw and from the rollups.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_store.py``
(deselected from the normal run). For each backend it builds a year of
energy samples every 5 s for one camper (6,307,200 samples, 6 fields), then
times ``series(every=1 day, fields=[pv_power_w, load_power_w,
battery_soc_pct], aggregate="mean")`` over the year before the rollup (every
minute is dirty: the raw path) and after it (the rollup path), and prints a
Markdown table row per step. It checks that both paths answer the same;
nothing here asserts a speed.

SQLite rows are inserted with executemany in big transactions, with the
``dirty_minute`` marks that SqliteStore.write puts in the same transaction;
InfluxDB gets 5,000-line /write batches on a private server, and its store
then starts with a fresh rollup journal, which finds the year from the data
(the path of an upgrade from before rollups). InfluxDB reads data just
written from many small files until it compacts them (by default once a shard
has had no writes for 4 hours; here after 10 s): its reads are timed once the
files have settled, and the rollup path also right after the fold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.store.influx import InfluxStore
from camperhub.store.sqlite import SqliteStore
from tests.fixtures.influxdb import InfluxServer

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

CAMPER = "bench-1"
START = datetime(2025, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
DAY_MS = 86_400_000
STEP_MS = 5_000
DAYS = 365
SAMPLES = DAYS * DAY_MS // STEP_MS
CHUNK = 432_000  # samples generated at a time (25 days)
FIELDS = ["pv_power_w", "load_power_w", "battery_soc_pct", "battery_voltage_v", "battery_current_a"]
ASKED = ["pv_power_w", "load_power_w", "battery_soc_pct"]
ROWS: list[str] = []


def _chunks() -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """(ts, [values per field]) of the year, a solar day shape plus noise, rounded like real readings."""
    rng = np.random.default_rng(7)
    for lo in range(0, SAMPLES, CHUNK):
        i = np.arange(lo, min(lo + CHUNK, SAMPLES), dtype=np.int64)
        ts = START_MS + i * STEP_MS
        phase = 2 * np.pi * ((ts % DAY_MS) / DAY_MS)
        pv = np.round(np.maximum(0.0, -400 * np.cos(phase)) + rng.uniform(0, 5, len(i)), 1)
        load = np.round(30 + rng.uniform(0, 60, len(i)), 1)
        soc = np.round(60 + 30 * np.sin(phase - 1.0), 2)
        volts = np.round(12.4 + soc / 100, 3)
        amps = np.round((pv - load) / volts, 2)
        yield ts, [pv, load, soc, volts, amps]


def _row(backend: str, what: str, seconds: float) -> None:
    ROWS.append(f"| {backend} | {what} | {seconds:.3f} |")
    print(ROWS[-1], flush=True)


def _summary(store: Store) -> tuple[pd.DataFrame, float]:
    """The daily means of a year and the best of three timings (the first warms caches)."""
    end = START + timedelta(days=DAYS)
    times, frame = [], None
    for _ in range(3):
        t = time.perf_counter()
        frame = store.series(CAMPER, Stream.ENERGY, ASKED, START, end, every=timedelta(days=1), aggregate="mean")
        times.append(time.perf_counter() - t)
    assert frame is not None and len(frame) == DAYS
    return frame, min(times)


def _measure(backend: str, store: Store, load_s: float, settle: Callable[[], None] | None = None) -> None:
    _row(backend, f"load {SAMPLES:,} samples ({len(FIELDS) + 1} fields)", load_s)
    if settle:
        settle()
    raw, raw_s = _summary(store)
    _row(backend, "a year's daily mean of 3 fields, raw path", raw_s)
    t = time.perf_counter()
    written = store.rollup()
    _row(backend, f"rollup() of the year ({written:,} minutes)", time.perf_counter() - t)
    assert written == SAMPLES * STEP_MS // 60_000
    folded, folded_s = _summary(store)
    _row(backend, "a year's daily mean of 3 fields, rollup path" + (", right after the fold" if settle else ""), folded_s)
    pd.testing.assert_frame_equal(folded, raw, rtol=1e-9)
    if settle:
        settle()
        folded, folded_s = _summary(store)
        _row(backend, "a year's daily mean of 3 fields, rollup path, files compacted", folded_s)
        pd.testing.assert_frame_equal(folded, raw, rtol=1e-9)


@pytest.fixture(scope="module", autouse=True)
def _table() -> Iterator[None]:
    yield
    print("\n| backend | step | seconds |\n|---|---|---|\n" + "\n".join(ROWS), flush=True)


def test_bench_sqlite_year(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "bench.sqlite") as store:
        t = time.perf_counter()
        conn = store._conn  # the store's own connection: a bulk load without per-sample checks
        cols = ", ".join(["seq", *FIELDS])
        seq = 0
        for ts, values in _chunks():
            conn.execute("BEGIN")
            seqs = range(seq + 1, seq + 1 + len(ts))
            seq += len(ts)
            conn.executemany(
                f"INSERT INTO energy (camper, ts_ms, {cols}) VALUES (?, ?, ?{', ?' * len(FIELDS)})",
                zip([CAMPER] * len(ts), ts.tolist(), seqs, *(v.tolist() for v in values)),
            )
            minutes = np.unique(ts - ts % 60_000).tolist()
            conn.executemany("INSERT OR IGNORE INTO dirty_minute (camper, minute_ms) VALUES (?, ?)", [(CAMPER, m) for m in minutes])
            conn.execute("COMMIT")
        _measure("SQLite", store, time.perf_counter() - t)


class _CompactingServer(InfluxServer):
    """The test server, compacting a shard 10 s after its last write instead of 4 hours."""

    def _conf(self) -> str:
        cold = '  cache-snapshot-write-cold-duration = "10s"\n  compact-full-write-cold-duration = "10s"\n'
        return super()._conf().replace("  query-log-enabled = false\n", "  query-log-enabled = false\n" + cold)

    def settle(self, quiet_s: float = 20, max_s: float = 300) -> None:
        """Wait until the data files stop changing (the compactions are done)."""
        last, since, deadline = None, time.monotonic(), time.monotonic() + max_s
        while time.monotonic() < deadline:
            files = sorted((p.name, p.stat().st_size) for p in (self.workdir / "data").rglob("*.tsm"))
            if files != last:
                last, since = files, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(1)


def test_bench_influxdb_year(tmp_path: Path) -> None:
    with _CompactingServer(tmp_path / "influx") as server:
        server.query('CREATE DATABASE "bench"')
        t = time.perf_counter()
        with httpx.Client(base_url=server.url_without_credentials, auth=(server.admin_user, server.admin_password), timeout=120) as http:
            seq = 0
            for ts, values in _chunks():
                columns = [ts.tolist(), *(v.tolist() for v in values)]
                lines = []
                for t_ms, *vals in zip(*columns):
                    seq += 1
                    fields = ",".join(f"{name}={v!r}" for name, v in zip(FIELDS, vals))
                    lines.append(f"energy,camper={CAMPER} {fields},seq={seq}i {t_ms}")
                for k in range(0, len(lines), 5000):
                    r = http.post("/write", params={"db": "bench", "precision": "ms"}, content="\n".join(lines[k : k + 5000]))
                    assert r.status_code == 204, r.text
        load_s = time.perf_counter() - t
        with InfluxStore(server.url, database="bench", timeout_s=300) as store:
            _measure("InfluxDB 1.6", store, load_s, server.settle)
