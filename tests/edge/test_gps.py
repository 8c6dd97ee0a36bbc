"""The gpsd client against a real gpsd fed NMEA through a PTY (tests/fixtures/gpsd.py).

What gpsd reports is checked against what the test sent: a fix at a known UTC
second, a receiver without a fix, garbage on the serial line, gpsd stopped and
restarted, and real receiver captures (``/work/shared/data/nmea``) whose
sentences pynmea2 parses independently for the expected ranges.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pynmea2
import pytest

from camperhub.edge.config import GpsConfig
from camperhub.edge.gps import GpsdClient, GpsFix, boot_ms, parse_gpsd_address, parse_gpsd_time
from tests.edge.helpers import run
from tests.fixtures.gpsd import GpsdServer, capture_lines, fix_sentences, no_fix_sentences

NMEA_DIR = Path("/work/shared/data/nmea")
#: The contract's example moment: 2026-11-25T10:00:00Z.
T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
T0_MS = 1_795_600_800_000
VARESE = (45.8200, 8.8300)


class Collector:
    """Runs ``client.fixes()`` in a task and keeps every fix; ``stop()`` closes the client and awaits the task."""

    def __init__(self, client: GpsdClient) -> None:
        self.client = client
        self.fixes: list[GpsFix] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for fix in self.client.fixes():
            self.fixes.append(fix)

    async def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            if self.task.done():
                self.task.result()  # raises what killed it
                raise AssertionError(f"fixes() ended while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; counters {self.client.counters}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.client.close()
        await asyncio.wait_for(self.task, 5)


async def feed_until(gpsd: GpsdServer, burst: Callable[[datetime], Iterable[str]], start: datetime,
                     cond: Callable[[], bool], timeout: float = 20, period_s: float = 0.1) -> datetime:
    """Write one receiver cycle a ``period_s`` (a new UTC second each) until ``cond()``; the next second."""
    at = start
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met after feeding {start:%H:%M:%S}..{at:%H:%M:%S}")
        gpsd.write(burst(at))
        at += timedelta(seconds=1)
        await asyncio.sleep(period_s)
    return at


def varese_at(i: int) -> tuple[float, float]:
    """A slightly different position every second, so a fix can be matched to the sentences of its second."""
    return VARESE[0] + i * 0.0001, VARESE[1] + i * 0.0002


def test_fix_at_a_known_utc_second_has_every_field(gpsd: GpsdServer) -> None:
    async def main() -> None:
        col = Collector(GpsdClient(gpsd.host, gpsd.port))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        # gpsd needs a few cycles to learn the receiver's cycle; prime it from 09:59:00
        def burst(at: datetime) -> list[str]:
            i = int((at - T0).total_seconds())
            return fix_sentences(at, *varese_at(i), alt_m=380.5 + i, speed_kn=10.0, course_deg=90.0, hdop=1.2, sats=8)
        nxt = await feed_until(gpsd, burst, T0 - timedelta(seconds=60), lambda: any(f.hdop is not None for f in col.fixes))
        assert nxt <= T0, "priming took more than 60 cycles"
        before = boot_ms()
        await feed_until(gpsd, burst, T0, lambda: any(f.time_ms == T0_MS + 2000 for f in col.fixes))
        await col.stop()

        at_t0 = [f for f in col.fixes if f.time_ms == T0_MS]
        assert at_t0, [f.time_ms for f in col.fixes]
        fix = at_t0[-1]  # gpsd may report a second more than once while it completes the cycle
        assert fix.fix == 3
        assert fix.lat == pytest.approx(VARESE[0], abs=1e-7) and fix.lon == pytest.approx(VARESE[1], abs=1e-7)
        assert fix.alt_m == pytest.approx(380.5, abs=1e-6)
        assert fix.speed_kmh == pytest.approx(10 * 1.852, abs=0.01)
        assert fix.course_deg == pytest.approx(90.0)
        assert fix.hdop == pytest.approx(1.2) and fix.sats == 8
        assert before <= fix.boot_ms <= boot_ms()
        assert fix.clock_offset_ms == T0_MS - fix.boot_ms
        assert fix.position_fields() == {
            "lat": 45.82, "lon": 8.83, "alt_m": 380.5, "speed_kmh": 18.5, "course_deg": 90.0, "hdop": 1.2, "sats": 8, "fix": 3,
        }
        # the next seconds carry their own positions and times
        one = [f for f in col.fixes if f.time_ms == T0_MS + 1000][-1]
        assert (one.lat, one.lon) == pytest.approx(varese_at(1), abs=1e-7) and one.alt_m == pytest.approx(381.5)
        c = col.client.counters
        assert c.fixes == len([f for f in col.fixes if f.has_fix]) and c.malformed == 0 and c.out_of_range == 0

    run(main(), 60)


def test_receiver_without_fix_gives_fix_0_and_is_counted(gpsd: GpsdServer, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        col = Collector(GpsdClient(gpsd.host, gpsd.port))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        nxt = await feed_until(gpsd, lambda at: fix_sentences(at, *VARESE), T0, lambda: any(f.has_fix for f in col.fixes))
        n_before = len(col.fixes)
        # the camper enters a tunnel: RMC status V, GGA quality 0, GSA mode 1
        await feed_until(gpsd, no_fix_sentences, nxt, lambda: col.client.counters.no_fix >= 3)
        await col.stop()
        lost = [f for f in col.fixes[n_before:] if not f.has_fix]
        assert lost and all(f.fix == 0 and f.lat is None and f.time_ms is None for f in lost)
        assert all(f.position_fields() is None for f in lost)
        assert col.client.counters.no_fix == len([f for f in col.fixes if not f.has_fix])

    with caplog.at_level(logging.INFO, logger="camperhub.edge.gps"):
        run(main(), 60)
    assert "GPS has no fix" in caplog.text


def test_garbage_from_the_receiver_does_not_stop_the_fixes(gpsd: GpsdServer) -> None:
    async def main() -> None:
        col = Collector(GpsdClient(gpsd.host, gpsd.port))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        nxt = await feed_until(gpsd, lambda at: fix_sentences(at, *VARESE), T0, lambda: any(f.hdop for f in col.fixes))
        garbage = [
            b"\x00\xff\xfe\x80 binary noise from a loose connector \x1b[2J\r\n",
            b"$GPGGA,100000.00,4549.2000,N,00849.8000,E,1,08,1.2,380.5,M,48.0,M,,*00\r\n",  # wrong checksum
            b"$GPRMC,100000.00,A,45\r\n",  # truncated
            b"$GPGGA," + b"9" * 2000 + b"\r\n",  # overlong
            bytes(range(256)) * 4,
            "$GPRMC,1000∞,A\r\n".encode(),
        ]
        n_before = len(col.fixes)
        for i, junk in enumerate(garbage):
            gpsd.write_raw(junk)
            gpsd.write(fix_sentences(nxt + timedelta(seconds=i), *varese_at(i)))
            await asyncio.sleep(0.1)
        # whatever gpsd made of the noise, good sentences afterwards give good fixes again
        resume = nxt + timedelta(seconds=len(garbage))
        target_ms = int((resume + timedelta(seconds=2)).timestamp() * 1000)
        await feed_until(gpsd, lambda at: fix_sentences(at, *varese_at(7)), resume,
                         lambda: any((f.time_ms or 0) >= target_ms for f in col.fixes))
        await col.stop()
        assert gpsd.running
        after = [f for f in col.fixes[n_before:] if f.has_fix]
        assert after and all(f.time_ms is not None and f.lat is not None for f in after)
        assert all(abs(f.lat - VARESE[0]) < 0.01 and abs(f.lon - VARESE[1]) < 0.01 for f in after if f.lat and f.lon)
        assert (after[-1].lat, after[-1].lon) == pytest.approx(varese_at(7), abs=1e-7)

    run(main(), 90)


def test_reconnects_when_gpsd_stops_and_comes_back(gpsd: GpsdServer, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        col = Collector(GpsdClient(gpsd.host, gpsd.port, backoff_initial_s=0.05, backoff_max_s=0.4))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        nxt = await feed_until(gpsd, lambda at: fix_sentences(at, *VARESE), T0, lambda: any(f.has_fix for f in col.fixes))
        await asyncio.to_thread(gpsd.stop)
        await col.wait(lambda: not col.client.connected and col.client.counters.connect_failures >= 3, 10, "failed reconnects")
        assert not col.task.done()
        await asyncio.to_thread(gpsd.start)
        await col.wait(lambda: col.client.watching, 10, "the WATCH after the restart")
        later = nxt + timedelta(seconds=100)
        later_ms = int(later.timestamp() * 1000)
        await feed_until(gpsd, lambda at: fix_sentences(at, *varese_at(3)), later, lambda: any((f.time_ms or 0) >= later_ms for f in col.fixes))
        await col.stop()
        c = col.client.counters
        assert c.reconnects == 1 and c.connect_failures >= 3
        assert (col.fixes[-1].lat, col.fixes[-1].lon) == pytest.approx(varese_at(3), abs=1e-7)

    with caplog.at_level(logging.INFO, logger="camperhub.edge.gps"):
        run(main(), 90)
    # transient: one warning when gpsd went away, one when unreachable, not one per attempt
    assert caplog.text.count("not reachable") <= 1
    assert "closed the connection" in caplog.text and "connected to gpsd" in caplog.text


def test_client_started_before_gpsd_waits_and_close_cuts_the_back_off_short(gpsd: GpsdServer) -> None:
    gpsd.stop()

    async def main() -> None:
        baseline = asyncio.all_tasks()
        col = Collector(GpsdClient(gpsd.host, gpsd.port, backoff_initial_s=0.05, backoff_max_s=30))
        await col.wait(lambda: col.client.counters.connect_failures >= 4, 10, "failed connects")  # 0.05+0.1+0.2+0.4 s
        t = asyncio.get_running_loop().time()
        await col.stop()  # while sleeping a back-off of seconds
        assert asyncio.get_running_loop().time() - t < 1
        assert col.client.counters.reconnects == 0 and col.fixes == []
        assert asyncio.all_tasks() == baseline

    run(main(), 30)


def test_cancelling_the_consumer_leaves_no_task_or_socket(gpsd: GpsdServer) -> None:
    async def main() -> None:
        baseline = asyncio.all_tasks()
        col = Collector(GpsdClient(gpsd.host, gpsd.port))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        col.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await col.task
        assert not col.client.connected
        assert asyncio.all_tasks() == baseline

    run(main(), 30)


# -- real captures ------------------------------------------------------------


def _expected(path: Path) -> dict[str, object]:
    """What pynmea2 reads in a capture: times of valid fixes, position box, altitude and speed ranges."""
    times: set[int] = set()
    lats: list[float] = []
    lons: list[float] = []
    alts: list[float] = []
    speeds: list[float] = []
    day: date | None = None
    for line in capture_lines(path):
        try:
            msg = pynmea2.parse(line, check=True)
        except (pynmea2.ParseError, ValueError):
            continue
        if isinstance(msg, pynmea2.RMC) and msg.datestamp:
            day = msg.datestamp
            if msg.status == "A":
                speeds.append(float(msg.spd_over_grnd or 0) * 1.852)
        if isinstance(msg, (pynmea2.RMC, pynmea2.GGA)) and (getattr(msg, "status", "A") == "A") and msg.latitude:
            if not isinstance(msg, pynmea2.GGA) or int(msg.gps_qual or 0) > 0:
                lats.append(msg.latitude)
                lons.append(msg.longitude)
        if isinstance(msg, pynmea2.GGA) and msg.altitude is not None and int(msg.gps_qual or 0) > 0:
            alts.append(float(msg.altitude))
        ts = getattr(msg, "timestamp", None)
        if day is not None and ts is not None:
            times.add(round(datetime.combine(day, ts).replace(tzinfo=UTC).timestamp() * 1000))
    return {"times": times, "lats": lats, "lons": lons, "alts": alts, "speeds": speeds}


CAPTURES_WITH_FIX = ["quectel-l76k-nmea.log", "ublox-neo-m9n-nmea.log", "sirfstarv-nmea.log", "nmea-rtk.log"]


@pytest.mark.parametrize("name", CAPTURES_WITH_FIX)
def test_real_capture_replayed_through_gpsd_gives_plausible_fixes(gpsd: GpsdServer, name: str) -> None:
    path = NMEA_DIR / name
    exp = _expected(path)
    lats, lons, alts, speeds, times = exp["lats"], exp["lons"], exp["alts"], exp["speeds"], exp["times"]
    assert isinstance(lats, list) and isinstance(lons, list) and isinstance(alts, list) and isinstance(speeds, list)
    assert isinstance(times, set) and lats

    async def main() -> GpsdClient:
        col = Collector(GpsdClient(gpsd.host, gpsd.port))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        await asyncio.to_thread(gpsd.replay, path)
        await asyncio.sleep(0.5)
        await col.stop()
        fixes = [f for f in col.fixes if f.has_fix]
        assert len(fixes) >= 10, f"{len(col.fixes)} reports, counters {col.client.counters}"
        for f in fixes:
            assert f.lat is not None and f.lon is not None
            assert min(lats) - 1e-6 <= f.lat <= max(lats) + 1e-6 and min(lons) - 1e-6 <= f.lon <= max(lons) + 1e-6, f
            if f.alt_m is not None:
                assert min(alts) - 0.1 <= f.alt_m <= max(alts) + 0.1, f
            if f.speed_kmh is not None:
                assert f.speed_kmh <= max(speeds) + 0.1, f
            assert f.sats is None or 0 <= f.sats <= 64  # gpsd may say 0 used before it saw a GSA
            assert f.hdop is None or 0 < f.hdop < 20
            assert f.position_fields() is not None
        dated = [f for f in fixes if f.time_ms is not None]
        assert all(f.time_ms in times for f in dated), sorted({f.time_ms for f in dated} - times)[:5]
        assert [f.time_ms for f in dated] == sorted(f.time_ms for f in dated)  # type: ignore[type-var]
        if any(line[3:6] == "GSV" for line in capture_lines(path)):  # gpsd 3.22 sends SKY only after GSV
            assert any(f.sats for f in fixes) and any(f.hdop for f in fixes)
        else:
            assert all(f.sats is None and f.hdop is None for f in fixes)
        return col.client

    client = run(main(), 90)
    c = client.counters
    assert c.malformed == 0 and c.out_of_range == 0
    if name == "sirfstarv-nmea.log":  # recorded in February 2019: before the contract's 2020 floor
        assert c.bad_time > 0
    else:
        assert c.bad_time == 0


def test_real_capture_cold_start_gives_fix_0_until_the_receiver_has_a_fix(gpsd: GpsdServer) -> None:
    """Garmin 25LP (2005): RMC status V and GGA quality 0 at first, then a fix."""

    async def main() -> GpsdClient:
        col = Collector(GpsdClient(gpsd.host, gpsd.port))
        await col.wait(lambda: col.client.watching, 10, "the WATCH")
        await asyncio.to_thread(gpsd.replay, NMEA_DIR / "garmin25lp.log")
        await asyncio.sleep(0.5)
        await col.stop()
        first_fix = next(i for i, f in enumerate(col.fixes) if f.has_fix)
        cold = col.fixes[:first_fix]
        assert cold and all(f.fix == 0 and f.position_fields() is None for f in cold)
        fixed = [f for f in col.fixes[first_fix:] if f.has_fix]
        assert all(abs(f.lat - 42.3565) < 0.01 and abs(f.lon - 13.3668) < 0.01 for f in fixed if f.lat and f.lon)
        # gpsd undoes the receiver's GPS week rollover: 2005-03-15 is reported 1024 weeks later
        first = datetime(2005, 3, 15, 12, 3, 27, tzinfo=UTC) + timedelta(weeks=1024)
        assert fixed[0].time_ms == int(first.timestamp() * 1000)
        return col.client

    c = run(main(), 60).counters
    assert c.no_fix > 0 and c.fixes > 0 and c.bad_time == 0 and c.malformed == 0


# -- bad JSON from gpsd (a real TCP peer that misbehaves; gpsd itself never sends it) ----------


def test_malformed_gpsd_json_is_counted_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = {"class": "TPV", "device": "/dev/ttyACM0", "mode": 3, "time": "2026-11-25T10:00:00.000Z",
            "lat": 45.82, "lon": 8.83, "altMSL": 380.5, "speed": 5.0, "track": 90.0}
    lines = [
        b'{"class":"VERSION","release":"3.25","proto_major":3,"proto_minor":15}',
        b"not json at all",
        b'{"class":"TPV","mode":3,"lat":45.8',  # cut
        b"[1, 2, 3]",
        b'{"no class": true}',
        b"\xff\xfe\x00 binary",
        b'{"class":"TPV","mode":"3D"}',
        b'{"class":"TPV","mode":3,"time":"2026-11-25T10:00:01.000Z"}',  # a fix without lat/lon
        b'{"class":"TPV","mode":3,"lat":"north","lon":8.8}',
        b'{"class":"SKY","device":"/dev/ttyACM0","hdop":"good","uSat":7}',
        b'{"class":"ERROR","message":"unrecognized request"}',
        b"x" * 300_000,  # longer than MAX_LINE_BYTES
        json.dumps(good).encode(),
    ]

    async def main() -> GpsdClient:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()  # the WATCH
            writer.write(b"\n".join(lines) + b"\n")
            await writer.drain()
            await reader.read()  # until the client goes
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        col = Collector(GpsdClient("127.0.0.1", port))
        await col.wait(lambda: any(f.has_fix for f in col.fixes), 10, "the good TPV")
        await col.stop()
        server.close()
        await server.wait_closed()
        fixes = col.fixes
        assert [f.fix for f in fixes] == [0, 0, 0, 3]  # mode "3D", no lat/lon, bad lat: no fix, never a crash
        assert fixes[-1].time_ms == T0_MS and fixes[-1].speed_kmh == pytest.approx(18.0) and fixes[-1].sats == 7
        return col.client

    with caplog.at_level(logging.WARNING, logger="camperhub.edge.gps"):
        c = run(main(), 30).counters
    assert c.malformed == 10 and c.gpsd_errors == 1 and c.fixes == 1 and c.no_fix == 3
    assert "not JSON" in caplog.text and "longer than" in caplog.text and "unrecognized request" in caplog.text


def test_handle_line_maps_fields_and_drops_out_of_range_values() -> None:
    clock = iter(range(1000, 100_000, 100))
    client = GpsdClient(boot_clock=lambda: next(clock))
    # gpsd before 3.20: "alt" is MSL, satellites counted from used flags
    assert client.handle_line(json.dumps({"class": "SKY", "hdop": 0.9, "satellites": [{"used": True}, {"used": False}, {"used": True}]})) is None
    fix = client.handle_line(json.dumps({"class": "TPV", "mode": 3, "time": "2026-11-25T10:00:00Z", "lat": 1.5, "lon": -2.5, "alt": 12.0,
                                         "speed": 300.0, "track": 361.0, "eph": 3.0, "ept": 0.005}))
    assert fix is not None and fix.fix == 3 and fix.alt_m == 12.0 and fix.hdop == 0.9 and fix.sats == 2
    assert fix.speed_kmh is None and fix.course_deg is None  # 1080 km/h and 361 deg are not physical
    assert client.counters.out_of_range == 2 and fix.eph_m == 3.0 and fix.ept_s == 0.005
    # a 2D fix has no altitude; a GPS week-rollover date is not a time
    fix2 = client.handle_line('{"class":"TPV","mode":2,"time":"2006-03-12T10:00:00Z","lat":1,"lon":2,"altMSL":5}')
    assert fix2 is not None and fix2.fix == 2 and fix2.alt_m is None and fix2.time_ms is None and client.counters.bad_time == 1
    # SKY too old to belong to this fix is not merged
    stale = GpsdClient(boot_clock=iter([0, 10_000]).__next__)
    stale.handle_line('{"class":"SKY","hdop":1.0,"uSat":9}')
    fix3 = stale.handle_line('{"class":"TPV","mode":3,"lat":1,"lon":2}')
    assert fix3 is not None and fix3.hdop is None and fix3.sats is None


def test_gps_fix_invariants_and_position_fields() -> None:
    with pytest.raises(ValueError):
        GpsFix(fix=3, time_ms=None, boot_ms=0)  # a fix needs a position
    with pytest.raises(ValueError):
        GpsFix(fix=1, time_ms=None, boot_ms=0)  # type: ignore[arg-type]
    hand_made = GpsFix(fix=3, time_ms=T0_MS, boot_ms=5, lat=45.123456789, lon=8.1, alt_m=99_999.0, sats=3)
    assert hand_made.position_fields() == {"lat": 45.1234568, "lon": 8.1, "sats": 3, "fix": 3}
    assert GpsFix(fix=0, time_ms=None, boot_ms=0).position_fields() is None


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:2947", ("127.0.0.1", 2947)), ("localhost", ("localhost", 2947)),
    ("[::1]:2948", ("::1", 2948)), ("[::1]", ("::1", 2947)), (" gps.local:3000 ", ("gps.local", 3000)),
])
def test_parse_gpsd_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_gpsd_address(text) == expected


@pytest.mark.parametrize("text", ["", ":2947", "host:port", "host:70000", "[::1", "[::1]x"])
def test_parse_gpsd_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_gpsd_address(text)


def test_from_config_and_time_parsing() -> None:
    client = GpsdClient.from_config(GpsConfig(gpsd="127.0.0.1:2950"))
    assert (client.host, client.port, client.address) == ("127.0.0.1", 2950, "127.0.0.1:2950")
    with pytest.raises(ValueError, match="no gpsd"):
        GpsdClient.from_config(GpsConfig(nmea="rtu:///dev/ttyAMA0"))
    assert parse_gpsd_time("2026-11-25T10:00:00.000Z") == T0_MS
    assert parse_gpsd_time("2026-11-25T10:00:00.25Z") == T0_MS + 250
    with pytest.raises(ValueError):
        parse_gpsd_time("2026-11-25T10:00:00")  # no zone
