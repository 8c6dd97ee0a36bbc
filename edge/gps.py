"""GPS positions from gpsd: an asyncio client of gpsd's JSON protocol over TCP.

The agent asks gpsd (``gps: gpsd: 127.0.0.1:2947`` in the edge config) for
reports with ``?WATCH={"enable":true,"json":true};`` and reads one JSON
object a line. It uses two classes of report (gpsd_json(5)):

* ``TPV`` (time-position-velocity): ``mode`` (0/1 no fix, 2 = 2D, 3 = 3D),
  ``time``, ``lat``, ``lon``, ``altMSL`` (``alt`` before gpsd 3.20),
  ``speed`` (m/s), ``track``, ``ept``/``eph``;
* ``SKY``: ``hdop`` and the satellites used (``uSat``, or the count of
  ``used: true`` in ``satellites`` for gpsd before 3.20).

Each TPV becomes one :class:`GpsFix`, carrying the freshest SKY values seen
from the same device in the last 5 s (gpsd sends SKY after the TPV of a
cycle, so a TPV gets the previous cycle's; gpsd 3.22, as in Debian 12 and
Raspberry Pi OS Bookworm, sends no SKY at all for a receiver without GSV
sentences, and then hdop and sats are absent rather than waited for). The
moment a TPV arrives is taken with ``CLOCK_BOOTTIME``: on a Pi without a
real-time clock the agent uses ``time_ms - boot_ms`` as the offset of UTC to
the time since boot (``camperhub.edge.clock``).

Why hand-written rather than a library: gpsd's own Python client (``gps``,
Debian's python3-gps) is blocking, and its asyncio variant ``gps.aiogps``
ships with the system package, outside the agent's virtualenv; ``gpsdclient``
(PyPI) is a blocking socket generator without reconnection; the small asyncio
wrappers on PyPI (``asyncio-gpsd-client``, ``gpsd-client-async``) neither
reconnect nor count bad input and would still need the mapping to the
contract below. The protocol part is one request line and ``json.loads`` per
line; what matters here (reconnecting with back-off, counters, validation to
the contract's ranges, the boot-time stamp) is ours either way. No new
dependency.

Bad input never stops the client: a line that is not JSON, a report of the
wrong shape, a value out of the contract's range or a time before 2020 is
logged (rate-limited), counted and skipped. gpsd being down or closing the
connection is transient: logged once per outage, counted, retried with
exponential back-off until :meth:`GpsdClient.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self

from camperhub.contract import MIN_TS_MS, Stream, field_specs
from camperhub.edge.clock import boot_ms
from camperhub.edge.config import GpsConfig

log = logging.getLogger(__name__)

DEFAULT_PORT = 2947
#: Ask for JSON reports (not raw NMEA); gpsd answers with VERSION, DEVICES and WATCH, then reports.
WATCH_REQUEST = b'?WATCH={"enable":true,"json":true};\n'
#: A SKY older than this (boot-clock milliseconds) is not merged into a TPV.
SKY_MAX_AGE_MS = 5_000
#: Longest report line accepted; gpsd's SKY with every constellation in view is a few kB.
MAX_LINE_BYTES = 256 * 1024
READ_CHUNK_BYTES = 64 * 1024
#: Repeated bad-input messages of one kind are logged at most this often.
LOG_EVERY_S = 60.0
MS_TO_KMH = 3.6

FixMode = Literal[0, 2, 3]


#: The contract's plausibility ranges of the position fields (camperhub.contract.PositionSample).
POSITION_RANGES: dict[str, tuple[float, float]] = {
    name: (spec.minimum, spec.maximum) for name, spec in field_specs(Stream.POSITION).items()
}
#: Decimals kept per field when publishing: 1e-7 deg is about 1 cm; more only costs 4G bytes.
_DECIMALS: dict[str, int] = {"lat": 7, "lon": 7, "alt_m": 1, "speed_kmh": 1, "course_deg": 1, "hdop": 2}


def out_of_range(name: str, value: float | None) -> bool:
    """True when ``value`` is present and outside the contract's range for position field ``name``."""
    if value is None or name not in POSITION_RANGES:
        return False
    lo, hi = POSITION_RANGES[name]
    return not lo <= value <= hi


@dataclass(frozen=True)
class GpsFix:
    """One TPV report of gpsd, in contract units, with the SKY values of the same device merged in.

    ``fix`` is 0 when the receiver has no fix (TPV mode 0 or 1): the agent
    must learn that the GPS lost its fix, so such reports are fixes too.
    Invariant: ``fix`` is 2 or 3 exactly when ``lat`` and ``lon`` are known.
    ``time_ms`` is the fix's UTC time; None without a fix (a receiver's clock
    is not trustworthy before it has one) or when it is before 2020.
    ``boot_ms`` is ``CLOCK_BOOTTIME`` when the report arrived.
    """

    fix: FixMode
    time_ms: int | None
    boot_ms: int
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    hdop: float | None = None
    sats: int | None = None
    #: gpsd's estimated errors: horizontal position [m] and time [s] (not contract fields; for diagnostics)
    eph_m: float | None = None
    ept_s: float | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.fix not in (0, 2, 3):
            raise ValueError(f"fix must be 0, 2 or 3, not {self.fix!r}")
        if (self.fix >= 2) != (self.lat is not None and self.lon is not None):
            raise ValueError("a fix (2 or 3) needs lat and lon, and no fix (0) has none")

    @property
    def has_fix(self) -> bool:
        """True for a 2D or 3D fix."""
        return self.fix >= 2

    @property
    def clock_offset_ms(self) -> int | None:
        """UTC minus time since boot when this report arrived (None without a fix time)."""
        return None if self.time_ms is None else self.time_ms - self.boot_ms

    def position_fields(self) -> dict[str, float | int] | None:
        """The contract's ``position`` fields of this fix, absent ones omitted; None without a fix.

        Values are rounded to what is worth sending over 4G and checked
        against the contract's ranges; :class:`GpsdClient` already drops and
        counts out-of-range values, so a drop here only happens for a fix
        built by hand, and is logged.
        """
        if self.lat is None or self.lon is None or self.fix < 2:
            return None
        values: dict[str, float | int | None] = {
            "lat": self.lat, "lon": self.lon, "alt_m": self.alt_m, "speed_kmh": self.speed_kmh,
            "course_deg": self.course_deg, "hdop": self.hdop, "sats": self.sats,
        }
        out: dict[str, float | int] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name in _DECIMALS:
                value = round(float(value), _DECIMALS[name])
            if out_of_range(name, value):
                if name in ("lat", "lon"):
                    log.warning("GPS fix with %s=%r outside the contract's range: position not published", name, value)
                    return None
                log.warning("GPS fix with %s=%r outside the contract's range %s: field dropped", name, value, POSITION_RANGES[name])
                continue
            out[name] = value
        out["fix"] = self.fix
        return out


@dataclass
class GpsCounters:
    """What the client saw; the agent can put these in logs or metrics."""

    fixes: int = 0  # TPV reports with a 2D/3D fix
    no_fix: int = 0  # TPV reports without a fix (mode 0/1), or with a fix but no usable lat/lon
    malformed: int = 0  # lines that are not JSON objects, reports or values of the wrong shape
    out_of_range: int = 0  # values outside the contract's ranges (field dropped)
    bad_time: int = 0  # fix times before 2020 (receiver week rollover, unset clock): time dropped
    reconnects: int = 0  # connections established after the first one (gpsd restarted, closed, was down)
    connect_failures: int = 0  # attempts that did not reach gpsd
    gpsd_errors: int = 0  # ERROR reports from gpsd (e.g. refused request)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return dict(self.__dict__)


def drop_out_of_range(values: dict[str, float | int | None], limit: "RateLimitedLog") -> int:
    """Set position fields outside the contract's range to None (logged, rate-limited); how many were dropped."""
    dropped = 0
    for name, value in values.items():
        if out_of_range(name, value):
            dropped += 1
            limit.warn("range-" + name, "GPS %s=%r outside the contract's range %s: dropped", name, value, POSITION_RANGES[name])
            values[name] = None
    return dropped


class RateLimitedLog:
    """Log the first occurrence of each kind of problem, then at most once per LOG_EVERY_S with a count.

    A receiver spewing garbage at 10 lines a second must not fill the SD card with the same warning.
    """

    def __init__(self, logger: logging.Logger, every_s: float = LOG_EVERY_S) -> None:
        self.logger, self.every_s = logger, every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        self.logger.warning(msg + (f" ({n} more like it not logged)" if n else ""), *args)


class ReconnectingSource:
    """What the GPS sources share: a back-off wait that :meth:`close` cuts short, ``async with``."""

    def __init__(self) -> None:
        self._closed = False
        self._wake = asyncio.Event()

    async def close(self) -> None:
        """Stop reading; safe to call twice (subclasses close their connection too)."""
        self._closed = True
        self._wake.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _sleep(self, seconds: float) -> None:
        """Back-off wait that :meth:`close` cuts short."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


def parse_gpsd_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or a bare host (port 2947) into (host, port); ValueError when malformed."""
    text = address.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"gpsd address {address!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"gpsd address {address!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ValueError(f"gpsd address {address!r}: empty host")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"gpsd address {address!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"gpsd address {address!r}: port {port} out of range")
    return host, port


def parse_gpsd_time(text: str) -> int:
    """gpsd's ISO 8601 UTC time (``2026-11-25T10:00:00.000Z``) in Unix epoch ms; ValueError when malformed."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone (gpsd sends UTC with Z)")
    return round(dt.timestamp() * 1000)


def _number(obj: Mapping[str, Any], key: str, problems: list[str]) -> float | None:
    """A finite number under ``key``, None when absent; a value of another type is noted in ``problems``."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"{key}={value!r}")
        return None
    return float(value)


class GpsdClient(ReconnectingSource):
    """Reads gpsd's reports as :class:`GpsFix` values, reconnecting for as long as it runs.

    ``async for fix in client.fixes(): ...`` runs until :meth:`close` (from any
    task of the same loop) or cancellation; either leaves no task or socket
    behind. Not thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        sky_max_age_ms: int = SKY_MAX_AGE_MS,
        boot_clock: Callable[[], int] = boot_ms,
    ) -> None:
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.host, self.port = host, port
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.sky_max_age_ms = sky_max_age_ms
        self._boot_clock = boot_clock
        self.counters = GpsCounters()
        self.gpsd_version: str | None = None
        #: True once gpsd confirmed the WATCH on the current connection (reports flow from then on)
        self.watching = False
        super().__init__()
        self._writer: asyncio.StreamWriter | None = None
        self._ever_connected = False
        self._lines = 0  # lines received on the current connection
        self._had_fix: bool | None = None
        self._sky: dict[str, tuple[int, float | None, int | None]] = {}  # device -> (boot_ms, hdop, sats)
        self._limit = RateLimitedLog(log)

    @classmethod
    def from_config(cls, cfg: GpsConfig, **kwargs: Any) -> GpsdClient:
        """A client for the edge config's ``gps: gpsd: host:port``; ValueError when it names no gpsd."""
        if cfg.gpsd is None:
            raise ValueError("gps: has no gpsd: address (gps: nmea: is not read by the gpsd client)")
        host, port = parse_gpsd_address(cfg.gpsd)
        return cls(host, port, **kwargs)

    @property
    def address(self) -> str:
        """``host:port`` of gpsd, for messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """True while a connection to gpsd is open."""
        return self._writer is not None

    async def fixes(self) -> AsyncIterator[GpsFix]:
        """Every TPV report as a GpsFix, across reconnections, until :meth:`close` or cancellation."""
        delay = self.backoff_initial_s
        failing_since: float | None = None
        while not self._closed:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout_s
                )
            except (OSError, asyncio.TimeoutError) as exc:
                self.counters.connect_failures += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "gpsd at %s not reachable (%s): retrying with back-off up to %.0f s",
                        self.address, str(exc) or type(exc).__name__, self.backoff_max_s,
                    )
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if self._ever_connected:
                self.counters.reconnects += 1
            if failing_since is not None:
                log.info("connected to gpsd at %s after %.1f s", self.address, time.monotonic() - failing_since)
            else:
                log.info("connected to gpsd at %s", self.address)
            self._ever_connected, failing_since = True, None
            self._writer, self._lines = writer, 0
            try:
                writer.write(WATCH_REQUEST)
                await writer.drain()
                async for fix in self._reports(reader):
                    yield fix
            except OSError as exc:
                if not self._closed:
                    log.warning("connection to gpsd at %s lost (%s): reconnecting", self.address, exc)
            finally:
                self._writer, self.watching = None, False
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if not self._closed:
                # a gpsd that accepts and hangs up at once must not be hammered: back off
                # unless this connection delivered reports
                delay = self.backoff_initial_s if self._lines else min(delay * 2, self.backoff_max_s)
                failing_since = time.monotonic()
                await self._sleep(delay)

    async def close(self) -> None:
        """Stop :meth:`fixes` (it returns) and close the connection; safe to call twice."""
        await super().close()
        writer = self._writer
        if writer is not None:
            writer.close()

    async def _reports(self, reader: asyncio.StreamReader) -> AsyncIterator[GpsFix]:
        """Split the stream into lines ourselves, so an overlong line is dropped whole (not in pieces)."""
        pending = bytearray()
        discarding = False  # inside a line that was already too long
        while not self._closed:
            chunk = await reader.read(READ_CHUNK_BYTES)
            if not chunk:
                if not self._closed:
                    log.warning("gpsd at %s closed the connection: reconnecting", self.address)
                return
            pending += chunk
            while (nl := pending.find(b"\n")) >= 0:
                line = bytes(pending[:nl])
                del pending[: nl + 1]
                if discarding:
                    discarding = False
                    continue
                self._lines += 1
                if len(line) > MAX_LINE_BYTES:
                    self._too_long()
                    continue
                fix = self.handle_line(line)
                if fix is not None:
                    yield fix
            if len(pending) > MAX_LINE_BYTES:
                self._too_long()
                pending.clear()
                discarding = True

    def _too_long(self) -> None:
        self.counters.malformed += 1
        self._limit.warn("long", "gpsd sent a line longer than %d bytes: skipped", MAX_LINE_BYTES)

    # -- parsing (public for tests and for a caller that has lines already) ----------

    def handle_line(self, line: bytes | str) -> GpsFix | None:
        """Take one report line; a GpsFix for a TPV, None for anything else. Never raises on bad input."""
        text = line.strip()
        if not text:
            return None
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; absurdly deep nesting
            self.counters.malformed += 1
            self._limit.warn("json", "gpsd sent a line that is not JSON: %.80r", text)
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("class"), str):
            self.counters.malformed += 1
            self._limit.warn("shape", "gpsd sent JSON that is not a report object: %.80r", text)
            return None
        kind = obj["class"]
        if kind == "TPV":
            return self._tpv(obj)
        if kind == "SKY":
            self._take_sky(obj)
        elif kind == "VERSION":
            self.gpsd_version = str(obj.get("release"))
            log.info("gpsd %s (protocol %s.%s)", self.gpsd_version, obj.get("proto_major"), obj.get("proto_minor"))
        elif kind == "WATCH":
            self.watching = obj.get("enable") is True
        elif kind == "ERROR":
            self.counters.gpsd_errors += 1
            self._limit.warn("gpsd-error", "gpsd reports an error: %s", obj.get("message"))
        return None

    def _take_sky(self, obj: Mapping[str, Any]) -> None:
        problems: list[str] = []
        hdop = _number(obj, "hdop", problems)
        sats: int | None = None
        used = obj.get("uSat")
        if isinstance(used, int) and not isinstance(used, bool):
            sats = used
        elif used is not None:
            problems.append(f"uSat={used!r}")
        elif isinstance(obj.get("satellites"), list):
            sats = sum(1 for s in obj["satellites"] if isinstance(s, dict) and s.get("used") is True)
        if problems:
            self.counters.malformed += 1
            self._limit.warn("sky", "gpsd SKY report with values of the wrong type: %s", ", ".join(problems))
        device = str(obj.get("device", ""))
        at, old_hdop, old_sats = self._sky.get(device, (0, None, None))
        if hdop is None and sats is None:
            return
        # gpsd 3.23+ may split a cycle's SKY into a DOP-only and a satellites-only report: merge them
        now = self._boot_clock()
        fresh = now - at <= self.sky_max_age_ms
        self._sky[device] = (now, hdop if hdop is not None else (old_hdop if fresh else None),
                             sats if sats is not None else (old_sats if fresh else None))

    def _tpv(self, obj: Mapping[str, Any]) -> GpsFix:
        arrived = self._boot_clock()
        device = obj.get("device") if isinstance(obj.get("device"), str) else None
        mode = obj.get("mode")
        if isinstance(mode, bool) or mode not in (0, 1, 2, 3):
            self.counters.malformed += 1
            self._limit.warn("mode", "gpsd TPV report with mode %r: treated as no fix", mode)
            mode = 0
        problems: list[str] = []
        lat, lon = _number(obj, "lat", problems), _number(obj, "lon", problems)
        if mode >= 2 and (lat is None or lon is None or out_of_range("lat", lat) or out_of_range("lon", lon)):
            self.counters.malformed += 1
            self._limit.warn("latlon", "gpsd TPV with mode %s but lat=%r lon=%r: treated as no fix", mode, obj.get("lat"), obj.get("lon"))
            mode = 0
        if mode < 2:
            self.counters.no_fix += 1
            self._fix_state(False, mode)
            return GpsFix(fix=0, time_ms=None, boot_ms=arrived, device=device)

        time_ms: int | None = None
        raw_time = obj.get("time")
        if isinstance(raw_time, str):
            try:
                time_ms = parse_gpsd_time(raw_time)
            except ValueError:
                problems.append(f"time={raw_time!r}")
        elif raw_time is not None:
            problems.append(f"time={raw_time!r}")
        if time_ms is not None and time_ms < MIN_TS_MS:
            self.counters.bad_time += 1
            self._limit.warn("time", "GPS time %s is before 2020 (receiver week rollover?): not used", raw_time)
            time_ms = None

        alt = _number(obj, "altMSL", problems)
        if alt is None:
            alt = _number(obj, "alt", problems)  # gpsd < 3.20: alt is MSL
        speed = _number(obj, "speed", problems)
        at, hdop, sats = self._sky.get(device or "", (0, None, None))
        if arrived - at > self.sky_max_age_ms:
            hdop = sats = None
        values: dict[str, float | int | None] = {
            "alt_m": alt if mode == 3 else None,  # a 2D fix has no altitude
            "speed_kmh": None if speed is None else speed * MS_TO_KMH,
            "course_deg": _number(obj, "track", problems),
            "hdop": hdop,
            "sats": sats,
        }
        eph, ept = _number(obj, "eph", problems), _number(obj, "ept", problems)
        if problems:
            self.counters.malformed += 1
            self._limit.warn("tpv", "gpsd TPV report with values of the wrong type: %s", ", ".join(problems))
        self.counters.out_of_range += drop_out_of_range(values, self._limit)
        self.counters.fixes += 1
        self._fix_state(True, mode)
        return GpsFix(
            fix=3 if mode == 3 else 2, time_ms=time_ms, boot_ms=arrived, lat=lat, lon=lon,
            alt_m=values["alt_m"], speed_kmh=values["speed_kmh"], course_deg=values["course_deg"],
            hdop=values["hdop"], sats=None if values["sats"] is None else int(values["sats"]), eph_m=eph, ept_s=ept, device=device,
        )

    def _fix_state(self, has_fix: bool, mode: int) -> None:
        """Log when the receiver gets or loses its fix (not every report)."""
        if has_fix == self._had_fix:
            return
        self._had_fix = has_fix
        if has_fix:
            log.info("GPS has a %dD fix", mode)
        else:
            log.warning("GPS has no fix (TPV mode %s)", mode)
