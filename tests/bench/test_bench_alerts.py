"""Alert evaluation cost per camper per round, on SQLite and on InfluxDB.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_alerts.py``
(deselected from the normal run). Each backend (the ``store`` fixture: a
real InfluxDB server started by the fixture) gets 50 campers with their last
hour: energy every 30 s, status every 5 min; every fifth camper has a low
battery, so its alert is open and updated every round (the common steady
state); a second run has every camper's GPS without a fix, so each camper's
status series is read too (the worst case). It times full rounds over the fleet (store reads, state machine,
alerts file; first round shown apart, then best and median of 5) and, apart,
the part that does not touch the telemetry store (checks already read), and
prints ms per camper. It checks that exactly the low-battery campers have an
open alert; nothing here asserts a speed.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.fleet.alerts import Observation
from camperhub.fleet.alerts_rules import AlertKind, AlertSettings
from camperhub.fleet.alerts_service import AlertService
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.store.base import Store, StoredSample

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

CAMPERS = [f"bench-{i:02d}" for i in range(50)]
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
ROUNDS = 5


def _load(store: Store, gps_fix: int) -> None:
    samples: list[StoredSample] = []
    start = NOW - timedelta(hours=1)
    for n, camper in enumerate(CAMPERS):
        soc = 12.0 if n % 5 == 0 else 75.0
        for i in range(120):
            ts = int((start + timedelta(seconds=30 * i)).timestamp() * 1000)
            samples.append(StoredSample(camper, Stream.ENERGY, ts, {"seq": i + 1, "battery_soc_pct": soc, "battery_temp_c": 21.5,
                                                                 "pv_power_w": 180.0, "load_power_w": 40.0}))
        for i in range(13):
            ts = int((start + timedelta(minutes=5 * i)).timestamp() * 1000)
            samples.append(StoredSample(camper, Stream.STATUS, ts, {"seq": i + 1, "state": "online", "gps_fix": gps_fix, "clock": "gps",
                                                                 "queue_depth": 0}))
    for lo in range(0, len(samples), 5000):
        store.write(samples[lo:lo + 5000])


@pytest.mark.parametrize("gps_fix", [3, 0], ids=["healthy", "no-fix"])
def test_bench_alert_evaluation_per_camper(store: Store, tmp_path: Path, gps_fix: int) -> None:
    """``healthy``: two ``latest`` queries per camper; ``no-fix``: every camper's GPS lost its fix,
    so each also reads its status series (the worst case: since when)."""
    backend = type(store).__name__
    _load(store, gps_fix)
    service = AlertService(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    service.run_round(store, NOW - timedelta(minutes=3))  # the debounce starts
    t = time.perf_counter()
    first = service.run_round(store, NOW)
    first_s = time.perf_counter() - t
    assert first.campers == len(CAMPERS) and first.skipped is None
    times = []
    for r in range(ROUNDS):
        t = time.perf_counter()
        service.run_round(store, NOW + timedelta(seconds=30 * (r + 1)))
        times.append(time.perf_counter() - t)
    opened = sorted(a.camper for a in service.repository.open_alerts() if a.kind == AlertKind.LOW_SOC)
    assert opened == CAMPERS[::5]
    no_fix = sorted(a.camper for a in service.repository.open_alerts() if a.kind == AlertKind.GPS_NO_FIX)
    assert no_fix == (CAMPERS if gps_fix == 0 else [])
    assert len(service.repository.open_alerts()) == len(opened) + len(no_fix)

    # the same rounds without the telemetry store: checks from observations read once
    ev = service.evaluator
    observations = {c: Observation.read(store, c, NOW, ev.window) for c in CAMPERS}
    pure = []
    for r in range(ROUNDS):
        now = NOW + timedelta(seconds=30 * (ROUNDS + r + 1))
        t = time.perf_counter()
        with ev.repository.session():  # as run_round does: one transaction per round
            for c in CAMPERS:
                ev.apply(c, ev.checks(observations[c]), now)
        pure.append(time.perf_counter() - t)

    per = 1000 / len(CAMPERS)
    print(f"\n| alerts, {len(CAMPERS)} campers, {backend}, {'healthy' if gps_fix else 'all without GPS fix'} | ms/camper | round ms |")
    print("|---|---|---|")
    print(f"| first round (opens {len(opened) + len(no_fix)} alerts) | {first_s * per:.2f} | {first_s * 1000:.0f} |")
    print(f"| steady round, best of {ROUNDS} | {min(times) * per:.2f} | {min(times) * 1000:.0f} |")
    print(f"| steady round, median | {statistics.median(times) * per:.2f} | {statistics.median(times) * 1000:.0f} |")
    print(f"| of which without store reads, best | {min(pure) * per:.2f} | {min(pure) * 1000:.0f} |")
