"""Battery analytics over a year of one-minute data, on both backends.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_battery.py`` (deselected
from the normal run). For each backend it loads 365 days of one camper at one reading a
minute (525,600 readings: PV on a day curve, a load with evening bursts, the battery's
current, voltage, SoC, temperature and two cell voltages, charge state; the battery
fading 0.5 % a month), folds the per-minute rollups (as the ingest does every minute)
and times:

* :func:`battery_summary` (the fleet overview's line per camper): cold (no cache), warm
  (cache past its TTL: only what came after the last full charge is searched) and cached
  (within the TTL); median of 50 calls each after the cold one;
* :func:`battery_report` over the year (best of three, the first shown): 15-minute means
  for the year plus the last 14 days at one minute for the internal resistance (what
  battery.choose_every picks for a window beyond 35 days).

It prints a Markdown table; it checks the cycles and the SoH against the generator;
nothing here asserts a speed.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from camperhub.contract import Stream
from camperhub.fleet.battery import SummaryCache, battery_report, battery_summary
from camperhub.store.base import Store, StoredSample
from camperhub.store.sqlite import SqliteStore

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

CAMPER = "bench-battery"
START = datetime(2025, 1, 1, tzinfo=UTC)
N = 365 * 1440
NAMEPLATE_AH = 200.0
ROWS: list[str] = []


def generate() -> tuple[dict[str, np.ndarray], float]:
    """A year of per-minute readings; the Ah the battery discharged."""
    minutes = np.arange(N)
    day = minutes // 1440
    hour = (minutes % 1440) / 60.0
    season = np.cos(2 * np.pi * (day - 172) / 365.0)  # 1 at midsummer
    half_len = 5.0 + 2.5 * season
    pv_w = np.where(np.abs(hour - 12.0) < half_len, 340.0 * (0.75 + 0.25 * season) * np.cos(np.pi / 2 * (hour - 12.0) / half_len), 0.0)
    pv_w *= 0.6 + 0.4 * np.random.default_rng(7).random(365)[day]  # cloudy and sunny days
    load_w = 60.0 + np.where((hour >= 18) & (hour < 22), 90.0, 0.0) + np.where((hour >= 19) & (hour < 19.25), 500.0, 0.0)
    cap_ah = NAMEPLATE_AH * (1 - 0.005 * day / 30.4375)
    volts = np.empty(N)
    amps = np.empty(N)
    soc = np.empty(N)
    s = 70.0
    for k in range(N):
        v = 12.9 + 0.01 * (s - 50) / 5
        a = (pv_w[k] - load_w[k]) / v
        if s >= 100.0 and a > 0:
            a = 0.0
        if s <= 10.0 and a < 0:
            a = 0.0
        s = min(100.0, max(10.0, s + a / 60.0 / cap_ah[k] * 100.0))
        amps[k], soc[k], volts[k] = a, s, v + 0.006 * a
    temp = 15.0 + 12.0 * season + 5.0 * np.sin(2 * np.pi * (hour - 9) / 24)
    cols = {
        "battery_current_a": np.round(amps, 3), "battery_voltage_v": np.round(volts, 3), "battery_soc_pct": np.round(soc, 2),
        "battery_temp_c": np.round(temp, 1), "cell_voltage_max_v": np.round(volts / 4 + 0.006, 3),
        "cell_voltage_min_v": np.round(volts / 4 - 0.006 + np.minimum(amps, 0) * 0.0004, 3),
    }
    states = np.where(soc >= 100.0, "float", np.where(amps > 0, "bulk", "off"))
    cols["charge_state"] = states.astype(object)
    return cols, float(-np.clip(amps, None, 0).sum() / 60.0)


def load(store: Store, cols: dict[str, np.ndarray]) -> None:
    t0_ms = int(START.timestamp() * 1000)
    names = list(cols)
    values = [cols[n].tolist() for n in names]
    batch: list[StoredSample] = []
    for k in range(N):
        fields: dict[str, object] = {"seq": k + 1}
        for name, col in zip(names, values):
            fields[name] = col[k]
        batch.append(StoredSample(CAMPER, Stream.ENERGY, t0_ms + k * 60_000, fields))
        if len(batch) == 10_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    while store.rollup(datetime.now(UTC)):
        pass


def _median_ms(fn, n: int = 50) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _bench(name: str, store: Store) -> None:
    cols, discharged_ah = generate()
    t0 = time.perf_counter()
    load(store, cols)
    load_s = time.perf_counter() - t0
    end = START + timedelta(minutes=N)

    t0 = time.perf_counter()
    cold = battery_summary(store, CAMPER, end)
    cold_ms = (time.perf_counter() - t0) * 1000
    assert cold.soc_pct == pytest.approx(cols["battery_soc_pct"][-1])
    cache = SummaryCache(ttl=timedelta(0))  # every call past the TTL: the incremental path
    battery_summary(store, CAMPER, end, cache)
    warm_ms = _median_ms(lambda: battery_summary(store, CAMPER, end, cache))
    cache_hit = SummaryCache()
    battery_summary(store, CAMPER, end, cache_hit)
    hit_ms = _median_ms(lambda: battery_summary(store, CAMPER, end, cache_hit))

    times = []
    report = None
    for _ in range(3):
        t0 = time.perf_counter()
        report = battery_report(store, CAMPER, START, end, nameplate_ah=NAMEPLATE_AH)
        times.append(time.perf_counter() - t0)
    assert report is not None and report.intervals == N // 15  # a year: 15-minute means (battery.choose_every)
    assert report.equivalent_cycles.value == pytest.approx(discharged_ah / NAMEPLATE_AH, rel=0.01)
    # capacity fades 0.5 %/month: measured May-August (swings of 40 points only in summer)
    assert report.soh_trend_pct_per_month.value == pytest.approx(-0.5, abs=0.1)
    assert report.internal_resistance_mohm.value == pytest.approx(6.0, rel=0.05)
    ROWS.append(f"| {name} | {N:,} | {load_s:.0f} s | {cold_ms:.1f} ms | {warm_ms:.1f} ms | {hit_ms:.3f} ms "
                f"| {min(times):.2f} s (first {times[0]:.2f} s) |")
    print("\n| backend | readings (1/min, 365 d) | load + rollup | summary cold | summary warm (median) "
          "| summary cached (median) | report, a year (best of 3) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(ROWS))
    print(f"report figures: cycles {report.equivalent_cycles.value}, SoH {report.soh_pct.value} % "
          f"({report.soh_pct.confidence}), trend {report.soh_trend_pct_per_month.value} %/month, "
          f"R {report.internal_resistance_mohm.value} mΩ, imbalance {report.cell_imbalance_mv.value and report.cell_imbalance_mv.value['latest_p95_mv']} mV")


def test_bench_battery_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = SqliteStore(tmp_path / "store.sqlite")
    try:
        _bench("sqlite", store)
    finally:
        store.close()


def test_bench_battery_influx(influx_store: Store) -> None:
    _bench("influxdb", influx_store)
