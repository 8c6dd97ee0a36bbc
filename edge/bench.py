"""Edge benchmarks (``camperhub bench``); their figures are written in the README.

* ``modbus-requests``: read requests per poll cycle for every register map,
  counted by the simulator (what really went over the wire), side by side with
  the minimum the map's limits allow, computed here by an exhaustive dynamic
  programme independent of the planner.
* ``agent-cpu``: the real agent process polling two simulated devices at 1 Hz
  and publishing to a broker; CPU time and peak resident memory of that
  process, read from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

from camperhub.netutil import free_port
from camperhub.edge.modbus_reader import Bus, DeviceReader
from camperhub.edge.registermap import Function, RegisterMap, available_maps, load_register_map
from camperhub.edge.sim.model import CamperModel, CamperSpec, SimClock
from camperhub.edge.sim.modbus_server import ModbusSimulator, SimulatedDevice
from camperhub.edge.transport import parse_transport


def minimum_requests(rmap: RegisterMap) -> int:
    """Fewest reads that cover every register within max_registers and max_gap (exhaustive DP)."""
    total = 0
    for function in Function:
        regs = sorted((r.address, r.address + r.register_count) for r in rmap.registers if r.function is function)
        if not regs:
            continue

        @cache
        def best(i: int) -> int:
            # registers i.. still to cover; try every j such that regs[i..j] fit in one read
            if i == len(regs):
                return 0
            out = len(regs)
            end = regs[i][1]
            for j in range(i, len(regs)):
                if j > i and regs[j][0] - end > rmap.requests.max_gap:
                    break
                end = max(end, regs[j][1])
                if end - regs[i][0] > rmap.requests.max_registers:
                    break
                out = min(out, 1 + best(j + 1))
            return out

        total += best(0)
    return total


def bench_modbus_requests(cycles: int = 20) -> list[tuple[str, int, float, int]]:
    """(map, registers, measured requests per cycle, minimum) for every shipped map."""
    rows = []
    for name in available_maps():
        rmap = load_register_map(name)
        device = SimulatedDevice(rmap, rmap.link.default_unit)
        transport = parse_transport(f"tcp://127.0.0.1:{free_port()}")
        with ModbusSimulator(transport, [device], CamperModel(CamperSpec())) as sim:
            reader = DeviceReader(name, rmap, Bus(transport, 1.0), device.unit, retries=0)

            async def poll_all() -> None:
                try:
                    for _ in range(cycles):
                        await reader.poll()
                finally:
                    reader.bus.close()

            asyncio.run(poll_all())
            rows.append((name, len(rmap.registers), sim.requests / cycles, minimum_requests(rmap)))
    return rows


def proc_cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` figure in kB (VmRSS: resident now, VmHWM: peak resident)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def bench_agent_cpu(duration_s: float) -> dict[str, float]:
    """Run the agent as its own process for ``duration_s`` at 1 Hz on two devices; measure it."""
    from camperhub.demo import _start_broker

    async def main() -> dict[str, float]:
        mqtt_port, modbus_port = free_port(), free_port()
        broker = await _start_broker(mqtt_port)
        devices = [
            SimulatedDevice(load_register_map("victron-gx-solarcharger"), 226),
            SimulatedDevice(load_register_map("victron-gx-battery"), 225),
        ]
        sim = ModbusSimulator(parse_transport(f"tcp://127.0.0.1:{modbus_port}"), devices, CamperModel(CamperSpec(), SimClock()))
        sim.start()
        with tempfile.TemporaryDirectory(prefix="camperhub-bench-") as tmp:
            cfg = Path(tmp) / "edge.yaml"
            cfg.write_text(
                f"camper: bench-1\nmqtt:\n  url: mqtt://bench-1:x@127.0.0.1:{mqtt_port}\n  protocol: '3.1.1'\n"
                f"devices:\n"
                f"  - map: victron-gx-solarcharger\n    transport: tcp://127.0.0.1:{modbus_port}\n    interval_s: 1\n"
                f"    exclude_fields: [battery_voltage_v, battery_temp_c]\n"
                f"  - map: victron-gx-battery\n    transport: tcp://127.0.0.1:{modbus_port}\n    interval_s: 1\n"
                f"queue:\n  path: {tmp}/queue.sqlite\n"
                # the laptop's clock is right; every reading sent at once (the 1 Hz live mode's traffic)
                f"clock:\n  trust_system: always\nmodes:\n  normal: {{batch_interval_s: 0, compress: false}}\n"
            )
            proc = subprocess.Popen([sys.executable, "-m", "camperhub.cli", "edge", "--config", str(cfg)], stderr=subprocess.DEVNULL)
            try:
                await asyncio.sleep(10)  # start-up (imports) is not the steady state
                cpu0, t0, req0 = proc_cpu_s(proc.pid), time.monotonic(), sim.requests
                await asyncio.sleep(duration_s)
                cpu1, t1, req1 = proc_cpu_s(proc.pid), time.monotonic(), sim.requests
                rss_kb, hwm_kb = proc_status_kb(proc.pid, "VmRSS"), proc_status_kb(proc.pid, "VmHWM")
            finally:
                proc.terminate()
                proc.wait(10)
                sim.stop()
                await broker.shutdown()
        wall = t1 - t0
        return {
            "duration_s": wall,
            "cpu_s": cpu1 - cpu0,
            "cpu_pct_of_one_core": 100 * (cpu1 - cpu0) / wall,
            "rss_mb": rss_kb / 1024,
            "peak_rss_mb": hwm_kb / 1024,
            "requests_per_s": (req1 - req0) / wall,
        }

    return asyncio.run(main())


def run_bench(name: str, duration_s: float = 600.0) -> int:
    """Print a benchmark's figures as a Markdown table (pasted into the README)."""
    if name == "modbus-requests":
        print("| register map | registers | requests per cycle (measured) | minimum the map allows |")
        print("|---|---|---|---|")
        for model, regs, measured, minimum in bench_modbus_requests():
            print(f"| {model} | {regs} | {measured:g} | {minimum} |")
        return 0
    if name == "agent-cpu":
        r = bench_agent_cpu(duration_s)
        print(f"agent polling 2 devices at 1 Hz for {r['duration_s']:.0f} s on {os.cpu_count()} cores ({os.uname().machine}):")
        print(f"  CPU {r['cpu_s']:.2f} s = {r['cpu_pct_of_one_core']:.2f} % of one core")
        print(f"  resident memory {r['rss_mb']:.1f} MB (peak {r['peak_rss_mb']:.1f} MB)")
        print(f"  Modbus requests {r['requests_per_s']:.1f}/s")
        return 0
    raise ValueError(name)
