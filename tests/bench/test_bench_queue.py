"""Durable queue benchmarks: bytes written per reading, replay rate, CPU and RSS while replaying.

Run: ``.venv/bin/pytest -m bench -s tests/bench/test_bench_queue.py``. Figures are printed, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.edge.queue import DurableQueue
from tests.edge.offline_helpers import T0_MS, samples
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

#: A merged Victron reading as the agent takes it (every field of two devices).
READING = {
    "pv_voltage_v": 38.42, "pv_current_a": 7.31, "pv_power_w": 280.9, "battery_voltage_v": 13.27, "battery_current_a": 18.4,
    "battery_power_w": 244.2, "battery_soc_pct": 81.3, "battery_temp_c": 24.1, "load_current_a": 2.1, "load_power_w": 27.9,
    "charge_state": "bulk", "pv_yield_today_wh": 1234.5, "load_today_wh": 210.0, "controller_temp_c": 31.0,
}


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def test_bytes_written_per_reading(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite")
    n = 600
    before = _wchar()
    for i in range(n):  # 1 Hz online: one commit a second takes the new reading in and deletes the acked one
        q.put(Stream.ENERGY, {"ts": T0_MS + i * 1000, **READING})
        q.ack([r.id for r in q.lease(Stream.ENERGY, 0, 50, 16384)])
        q.flush()
    online = (_wchar() - before) / n
    before = _wchar()
    for i in range(n):  # offline at 1 Hz: one commit per reading
        q.put(Stream.ENERGY, {"ts": T0_MS + i * 1000, **READING})
        q.flush()
    offline = (_wchar() - before) / n
    before = _wchar()
    for i in range(10_000):  # a burst (many readings per commit)
        q.put(Stream.ENERGY, {"ts": T0_MS + i * 100, **READING})
    q.flush()
    burst = (_wchar() - before) / 10_000
    page_size, pages, free = (q._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count"))  # noqa: SLF001
    stored = (pages - free) * page_size / q.depth
    q.close()
    print(
        f"\nbytes written per reading: online 1 Hz {online:.0f} B (insert + ack in one commit), offline 1 Hz {offline:.0f} B, "
        f"burst {burst:.0f} B; stored per reading {stored:.0f} B -> 30 days at 1 per 5 s = {stored * 17280 * 30 / 2**20:.0f} MB"
    )


PUBLISHER = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from camperhub.edge.config import MqttSettings, QueueConfig
    from camperhub.edge.outbox import QueuedPublisher
    pub = QueuedPublisher("varese-1", MqttSettings(url=sys.argv[2]), QueueConfig(path=Path(sys.argv[1])))
    t0, c0 = time.monotonic(), time.process_time()
    pub.start()
    while pub.queue.depth > 0 and time.monotonic() - t0 < 600:
        time.sleep(0.05)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    pub.stop()
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def test_replay_rate_of_a_day_at_1hz(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    q = DurableQueue(tmp_path / "q.sqlite", max_bytes=2**30)
    for i in range(86_400):
        q.put(Stream.ENERGY, {"ts": T0_MS + i * 1000, **READING})
    q.flush(now_ms=T0_MS)
    q.close()
    with MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/energy")
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(tmp_path / "q.sqlite"), mosquitto.url(camper)],
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            sub.pump_until(lambda: len(samples(sub.messages, "varese-1")) >= 86_400, 600, "a day of readings")
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    fig = json.loads(out)
    rate = 86_400 / fig["elapsed"]
    seqs = [s["seq"] for s in samples(sub.messages, "varese-1")]
    print(
        f"\nreplay of 86,400 readings: {fig['elapsed']:.1f} s, {rate:.0f} readings/s = {rate:.0f}x real time at 1 Hz; "
        f"publisher process CPU {fig['cpu']:.1f} s ({100 * fig['cpu'] / fig['elapsed']:.0f}% of a core), peak RSS {fig['rss_mb']:.0f} MB; "
        f"in order: {seqs == list(range(1, 86_401))}"
    )
