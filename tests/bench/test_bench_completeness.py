"""The completeness report of a week, over a year of 5-s readings, on both backends.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_completeness.py``
(deselected from the normal run). For each backend it loads one camper's
year at one reading every 5 s (6,307,200 readings; 6 fields) with what a
real camper's year has: a poll cycle without data every 997 readings, a
30-minute gap every three days (half of them explained by an
``alarm_readings_lost`` event), an hour a week folded into 1-minute means,
and a status with a queue. It then times the report of one week (7 local
days) and of 30 days in the middle of the year (best of three, the first run
shown too), and ``Store.seq_summary`` of the week alone, and prints a
Markdown table. The InfluxDB reads are timed once its files have settled
(see test_bench_store.py); SQLite's before and after ``rollup()`` (the
report's pruned-day check reads quarter-hour counts, from raw before it).
It checks the week's report against the numbers the generator put in;
nothing here asserts a speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from camperhub import completeness as cm
from camperhub.contract import READINGS_LOST_EVENT, ReadingsLost, Stream
from camperhub.store.base import Store, StoredSample
from camperhub.store.influx import InfluxStore
from camperhub.store.sqlite import SqliteStore
from tests.bench.test_bench_store import _CompactingServer

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

CAMPER = "bench-1"
START = datetime(2025, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
STEP_MS = 5_000
DAY_MS = 86_400_000
READINGS = 365 * DAY_MS // STEP_MS
CHUNK = 432_000  # readings generated at a time (25 days)
FIELDS = ["pv_power_w", "load_power_w", "battery_soc_pct", "battery_voltage_v", "battery_current_a"]
GAP_EVERY_MS, GAP_MS = 3 * DAY_MS, 30 * 60_000
WEEK = (date(2025, 6, 2), date(2025, 6, 8))
MONTH = (date(2025, 6, 2), date(2025, 7, 1))
NOW = START + timedelta(days=366)
ROWS: list[str] = []


def _chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]]:
    """(ts, seq, readings_n (0: one reading), has data, [values per field]) of the stored samples."""
    rng = np.random.default_rng(11)
    for lo in range(0, READINGS, CHUNK):
        i = np.arange(lo, min(lo + CHUNK, READINGS), dtype=np.int64)
        ts = START_MS + i * STEP_MS
        seq = i + 1
        t = ts - START_MS
        gap = (t % GAP_EVERY_MS >= 12 * 3_600_000) & (t % GAP_EVERY_MS < 12 * 3_600_000 + GAP_MS)
        in_fold = (t % (7 * DAY_MS) >= 3 * 3_600_000) & (t % (7 * DAY_MS) < 4 * 3_600_000)
        fold_last = in_fold & ((ts + STEP_MS) % 60_000 == 0)
        keep = ~gap & (~in_fold | fold_last)
        n = np.where(fold_last, 12, 0)
        data = (seq % 997 != 13) | fold_last
        phase = 2 * np.pi * ((ts % DAY_MS) / DAY_MS)
        pv = np.round(np.maximum(0.0, -400 * np.cos(phase)) + rng.uniform(0, 5, len(i)), 1)
        load = np.round(30 + rng.uniform(0, 60, len(i)), 1)
        soc = np.round(60 + 30 * np.sin(phase - 1.0), 2)
        volts = np.round(12.4 + soc / 100, 3)
        amps = np.round((pv - load) / volts, 2)
        yield ts[keep], seq[keep], n[keep], data[keep], [v[keep] for v in (pv, load, soc, volts, amps)]


def _extras() -> list[StoredSample]:
    """A dropped-readings event for every other gap, and a status with a queue at the end of the year."""
    out = []
    for k, gap_start in enumerate(range(START_MS + 12 * 3_600_000, START_MS + 365 * DAY_MS, GAP_EVERY_MS)):
        if k % 2 == 0:
            first = (gap_start - START_MS) // STEP_MS + 1
            detail = ReadingsLost(stream="energy", reason="dropped", seq_first=first, seq_last=first + GAP_MS // STEP_MS - 1, n=GAP_MS // STEP_MS)
            out.append(StoredSample(CAMPER, Stream.EVENT, gap_start + GAP_MS + 60_000, {"seq": k + 1, "kind": READINGS_LOST_EVENT, "detail": detail.model_dump_json()}))
    end = START_MS + 365 * DAY_MS
    out.append(StoredSample(CAMPER, Stream.STATUS, end + 600_000, {"seq": 1, "state": "online", "queue_depth": 120, "oldest_queued_s": 600.0}))
    return out


def _row(backend: str, what: str, seconds: float) -> None:
    ROWS.append(f"| {backend} | {what} | {seconds:.3f} |")
    print(ROWS[-1], flush=True)


def _timed(run: Callable[[], object]) -> tuple[object, float, float]:
    """The answer, the first run's time and the best of three."""
    times, out = [], None
    for _ in range(3):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    return out, times[0], min(times)


def _measure(backend: str, store: Store, note: str = "") -> None:
    week_edges = cm.day_edges(*WEEK)
    _, first, best = _timed(lambda: store.seq_summary(CAMPER, Stream.ENERGY, week_edges))
    _row(backend, f"seq_summary of a week{note} (first run {first:.3f} s)", best)
    report, first, best = _timed(lambda: cm.completeness(store, CAMPER, *WEEK, now=NOW))
    _row(backend, f"completeness report, a week per day{note} (first run {first:.3f} s)", best)
    _check(report)  # type: ignore[arg-type]
    _, first, best = _timed(lambda: cm.completeness(store, CAMPER, *MONTH, now=NOW))
    _row(backend, f"completeness report, 30 days per day{note} (first run {first:.3f} s)", best)


def _check(report: cm.CompletenessReport) -> None:
    """The week's numbers, as the generator made them."""
    assert len(report.days) == 7 and all(d.taken == sum(getattr(d, c) for c in cm.CAUSES) for d in report.days)
    total = report.total
    gap = GAP_MS // STEP_MS
    assert total.taken == 7 * DAY_MS // STEP_MS
    assert total.folded == 60 * 11  # one folded hour in the week
    assert total.dropped + total.unknown == 2 * gap or total.dropped + total.unknown == 3 * gap
    assert total.offline == 0 and total.device_fault > 100 and total.dropped in (gap, 2 * gap)
    print(cm.render_text(report), flush=True)


@pytest.fixture(scope="module", autouse=True)
def _table() -> Iterator[None]:
    yield
    print("\n| backend | step | seconds |\n|---|---|---|\n" + "\n".join(ROWS), flush=True)


def test_bench_sqlite_completeness(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "bench.sqlite") as store:
        t = time.perf_counter()
        conn = store._conn  # the store's own connection: a bulk load without per-sample checks
        cols = ", ".join(["seq", "readings_n", *FIELDS])
        for ts, seq, n, data, values in _chunks():
            conn.execute("BEGIN")
            rows = zip(
                [CAMPER] * len(ts), ts.tolist(), seq.tolist(), [v or None for v in n.tolist()],
                *([x if d else None for x, d in zip(v.tolist(), data.tolist())] for v in values),
            )
            conn.executemany(f"INSERT INTO energy (camper, ts_ms, {cols}) VALUES (?, ?, ?, ?{', ?' * len(FIELDS)})", rows)
            minutes = np.unique(ts - ts % 60_000).tolist()
            conn.executemany("INSERT OR IGNORE INTO dirty_minute (camper, minute_ms) VALUES (?, ?)", [(CAMPER, m) for m in minutes])
            conn.execute("COMMIT")
        store.write(_extras())
        _row("SQLite", "load a year (6.3 M readings)", time.perf_counter() - t)
        _measure("SQLite", store, ", nothing folded")
        t = time.perf_counter()
        store.rollup()
        _row("SQLite", "rollup() of the year", time.perf_counter() - t)
        _measure("SQLite", store, ", after rollup()")


def test_bench_influxdb_completeness(tmp_path: Path) -> None:
    with _CompactingServer(tmp_path / "influx") as server:
        server.query('CREATE DATABASE "bench"')
        t = time.perf_counter()
        with httpx.Client(base_url=server.url_without_credentials, auth=(server.admin_user, server.admin_password), timeout=120) as http:
            for ts, seq, n, data, values in _chunks():
                lines = []
                for t_ms, s, k, d, *vals in zip(ts.tolist(), seq.tolist(), n.tolist(), data.tolist(), *(v.tolist() for v in values)):
                    fields = ",".join(f"{name}={v!r}" for name, v in zip(FIELDS, vals)) + "," if d else ""
                    lines.append(f"energy,camper={CAMPER} {fields}seq={s}i{f',readings_n={k}i' if k else ''} {t_ms}")
                for j in range(0, len(lines), 5000):
                    r = http.post("/write", params={"db": "bench", "precision": "ms"}, content="\n".join(lines[j : j + 5000]))
                    assert r.status_code == 204, r.text
        with InfluxStore(server.url, database="bench", timeout_s=300) as store:
            store.write(_extras())
            _row("InfluxDB 1.6", "load a year (6.3 M readings)", time.perf_counter() - t)
            server.settle()
            _measure("InfluxDB 1.6", store, ", files compacted")
