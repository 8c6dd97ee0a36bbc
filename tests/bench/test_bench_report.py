"""A month's workshop handout (HTML, then PDF by headless Chromium), on both backends.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_report.py``
(deselected from the normal run). For each backend it loads 30 days of one
camper at one reading every 10 s (259,200 readings: PV on a clear-sky-like
day curve, a load, the battery and its charge), folds the per-minute rollups
(as the ingest does every minute) and times :func:`build_handout` over the 30
days (best of three, the first run shown too) and the print to PDF by the
Debian chromium. It prints a Markdown table; it checks the handout's days and
PV energy against the generator; nothing here asserts a speed.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.store.base import Store, StoredSample
from camperhub.store.sqlite import SqliteStore
from camperhub.workshops.report import build_handout, find_pdf_engine, html_to_pdf

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

CAMPER = "bench-report"
FIRST, LAST = date(2026, 6, 1), date(2026, 6, 30)
START = datetime(2026, 5, 31, 22, 0, tzinfo=UTC)  # 1 June 00:00 in Europe/Rome
STEP_S = 10
N = 30 * 86_400 // STEP_S
ROWS: list[str] = []


def _pv_w(t: datetime) -> float:
    """A clear-sky-like bell of PV power, 05:00-19:00 UTC, peaking at 340 W."""
    h = t.hour + t.minute / 60 + t.second / 3600
    return max(0.0, 340.0 * math.sin(math.pi * (h - 5.0) / 14.0)) if 5.0 <= h <= 19.0 else 0.0


def load(store: Store) -> float:
    """Write the month; the PV energy the generator put in (Wh)."""
    pv_wh = 0.0
    soc = 60.0
    batch: list[StoredSample] = []
    for k in range(N):
        t = START + timedelta(seconds=k * STEP_S)
        pv = _pv_w(t)
        ld = 70.0 + 30.0 * ((k // 360) % 3)
        bat = pv - ld
        soc = min(100.0, max(10.0, soc + bat * STEP_S / 3600 / 2560 * 100))
        pv_wh += pv * STEP_S / 3600
        batch.append(StoredSample(CAMPER, Stream.ENERGY, int(t.timestamp() * 1000), {
            "seq": k + 1, "pv_power_w": pv, "load_power_w": ld, "battery_power_w": bat, "battery_soc_pct": round(soc, 2),
            "shore_power": False}))
        if len(batch) == 10_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    while store.rollup(START + timedelta(days=40)):
        pass
    return pv_wh


def _bench(name: str, store: Store, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    pv_wh = load(store)
    load_s = time.perf_counter() - t0
    times = []
    handout = None
    for _ in range(3):
        t0 = time.perf_counter()
        handout = build_handout(store, CAMPER, FIRST, LAST, "it")
        times.append(time.perf_counter() - t0)
    assert handout is not None and len(handout.days) == 30
    assert handout.totals.pv_wh == pytest.approx(pv_wh, rel=0.01)
    engine = find_pdf_engine()
    assert engine is not None, "chromium not found: install Debian's chromium"
    t0 = time.perf_counter()
    out = tmp_path / f"{name}.pdf"
    html_to_pdf(handout.html, out, engine)
    pdf_s = time.perf_counter() - t0
    assert out.read_bytes().startswith(b"%PDF")
    ROWS.append(f"| {name} | {N:,} | {load_s:.1f} s | {min(times):.2f} s (first {times[0]:.2f} s) | {pdf_s:.2f} s "
                f"| {len(handout.html) / 1024:.0f} KiB / {out.stat().st_size / 1024:.0f} KiB |")
    print("\n| backend | readings | load + rollup | handout HTML, 30 days (best of 3) | PDF (chromium) | sizes HTML / PDF |")
    print("|---|---|---|---|---|---|")
    print("\n".join(ROWS))


def test_bench_month_handout_sqlite(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    try:
        _bench("sqlite", store, tmp_path)
    finally:
        store.close()


def test_bench_month_handout_influx(influx_store: Store, tmp_path: Path) -> None:
    _bench("influxdb", influx_store, tmp_path)
