"""GPS positions straight from an NMEA 0183 receiver, for a camper without gpsd.

``gps: nmea: "rtu:///dev/ttyUSB1?baudrate=9600"`` in the edge config (the
transport URL form of edge/transport.py; ``tcp://host:port`` reads an NMEA
stream over TCP, e.g. ``camperhub simulate --gps``). :class:`NmeaReader` has
the interface of :class:`camperhub.edge.gps.GpsdClient` (``fixes()`` and
``close()``) and yields the same :class:`GpsFix` values, so the agent takes
either.

Sentences are parsed by pynmea2 with checksum verification (a sentence
without a checksum is refused too: on a serial line without one, a flipped bit
would be a wrong position). Of the standard sentences it uses:

* ``RMC``: status (A/V), position, speed, course, and the UTC *date* with the
  time; it closes a receiver cycle, so each RMC yields one fix;
* ``GGA``: altitude, satellites used, HDOP, fix quality (0 = none);
* ``GSA``: fix mode (1 none, 2 = 2D, 3 = 3D), HDOP, satellites used;
* ``VTG``: speed and course when RMC leaves them empty.

GGA/GSA/VTG of the same cycle may come before or after the RMC (SiRF sends
them before, u-blox after), so the RMC takes the freshest ones seen in the
last :data:`MERGE_MAX_AGE_MS` (boot clock), which is at most one cycle old: the
same compromise gpsd makes with its SKY reports. A receiver that sends no RMC
at all (GGA only) gets a fix per GGA, with a time only once an RMC gave a date.

No fix (RMC status V, RMC mode N, GSA mode 1, GGA quality 0) yields
``GpsFix(fix=0)``. Bad checksums, garbage and values outside the contract's
ranges are counted and logged (rate-limited), never raised. A serial port that
is missing or goes away (USB unplugged) is retried with back-off until
:meth:`NmeaReader.close`.

Why no pyserial-asyncio: it is not installed and not needed. pyserial opens and
configures the port (baud rate, raw mode); the event loop then watches the
file descriptor (``loop.add_reader``) and reads it non-blocking, so no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time as dtime
from typing import Any

import pynmea2

from camperhub.contract import MIN_TS_MS
from camperhub.edge.clock import boot_ms
from camperhub.edge.config import GpsConfig
from camperhub.edge.gps import GpsFix, RateLimitedLog, ReconnectingSource, drop_out_of_range, out_of_range
from camperhub.edge.transport import Transport, parse_transport

log = logging.getLogger(__name__)

#: GGA/GSA/VTG older than this (boot-clock ms) are not merged into an RMC: one 1 Hz cycle and some latency.
MERGE_MAX_AGE_MS = 1_500
#: NMEA 0183 caps a sentence at 82 characters; some receivers exceed it a little (long GSV, proprietary).
MAX_LINE_BYTES = 256
READ_CHUNK_BYTES = 4096
KNOTS_TO_KMH = 1.852
#: Empty reads in a row, each after the loop reported the port readable, taken for a hang-up.
SERIAL_EMPTY_READS_HANGUP = 100
#: No RMC for this long (since the last one, or since the first sentence) means the receiver sends
#: none: each GGA then yields a fix.
GGA_ONLY_AFTER_MS = 3_000


@dataclass
class NmeaCounters:
    """What the reader saw; the agent can put these in logs or metrics."""

    sentences: int = 0  # sentences with a good checksum that pynmea2 parsed
    fixes: int = 0  # fixes yielded with a 2D/3D position
    no_fix: int = 0  # fixes yielded without a position
    bad_checksum: int = 0  # sentences whose checksum is wrong or missing
    malformed: int = 0  # lines that are not NMEA, or fields that do not parse
    out_of_range: int = 0  # values outside the contract's ranges (field dropped)
    bad_time: int = 0  # fix times before 2020 (receiver week rollover, unset clock): time dropped
    ignored: int = 0  # valid sentences of types not used (GSV, GLL, proprietary ...)
    reconnects: int = 0  # the port (or TCP source) opened again after the first time
    connect_failures: int = 0  # attempts to open the port that failed

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return dict(self.__dict__)


def _float(value: Any) -> float | None:
    """A field as float; None when empty. ValueError when it is not a number."""
    if value is None or value == "":
        return None
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a finite number")
    return out


class NmeaParser:
    """NMEA sentences in, :class:`GpsFix` out: one fix per receiver cycle. Never raises on bad input.

    Public so a test, or a caller with lines already, can feed it directly.
    """

    def __init__(self, *, boot_clock: Callable[[], int] = boot_ms, device: str | None = None) -> None:
        self.counters = NmeaCounters()
        self.device = device
        self._boot_clock = boot_clock
        self._limit = RateLimitedLog(log)
        self._gga: tuple[int, Any] | None = None  # (boot ms, sentence)
        self._gsa: tuple[int, Any] | None = None
        self._vtg: tuple[int, Any] | None = None
        self._last_rmc_ms: int | None = None
        self._first_ms: int | None = None  # first good sentence: a receiver silent on RMC this long sends none
        self._date: date | None = None  # last date an RMC gave, for GGA-only receivers
        self._had_fix: bool | None = None

    def feed_line(self, line: bytes | str) -> GpsFix | None:
        """Take one line; a GpsFix when it closes a cycle (RMC, or GGA of a receiver without RMC)."""
        if isinstance(line, bytes):
            try:
                text = line.decode("ascii").strip()
            except UnicodeDecodeError:
                self._malformed("ascii", "GPS sent a line that is not ASCII: %.80r", line)
                return None
        else:
            text = line.strip()
        if not text:
            return None
        if not text.startswith(("$", "!")):
            self._malformed("garbage", "GPS sent a line that is not NMEA: %.80r", text)
            return None
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError:
            self.counters.bad_checksum += 1
            self._limit.warn("checksum", "GPS sentence with a wrong or missing checksum: %.80r", text)
            return None
        except (pynmea2.ParseError, ValueError, TypeError, AttributeError):  # unknown type, bad shape
            self._malformed("parse", "GPS sentence pynmea2 cannot parse: %.80r", text)
            return None
        self.counters.sentences += 1
        now = self._boot_clock()
        if self._first_ms is None:
            self._first_ms = now
        kind = getattr(msg, "sentence_type", "")
        try:
            if kind == "RMC":
                return self._rmc(msg, now)
            if kind == "GGA":
                self._gga = (now, msg)
                last = self._last_rmc_ms if self._last_rmc_ms is not None else self._first_ms
                if now - last >= GGA_ONLY_AFTER_MS:
                    return self._gga_only(msg, now)
            elif kind == "GSA":
                self._gsa = (now, msg)
            elif kind == "VTG":
                self._vtg = (now, msg)
            else:
                self.counters.ignored += 1
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            self._malformed("fields", "GPS %s sentence with fields that do not parse (%s): %.80r", kind, exc, text)
        return None

    # -- one cycle ---------------------------------------------------------------

    def _fresh(self, slot: tuple[int, Any] | None, now: int) -> Any:
        if slot is None or now - slot[0] > MERGE_MAX_AGE_MS:
            return None
        return slot[1]

    def _rmc(self, rmc: Any, now: int) -> GpsFix:
        self._last_rmc_ms = now
        gga, gsa, vtg = self._fresh(self._gga, now), self._fresh(self._gsa, now), self._fresh(self._vtg, now)
        stamp = rmc.datestamp
        if isinstance(stamp, date):
            self._date = stamp
        mode_indicator = getattr(rmc, "mode_indicator", None)
        has = rmc.status == "A" and mode_indicator != "N"
        mode = 3 if gga is not None and _float(gga.altitude) is not None else 2
        if gsa is not None and str(gsa.mode_fix_type) in ("1", "2", "3"):
            mode = int(gsa.mode_fix_type)
            has = has and mode >= 2
        if gga is not None and int(gga.gps_qual or 0) == 0 and gsa is None:
            has = False
        lat = lon = None
        if has:
            lat, lon = rmc.latitude, rmc.longitude
            if not rmc.lat or not rmc.lon or out_of_range("lat", lat) or out_of_range("lon", lon):
                self._malformed("latlon", "GPS RMC with status A but position %r %r: treated as no fix", rmc.lat, rmc.lon)
                has = False
        if not has:
            return self._no_fix(now, mode_text=f"RMC status {rmc.status}")
        speed_kn, course = _float(rmc.spd_over_grnd), _float(rmc.true_course)
        speed_kmh = None if speed_kn is None else speed_kn * KNOTS_TO_KMH
        if vtg is not None:
            if speed_kmh is None:
                speed_kmh = _float(vtg.spd_over_grnd_kmph)
            if course is None:
                course = _float(vtg.true_track)
        time_ms = self._time_ms(stamp if isinstance(stamp, date) else None, rmc.timestamp)
        return self._fix(mode, time_ms, now, lat, lon, speed_kmh, course, gga, gsa)

    def _gga_only(self, gga: Any, now: int) -> GpsFix:
        """A receiver that sends no RMC: the GGA is the cycle (no speed or course, time with the last RMC date)."""
        gsa = self._fresh(self._gsa, now)
        if int(gga.gps_qual or 0) == 0 or not gga.lat or not gga.lon:
            return self._no_fix(now, mode_text="GGA quality 0")
        lat, lon = gga.latitude, gga.longitude
        if out_of_range("lat", lat) or out_of_range("lon", lon):
            self._malformed("latlon", "GPS GGA with position %r %r: treated as no fix", gga.lat, gga.lon)
            return self._no_fix(now, mode_text="bad GGA position")
        mode = 3 if _float(gga.altitude) is not None else 2
        vtg = self._fresh(self._vtg, now)
        speed = course = None
        if vtg is not None:
            speed, course = _float(vtg.spd_over_grnd_kmph), _float(vtg.true_track)
        return self._fix(mode, self._time_ms(self._date, gga.timestamp), now, lat, lon, speed, course, gga, gsa)

    def _time_ms(self, day: date | None, clock: Any) -> int | None:
        if day is None or not isinstance(clock, dtime):
            return None
        at = datetime.combine(day, clock.replace(tzinfo=None), tzinfo=UTC)
        ms = round(at.timestamp() * 1000)
        if ms < MIN_TS_MS:
            self.counters.bad_time += 1
            self._limit.warn("time", "GPS time %s is before 2020 (receiver week rollover?): not used", at.isoformat())
            return None
        return ms

    def _fix(self, mode: int, time_ms: int | None, now: int, lat: float, lon: float, speed_kmh: float | None,
             course: float | None, gga: Any, gsa: Any) -> GpsFix:
        alt = _float(gga.altitude) if gga is not None and mode == 3 else None
        hdop = _float(gga.horizontal_dil) if gga is not None else None
        if hdop is None and gsa is not None:
            hdop = _float(gsa.hdop)
        sats: int | None = None
        if gga is not None and gga.num_sats not in (None, ""):
            sats = int(gga.num_sats)
        elif gsa is not None:
            sats = sum(1 for i in range(1, 13) if getattr(gsa, f"sv_id{i:02d}", ""))
        values: dict[str, float | int | None] = {
            "alt_m": alt, "speed_kmh": speed_kmh, "course_deg": course, "hdop": hdop, "sats": sats,
        }
        self.counters.out_of_range += drop_out_of_range(values, self._limit)
        self.counters.fixes += 1
        self._fix_state(True, mode)
        return GpsFix(
            fix=3 if mode == 3 else 2, time_ms=time_ms, boot_ms=now, lat=lat, lon=lon,
            alt_m=values["alt_m"], speed_kmh=values["speed_kmh"], course_deg=values["course_deg"],
            hdop=values["hdop"], sats=None if values["sats"] is None else int(values["sats"]), device=self.device,
        )

    def _no_fix(self, now: int, mode_text: str) -> GpsFix:
        self.counters.no_fix += 1
        self._fix_state(False, mode_text)
        return GpsFix(fix=0, time_ms=None, boot_ms=now, device=self.device)

    def _malformed(self, kind: str, msg: str, *args: object) -> None:
        self.counters.malformed += 1
        self._limit.warn(kind, msg, *args)

    def _fix_state(self, has_fix: bool, what: object) -> None:
        """Log when the receiver gets or loses its fix (not every cycle)."""
        if has_fix == self._had_fix:
            return
        self._had_fix = has_fix
        if has_fix:
            log.info("GPS (NMEA) has a %sD fix", what)
        else:
            log.warning("GPS (NMEA) has no fix (%s)", what)


class NmeaReader(ReconnectingSource):
    """Reads an NMEA receiver on a serial port (or a TCP stream) as :class:`GpsFix` values.

    ``async for fix in reader.fixes(): ...`` runs until :meth:`close` (from
    any task of the same loop) or cancellation; either leaves no file
    descriptor, reader callback or task behind. Not thread-safe.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        boot_clock: Callable[[], int] = boot_ms,
    ) -> None:
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.transport = transport
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.parser = NmeaParser(boot_clock=boot_clock, device=transport.device or str(transport))
        super().__init__()
        self._ever_open = False
        #: True while the port (or TCP source) is open: what arrives from now on is read
        self.is_open = False
        self._close_current: Callable[[], None] | None = None

    @classmethod
    def from_config(cls, cfg: GpsConfig, **kwargs: Any) -> NmeaReader:
        """A reader for the edge config's ``gps: nmea: URL``; ValueError when it names none or is malformed."""
        if cfg.nmea is None:
            raise ValueError("gps: has no nmea: source")
        return cls(parse_transport(cfg.nmea, default_tcp_port=2948), **kwargs)

    @property
    def counters(self) -> NmeaCounters:
        """The parser's counters (bad checksums, garbage, fixes ...) and the reader's (reconnects)."""
        return self.parser.counters

    @property
    def address(self) -> str:
        """The source, for messages."""
        return str(self.transport)

    async def fixes(self) -> AsyncIterator[GpsFix]:
        """A GpsFix per receiver cycle, across reopenings of the port, until :meth:`close` or cancellation."""
        delay = self.backoff_initial_s
        failing_since: float | None = None
        while not self._closed:
            try:
                chunks = await self._open()
            except (OSError, asyncio.TimeoutError) as exc:
                self.counters.connect_failures += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("GPS NMEA source %s not available (%s): retrying with back-off up to %.0f s",
                                self.address, str(exc) or type(exc).__name__, self.backoff_max_s)
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if self._ever_open:
                self.counters.reconnects += 1
            log.info("reading NMEA from %s", self.address)
            self.is_open = True
            self._ever_open, failing_since = True, None
            got_lines = False
            lines = _lines(chunks, self.parser)
            try:
                async for line in lines:
                    got_lines = True
                    fix = self.parser.feed_line(line)
                    if fix is not None:
                        yield fix
            except OSError as exc:
                if not self._closed:
                    log.warning("GPS NMEA source %s lost (%s): reopening", self.address, exc)
            finally:
                self.is_open = False
                await lines.aclose()
                await chunks.aclose()
            if not self._closed:
                delay = self.backoff_initial_s if got_lines else min(delay * 2, self.backoff_max_s)
                failing_since = time.monotonic()
                await self._sleep(delay)

    async def close(self) -> None:
        """Stop :meth:`fixes` (it returns) and close the port; safe to call twice."""
        await super().close()
        if self._close_current is not None:
            self._close_current()

    async def _open(self) -> AsyncIterator[bytes]:
        """Open the source; an async iterator of byte chunks that ends at EOF or :meth:`close`."""
        if self.transport.kind == "tcp":
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.transport.host, self.transport.port), self.connect_timeout_s
            )
            return self._tcp_chunks(reader, writer)
        return self._serial_chunks(_open_serial(self.transport))

    async def _tcp_chunks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncIterator[bytes]:
        self._close_current = writer.close
        try:
            while not self._closed:
                chunk = await reader.read(READ_CHUNK_BYTES)
                if not chunk:
                    if not self._closed:
                        log.warning("GPS NMEA source %s closed the connection: reconnecting", self.address)
                    return
                yield chunk
        finally:
            self._close_current = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serial_chunks(self, port: Any) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        self._close_current = ready.set  # wakes the wait below; the loop then sees _closed
        empty = 0
        try:
            while not self._closed:
                await ready.wait()
                ready.clear()
                if self._closed:
                    return
                try:
                    chunk = os.read(fd, READ_CHUNK_BYTES)
                except BlockingIOError:
                    continue
                if not chunk:
                    # a tty answers "nothing there" with 0 bytes as well as a hang-up does (a PTY whose
                    # termios say VMIN=0); only a long run of empty reads, each after the loop said
                    # "readable", is a hang-up (a vanished USB device raises OSError instead)
                    empty += 1
                    if empty >= SERIAL_EMPTY_READS_HANGUP:
                        log.warning("GPS serial port %s hung up: reopening", self.transport.device)
                        return
                    continue
                empty = 0
                yield chunk
        finally:
            self._close_current = None
            loop.remove_reader(fd)
            port.close()


def _open_serial(transport: Transport) -> Any:
    """Open and configure the serial port with pyserial, non-blocking; OSError when it cannot be opened."""
    import serial  # pyserial, installed with pymodbus[serial]

    s = transport.serial
    try:
        port = serial.Serial(
            # timeout=None sets VMIN=1: with VMIN=0 Linux answers a read with 0 bytes when nothing is
            # there, indistinguishable from a hang-up; with VMIN=1 and O_NONBLOCK it says EAGAIN
            transport.device, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits, timeout=None,
        )
    except (serial.SerialException, ValueError) as exc:
        raise OSError(f"cannot open {transport.device}: {exc}") from exc
    os.set_blocking(port.fileno(), False)
    return port


async def _lines(chunks: AsyncIterator[bytes], parser: NmeaParser) -> AsyncIterator[bytes]:
    """Split a byte stream into lines; an overlong line is dropped whole and counted as malformed."""
    pending = bytearray()
    discarding = False
    async for chunk in chunks:
        pending += chunk
        while (nl := pending.find(b"\n")) >= 0:
            line = bytes(pending[:nl])
            del pending[: nl + 1]
            if discarding:
                discarding = False
                continue
            if len(line) > MAX_LINE_BYTES:
                parser._malformed("long", "GPS sent a line longer than %d bytes: skipped", MAX_LINE_BYTES)
                continue
            yield line
        if len(pending) > MAX_LINE_BYTES:
            parser._malformed("long", "GPS sent a line longer than %d bytes: skipped", MAX_LINE_BYTES)
            pending.clear()
            discarding = True
