"""NMEA 0183 straight from a receiver (no gpsd): the parser, and the reader on a real serial PTY (socat)
and a TCP source, checked against what the test sent and against real receiver captures."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camperhub.edge.config import GpsConfig
from camperhub.edge.gps import GpsFix
from camperhub.edge.nmea import NmeaParser, NmeaReader
from camperhub.edge.transport import parse_transport
from tests.edge.helpers import run
from tests.fixtures.gpsd import capture_lines, fix_sentences, nmea, no_fix_sentences
from tests.fixtures.serial_pty import PtyPair

NMEA_DIR = Path("/work/shared/data/nmea")
T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
T0_MS = 1_795_600_800_000
VARESE = (45.8200, 8.8300)


def ticking(step_ms: int = 100) -> Callable[[], int]:
    """A boot clock that advances ``step_ms`` per reading: sentences of one cycle are close together."""
    c = itertools.count()
    return lambda: 1_000_000 + next(c) * step_ms


def feed(parser: NmeaParser, lines: list[str]) -> list[GpsFix]:
    return [f for line in lines if (f := parser.feed_line(line)) is not None]


# -- the parser ------------------------------------------------------------------------------


def test_one_cycle_gives_one_fix_with_every_field_and_the_rmc_date() -> None:
    p = NmeaParser(boot_clock=ticking())
    # GGA/GSA before the RMC (SiRF order): all of the cycle merges into the fix
    cycle = fix_sentences(T0, *VARESE, alt_m=380.5, speed_kn=10.0, course_deg=90.0, hdop=1.2, sats=8)
    rmc, rest = cycle[0], cycle[1:]
    (fix,) = feed(p, [*rest, rmc])
    assert fix.fix == 3 and fix.time_ms == T0_MS
    assert (fix.lat, fix.lon) == pytest.approx(VARESE, abs=1e-7)
    assert fix.alt_m == pytest.approx(380.5) and fix.speed_kmh == pytest.approx(18.52) and fix.course_deg == 90.0
    assert fix.hdop == pytest.approx(1.2) and fix.sats == 8
    assert fix.position_fields() == {
        "lat": 45.82, "lon": 8.83, "alt_m": 380.5, "speed_kmh": 18.5, "course_deg": 90.0, "hdop": 1.2, "sats": 8, "fix": 3,
    }
    c = p.counters
    assert (c.fixes, c.no_fix, c.bad_checksum, c.malformed) == (1, 0, 0, 0)


def test_rmc_first_takes_the_previous_cycle_and_the_date_rolls_over() -> None:
    p = NmeaParser(boot_clock=ticking())
    late = datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC)
    fixes = feed(p, [*fix_sentences(late, *VARESE, hdop=1.5), *fix_sentences(late + timedelta(seconds=1), *VARESE, hdop=1.5)])
    assert [f.time_ms for f in fixes] == [round(late.timestamp() * 1000), round(late.timestamp() * 1000) + 1000]
    assert fixes[0].hdop is None  # u-blox order, first cycle: nothing of the cycle seen yet
    assert fixes[1].hdop == pytest.approx(1.5) and fixes[1].fix == 3


def test_no_fix_means_no_position_and_no_time() -> None:
    p = NmeaParser(boot_clock=ticking())
    fixes = feed(p, [*fix_sentences(T0, *VARESE), *no_fix_sentences(T0 + timedelta(seconds=1)), *no_fix_sentences(T0 + timedelta(seconds=2))])
    assert [f.fix for f in fixes] == [2, 0, 0]
    assert all(f.lat is None and f.time_ms is None and f.position_fields() is None for f in fixes[1:])
    assert p.counters.no_fix == 2
    # RMC "A" but the receiver's own GSA says no fix (mode 1), and an NMEA 2.3 RMC with mode N
    p = NmeaParser(boot_clock=ticking())
    (fix,) = feed(p, [nmea("GPGSA,A,1,,,,,,,,,,,,,,,"), fix_sentences(T0, *VARESE)[0]])
    assert fix.fix == 0
    (fix,) = feed(NmeaParser(), [nmea("GPRMC,100000.00,A,4549.2000,N,00849.8000,E,0.0,0.0,251126,,,N")])
    assert fix.fix == 0


def test_bad_checksums_and_garbage_are_counted_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    p = NmeaParser(boot_clock=ticking())
    good = fix_sentences(T0, *VARESE)
    rmc = good[0]
    flipped = rmc.replace("4549.2000", "4559.2000")  # a bit flipped on the wire: checksum no longer matches
    assert flipped != rmc
    lines: list[str | bytes] = [
        flipped, rmc[: rmc.index("*")], rmc[:-2] + "ZZ", "hello", "$", "$GPXXX,1,2*00", b"\xff\xfe$GPRMC", "$GPRMC,,,*" + "0" * 300,
    ]
    with caplog.at_level(logging.WARNING, logger="camperhub.edge.nmea"):
        fixes = [f for x in lines if (f := p.feed_line(x)) is not None]
    assert fixes == []
    c = p.counters
    assert c.bad_checksum == 3
    assert c.malformed == 5
    assert c.fixes == 0 and c.sentences == 0
    assert "checksum" in caplog.text
    # and the next good cycle is read as if nothing happened
    assert feed(p, good)[0].lat == pytest.approx(VARESE[0])


def test_a_receiver_without_rmc_gets_fixes_from_gga() -> None:
    p = NmeaParser(boot_clock=ticking(1000))
    gga = [s for s in fix_sentences(T0, *VARESE, alt_m=300.0) if "GGA" in s]
    fixes = feed(p, gga * 6)
    # the first 3 s it waits for an RMC; then every GGA is a fix, without a time (no date without an RMC)
    assert [f.fix for f in fixes] == [3, 3, 3] and all(f.time_ms is None for f in fixes)
    assert fixes[0].alt_m == 300.0 and fixes[0].speed_kmh is None


def test_out_of_range_values_are_dropped_and_counted() -> None:
    p = NmeaParser(boot_clock=ticking())
    (fix,) = feed(p, [nmea("GPGGA,100000.00,4549.2000,N,00849.8000,E,1,08,1.2,99999.0,M,48.0,M,,"),
                      nmea("GPRMC,100000.00,A,4549.2000,N,00849.8000,E,9999.0,90.0,251126,,,A")])
    assert fix.has_fix and fix.alt_m is None and fix.speed_kmh is None
    assert p.counters.out_of_range == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=120), st.text(max_size=120),
                          st.sampled_from(fix_sentences(T0, *VARESE) + no_fix_sentences(T0))), max_size=30))
def test_any_input_is_taken_without_an_exception(lines: list[bytes | str]) -> None:
    p = NmeaParser(boot_clock=ticking())
    for line in lines:
        fix = p.feed_line(line)
        if fix is not None:
            assert fix.fix in (0, 2, 3)
            fields = fix.position_fields()
            assert (fields is None) == (fix.fix == 0)


@pytest.mark.parametrize("name", ["quectel-l76k-nmea.log", "ublox-neo-m9n-nmea.log", "sirfstarv-nmea.log",
                                  "garmin25lp.log", "nmea-rtk.log"])
def test_real_receiver_captures(name: str) -> None:
    """Every fix's position is one that pynmea2, on its own, read from an RMC or GGA of the capture."""
    lines = capture_lines(NMEA_DIR / name)
    p = NmeaParser(boot_clock=ticking(50))
    fixes = feed(p, lines)
    positions = set()
    for line in lines:
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ParseError:
            continue
        if getattr(msg, "sentence_type", "") in ("RMC", "GGA") and getattr(msg, "lat", ""):
            positions.add((round(msg.latitude, 9), round(msg.longitude, 9)))
    with_fix = [f for f in fixes if f.has_fix]
    assert with_fix, p.counters
    assert all((round(f.lat, 9), round(f.lon, 9)) in positions for f in with_fix)  # type: ignore[arg-type]
    assert p.counters.malformed == 0 and p.counters.bad_checksum == 0
    times = [f.time_ms for f in with_fix if f.time_ms is not None]
    assert times == sorted(times)


# -- the reader ------------------------------------------------------------------------------


class Collector:
    def __init__(self, reader: NmeaReader) -> None:
        self.reader = reader
        self.fixes: list[GpsFix] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for fix in self.reader.fixes():
            self.fixes.append(fix)

    async def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            if self.task.done():
                self.task.result()
                raise AssertionError(f"fixes() ended while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; counters {self.reader.counters}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.reader.close()
        await asyncio.wait_for(self.task, 5)


def test_reader_on_a_real_serial_line(serial_pty: PtyPair) -> None:
    """The receiver side of a socat PTY pair gets NMEA (with bad sentences among it); the reader reads the other."""
    cfg = GpsConfig(nmea=f"rtu://{serial_pty.client}?baudrate=9600")

    async def main() -> None:
        col = Collector(NmeaReader.from_config(cfg, backoff_initial_s=0.05))
        await col.wait(lambda: col.reader.is_open, 10, "the port open")  # opening flushes what came before
        fd = os.open(serial_pty.server, os.O_WRONLY | os.O_NOCTTY)
        try:
            for i in range(4):
                at = T0 + timedelta(seconds=i)
                cycle = fix_sentences(at, VARESE[0] + i * 0.0001, VARESE[1])
                bad = cycle[1].replace(",1,08,", ",1,09,")  # a GGA with a wrong checksum
                os.write(fd, ("\r\n".join([bad, "noise", *cycle]) + "\r\n").encode())
                await asyncio.sleep(0.05)
            os.write(fd, ("\r\n".join(no_fix_sentences(T0 + timedelta(seconds=4))) + "\r\n").encode())
            await col.wait(lambda: any(f.fix == 0 for f in col.fixes), 10, "the no-fix cycle")
        finally:
            os.close(fd)
            await col.stop()
        with_fix = [f for f in col.fixes if f.has_fix]
        assert [f.time_ms for f in with_fix] == [T0_MS + i * 1000 for i in range(4)]
        assert [f.lat for f in with_fix] == pytest.approx([VARESE[0] + i * 0.0001 for i in range(4)], abs=1e-7)
        assert col.fixes[-1].fix == 0 and col.fixes[-1].device == str(serial_pty.client)
        c = col.reader.counters
        assert c.bad_checksum == 4 and c.malformed == 4 and c.fixes == 4 and c.no_fix == 1

    run(main(), 30)


def test_a_missing_port_is_retried_until_closed(tmp_path: Path) -> None:
    async def main() -> None:
        reader = NmeaReader(parse_transport(f"rtu://{tmp_path}/ttyGPS?baudrate=4800"), backoff_initial_s=0.02, backoff_max_s=0.05)
        col = Collector(reader)
        await col.wait(lambda: reader.counters.connect_failures >= 3, 10, "three failed attempts")
        await col.stop()
        assert col.fixes == []

    run(main(), 20)


def test_from_config_needs_an_nmea_source() -> None:
    with pytest.raises(ValueError, match="nmea"):
        NmeaReader.from_config(GpsConfig(gpsd="127.0.0.1:2947"))
    with pytest.raises(ValueError, match="rtu"):
        NmeaReader.from_config(GpsConfig(nmea="serial:/dev/ttyUSB1"))
    assert NmeaReader.from_config(GpsConfig(nmea="tcp://127.0.0.1")).transport.port == 2948
