"""The GPS route simulator: the tour it plans, the NMEA it serves, read by the agent's NMEA reader,
by a real gpsd (source ``tcp://``) and started from the command line."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pynmea2
import pytest

from camperhub.edge.gps import GpsdClient, GpsFix
from camperhub.edge.nmea import NmeaReader
from camperhub.edge.position_filter import haversine_m
from camperhub.edge.sim.gps_route import GpsRouteServer, RoutePlan, start_gps_simulator
from camperhub.edge.stops import load_stops
from camperhub.edge.transport import parse_transport
from camperhub.netutil import free_port
from tests.edge.helpers import run
from tests.fixtures.gpsd import GpsdServer
from tests.fixtures.procs import terminate

STOPS = load_stops()


@pytest.fixture(scope="module")
def plan() -> RoutePlan:
    return RoutePlan(STOPS, seed=7)


def test_the_tour_parks_at_every_stop_and_drives_at_town_speed(plan: RoutePlan) -> None:
    visited: list[str] = []
    prev = plan.state_at(0)
    driving_speeds = []
    for t in range(1, int(plan.period_s) + 5):
        s = plan.state_at(t)
        # continuity: no step longer than the speed allows (plus the receiver's wander)
        assert haversine_m(prev.lat, prev.lon, s.lat, s.lon) <= max(prev.speed_kmh, s.speed_kmh) / 3.6 + 3, t
        if s.stop is not None:
            stop = next(x for x in STOPS if x.id == s.stop)
            assert haversine_m(stop.lat, stop.lon, s.lat, s.lon) <= 5 and s.speed_kmh < 1
            if not visited or visited[-1] != s.stop:
                visited.append(s.stop)
        else:
            assert 28 <= s.speed_kmh <= 52
            driving_speeds.append(s.speed_kmh)
        prev = s
    assert visited == [x.id for x in STOPS] + [STOPS[0].id]  # round the tour and back to the first
    dwell = sum(1 for t in range(int(plan.period_s)) if plan.state_at(t).stop == STOPS[0].id)
    assert dwell == pytest.approx(20 * 60, abs=2)
    assert min(driving_speeds) < 40 < max(driving_speeds)  # legs differ
    assert RoutePlan(STOPS, seed=7).state_at(1234.0) == plan.state_at(1234.0)
    assert RoutePlan(STOPS, seed=8).state_at(1234.0) != plan.state_at(1234.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RoutePlan(STOPS[:1])
    with pytest.raises(ValueError, match="tcp"):
        GpsRouteServer("rtu:///dev/ttyS0", RoutePlan(STOPS))
    with pytest.raises(ValueError, match="speed"):
        GpsRouteServer("tcp://127.0.0.1:0", RoutePlan(STOPS), speed=0)


def _check_against_plan(fixes: list[GpsFix], sim: GpsRouteServer) -> None:
    timed = [f for f in fixes if f.has_fix and f.time_ms is not None]
    assert len(timed) >= 10
    for f in timed:
        want = sim.plan.state_at(sim.route_s(datetime.fromtimestamp(f.time_ms / 1000, UTC)))  # type: ignore[operator]
        assert haversine_m(want.lat, want.lon, f.lat, f.lon) < 0.5  # type: ignore[arg-type]
        if f.speed_kmh is not None:
            assert f.speed_kmh == pytest.approx(want.speed_kmh, abs=0.1)
    assert any(f.speed_kmh and f.speed_kmh > 28 for f in timed), "the camper never drove off"
    assert any(f.speed_kmh is not None and f.speed_kmh < 1 for f in timed), "the camper was never parked"


def _start_near_departure(speed: float) -> GpsRouteServer:
    """Parked at the first stop, driving off 4 simulated seconds later."""
    return start_gps_simulator(f"tcp://127.0.0.1:{free_port()}", STOPS, speed=speed, seed=7, offset_s=20 * 60 - 4)


def test_the_agents_nmea_reader_follows_the_route() -> None:
    async def main() -> None:
        sim = _start_near_departure(speed=10)
        reader = NmeaReader(parse_transport(sim.listen), backoff_initial_s=0.05)
        fixes: list[GpsFix] = []

        async def collect() -> None:
            async for fix in reader.fixes():
                fixes.append(fix)
                if len(fixes) >= 25:
                    return

        try:
            await asyncio.wait_for(collect(), 20)
        finally:
            await reader.close()
            sim.stop()
        _check_against_plan(fixes, sim)
        c = reader.counters
        assert c.bad_checksum == 0 and c.malformed == 0 and c.no_fix == 0
        times = [f.time_ms for f in fixes]
        assert times == sorted(times) and len(set(times)) == len(times)

    run(main(), 40)


class TcpSourceGpsd(GpsdServer):
    """The private test gpsd, reading the simulator as a ``tcp://`` source instead of its PTY."""

    def __init__(self, workdir: Path, source: str) -> None:
        super().__init__(workdir)
        self.device = source


@pytest.fixture
def route_and_gpsd(tmp_path: Path) -> Iterator[tuple[GpsRouteServer, GpsdServer]]:
    sim = _start_near_departure(speed=5)
    try:
        with TcpSourceGpsd(tmp_path / "gpsd", sim.listen) as gpsd:
            yield sim, gpsd
    finally:
        sim.stop()


def test_a_real_gpsd_fed_by_the_simulator_reports_fixes_along_the_route(route_and_gpsd: tuple[GpsRouteServer, GpsdServer]) -> None:
    sim, gpsd = route_and_gpsd

    async def main() -> None:
        client = GpsdClient(gpsd.host, gpsd.port)
        fixes: list[GpsFix] = []

        async def collect() -> None:
            async for fix in client.fixes():
                fixes.append(fix)
                if sum(1 for f in fixes if f.has_fix and (f.speed_kmh or 0) > 28) >= 8:
                    return

        try:
            await asyncio.wait_for(collect(), 30)
        finally:
            await client.close()
        _check_against_plan(fixes, sim)
        assert any(f.sats == 9 for f in fixes), "gpsd reported no satellites (GSV/GSA not understood)"
        assert client.counters.malformed == 0

    run(main(), 45)


def test_simulate_gps_from_the_command_line() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "camperhub.cli", "simulate", "--gps", f"tcp://127.0.0.1:{port}", "--speed", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"NMEA on tcp://127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.settimeout(5)
            buf = b""
            deadline = time.monotonic() + 10
            while buf.count(b"\n") < 20 and time.monotonic() < deadline:
                buf += conn.recv(4096)
        lines = buf.decode("ascii").splitlines()[:-1]
        kinds = {pynmea2.parse(x, check=True).sentence_type for x in lines}
        assert {"RMC", "GGA", "GSA", "GSV"} <= kinds
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        terminate(proc)  # type: ignore[arg-type]
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


@pytest.mark.parametrize("args, message", [
    (["--gps", "tcp://127.0.0.1:1", "--stops", "/nonexistent/stops.yaml"], "cannot read file"),
    (["--gps", "rtu:///dev/ttyS0"], "tcp://host:port only"),
    ([], "--map and --listen are required"),
])
def test_simulate_gps_refuses_bad_arguments(args: list[str], message: str) -> None:
    res = subprocess.run([sys.executable, "-m", "camperhub.cli", "simulate", *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and message in res.stderr, res.stderr
