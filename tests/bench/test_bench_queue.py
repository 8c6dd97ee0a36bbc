"""Durable queue benchmarks: bytes written per reading, replay rate, CPU and RSS while replaying.

Run: ``.venv/bin/pytest -m bench -s tests/bench/test_bench_queue.py``. Figures are printed, not asserted.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.edge.bench import proc_cpu_s, proc_status_kb
from camperhub.edge.queue import DurableQueue
from tests.edge.test_agent import _victron_sim
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


def _edge_yaml(tmp: Path, url: str, modbus_port: int) -> Path:
    cfg = tmp / "edge.yaml"
    cfg.write_text(textwrap.dedent(f"""
        camper: varese-1
        mqtt: {{url: "{url}"}}
        devices:
          - {{map: victron-gx-solarcharger, transport: "tcp://127.0.0.1:{modbus_port}", interval_s: 1, exclude_fields: [battery_voltage_v, battery_temp_c]}}
          - {{map: victron-gx-battery, transport: "tcp://127.0.0.1:{modbus_port}", interval_s: 1}}
        queue: {{path: "{tmp / 'q.sqlite'}", max_mb: 1024, delete_on: broker}}
        clock: {{trust_system: always}}
        modes: {{normal: {{batch_interval_s: 0, compress: false}}}}
    """))
    return cfg


class _Counter:
    """Counts the energy samples received, parsing each message once (the test process must keep up)."""

    def __init__(self, sub: MqttTestClient) -> None:
        self.sub, self.seen, self.seqs = sub, 0, []

    def __call__(self) -> int:
        new, self.seen = self.sub.messages[self.seen :], len(self.sub.messages)
        self.seqs += [s["seq"] for s in samples(new, "varese-1")]
        return len(self.seqs)


def test_replay_of_a_day_at_1hz_while_live_readings_flow(mosquitto: MosquittoBroker, tmp_path: Path):
    """The real agent process: a 24-hour backlog in its queue, two simulated devices polled at 1 Hz."""
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    q = DurableQueue(tmp_path / "q.sqlite", max_bytes=2**30)
    for i in range(86_400):
        q.put(Stream.ENERGY, {"ts": T0_MS + i * 1000, **READING})
    q.flush(now_ms=T0_MS)
    q.close()
    with _victron_sim() as sim, MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/energy")
        count = _Counter(sub)
        cfg = _edge_yaml(tmp_path, mosquitto.url(camper), sim.listen.port)
        proc = subprocess.Popen([sys.executable, "-m", "camperhub.cli", "edge", "--config", str(cfg)], stderr=subprocess.DEVNULL)
        rss_mb: list[float] = []
        try:
            t0, cpu0 = time.monotonic(), proc_cpu_s(proc.pid)

            def replayed() -> bool:
                rss_mb.append(proc_status_kb(proc.pid, "VmRSS") / 1024)
                return count() >= 86_400

            sub.pump_until(replayed, 600, "the day's backlog")
            t1, cpu1 = time.monotonic(), proc_cpu_s(proc.pid)
            replay_peak = proc_status_kb(proc.pid, "VmHWM") / 1024
            end = t1 + 60
            sub.pump_until(lambda: count() < 0 or time.monotonic() >= end, 90, "a steady minute")
            t2, cpu2 = time.monotonic(), proc_cpu_s(proc.pid)
            steady_rss = proc_status_kb(proc.pid, "VmRSS") / 1024
        finally:
            proc.terminate()
            proc.wait(30)
    seqs = count.seqs
    live = len(seqs) - 86_400
    rate = 86_400 / (t1 - t0)
    print(
        f"\nreplay of 86,400 readings by the agent process while it polls 2 devices at 1 Hz: {t1 - t0:.1f} s = {rate:.0f} readings/s "
        f"= {rate:.0f}x real time; CPU {100 * (cpu1 - cpu0) / (t1 - t0):.0f}% of a core, resident memory peak {replay_peak:.0f} MB "
        f"(median {sorted(rss_mb)[len(rss_mb) // 2]:.0f} MB while replaying); then steady: CPU {100 * (cpu2 - cpu1) / (t2 - t1):.1f}% "
        f"of a core, {steady_rss:.0f} MB; {live} live readings meanwhile; all in order, none twice: {seqs == sorted(set(seqs))} "
        f"and none missing: {set(range(1, 86_401)) <= set(seqs)}"
    )
