"""A simulated GPS receiver: the camper's tour between the demo stops, served as NMEA 0183 over TCP.

``camperhub simulate --gps tcp://127.0.0.1:2948`` starts :class:`GpsRouteServer`;
gpsd reads it as a ``tcp://127.0.0.1:2948`` source (or the agent directly with
``gps: nmea: tcp://127.0.0.1:2948``), so the whole GPS path of the agent can be
run on a laptop, and tests can check what arrives against :class:`RoutePlan`.

The tour: parked at each stop for ``dwell_s`` (20 simulated minutes), with
the small wander of a real receiver standing still (a few metres, speed under
1 km/h), then a straight-ish leg (one bend, a tenth of the leg to one side) to
the next stop at a steady town speed of 30-50 km/h, and round again. Each
simulated second is one receiver cycle: RMC, GGA, GSA and GSV (GSV so that gpsd
reports satellites), at 1 Hz times ``speed``.

Everything is a function of the simulated time and the seed, so a test can ask
the plan where the camper was at the time of a fix it received.
"""

from __future__ import annotations

import logging
import math
import random
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pynmea2

from camperhub.edge.position_filter import EARTH_RADIUS_M, haversine_m
from camperhub.edge.stops import Stop
from camperhub.edge.transport import parse_transport

log = logging.getLogger(__name__)

DEFAULT_DWELL_S = 20 * 60
#: Parked wander of a good receiver under open sky: a few metres.
PARKED_WANDER_M = 3.0
KMH_PER_KNOT = 1.852
#: Fastest the simulation may run: 1,000 cycles a second is already more than gpsd needs.
MAX_SPEED = 1000.0
ALT_M = 382.0  # Varese's altitude, roughly


@dataclass(frozen=True)
class RouteState:
    """Where the simulated camper is at one moment."""

    lat: float
    lon: float
    speed_kmh: float
    course_deg: float
    stop: str | None  # the stop it is parked at, None while driving


@dataclass(frozen=True)
class _Leg:
    points: tuple[tuple[float, float], ...]  # from stop, bend, to stop
    lengths: tuple[float, ...]  # metres of each segment
    speed_kmh: float

    @property
    def length_m(self) -> float:
        return sum(self.lengths)

    @property
    def duration_s(self) -> float:
        return self.length_m / (self.speed_kmh / 3.6)


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial course from point 1 to point 2, degrees clockwise from north."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point some metres north and east of (lat, lon); flat-earth, fine at town scale."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


class RoutePlan:
    """The tour between ``stops`` (in order, then back to the first), deterministic for a seed."""

    def __init__(self, stops: Sequence[Stop], *, dwell_s: float = DEFAULT_DWELL_S, seed: int = 1,
                 min_kmh: float = 30.0, max_kmh: float = 50.0) -> None:
        if len(stops) < 2:
            raise ValueError("a route needs at least two stops")
        if dwell_s < 0 or not 0 < min_kmh <= max_kmh:
            raise ValueError("need dwell_s >= 0 and 0 < min_kmh <= max_kmh")
        self.stops = list(stops)
        self.dwell_s = dwell_s
        rng = random.Random(seed)
        self.legs: list[_Leg] = []
        for a, b in zip(self.stops, self.stops[1:] + self.stops[:1]):
            # one bend halfway, a tenth of the leg to one side: streets are not straight lines
            north = (b.lat - a.lat) * math.radians(1) * EARTH_RADIUS_M
            east = (b.lon - a.lon) * math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(a.lat))
            side = rng.choice((-1, 1)) * rng.uniform(0.05, 0.12)
            mid = _offset((a.lat + b.lat) / 2, (a.lon + b.lon) / 2, -east * side, north * side)
            pts = ((a.lat, a.lon), mid, (b.lat, b.lon))
            lengths = tuple(haversine_m(*p, *q) for p, q in zip(pts, pts[1:]))
            self.legs.append(_Leg(pts, lengths, rng.uniform(min_kmh, max_kmh)))
        self.period_s = sum(self.dwell_s + leg.duration_s for leg in self.legs)
        self._phases = [rng.uniform(0, 2 * math.pi) for _ in range(4)]

    def state_at(self, t_s: float) -> RouteState:
        """The camper at ``t_s`` simulated seconds after the tour started (parked at the first stop)."""
        t = t_s % self.period_s
        for i, leg in enumerate(self.legs):
            if t < self.dwell_s:
                stop = self.stops[i]
                lat, lon = self._wander(stop.lat, stop.lon, t_s)
                speed = 0.3 + 0.25 * math.sin(t_s / 7 + self._phases[2])
                return RouteState(lat, lon, speed, (t_s * 3) % 360, stop.id)
            t -= self.dwell_s
            if t < leg.duration_s:
                return self._along(leg, t * leg.speed_kmh / 3.6, t_s)
            t -= leg.duration_s
        raise AssertionError("unreachable: t is below the period")

    def _along(self, leg: _Leg, s_m: float, t_s: float) -> RouteState:
        last = len(leg.lengths) - 1
        for i, ((p, q), length) in enumerate(zip(zip(leg.points, leg.points[1:]), leg.lengths)):
            if s_m <= length or i == last:
                f = min(1.0, s_m / length) if length > 0 else 1.0
                lat, lon = p[0] + (q[0] - p[0]) * f, p[1] + (q[1] - p[1]) * f
                lat, lon = self._wander(lat, lon, t_s, scale=0.5)
                speed = leg.speed_kmh + 1.5 * math.sin(t_s / 5 + self._phases[3])
                return RouteState(lat, lon, speed, _bearing(*p, *q), None)
            s_m -= length
        raise AssertionError("unreachable: s is within the leg")

    def _wander(self, lat: float, lon: float, t_s: float, scale: float = 1.0) -> tuple[float, float]:
        """A receiver's slow error: a few metres, smooth in time (two incommensurate periods per axis)."""
        a = PARKED_WANDER_M * scale
        north = a * (0.7 * math.sin(t_s / 97 + self._phases[0]) + 0.3 * math.sin(t_s / 13 + self._phases[1]))
        east = a * (0.7 * math.cos(t_s / 89 + self._phases[1]) + 0.3 * math.sin(t_s / 17 + self._phases[0]))
        return _offset(lat, lon, north, east)


def _nmea(body: str) -> str:
    return f"${body}*{pynmea2.NMEASentence.checksum(body):02X}\r\n"


def _lat(deg: float) -> str:
    a = abs(deg)
    return f"{int(a):02d}{(a - int(a)) * 60:09.6f},{'N' if deg >= 0 else 'S'}"


def _lon(deg: float) -> str:
    a = abs(deg)
    return f"{int(a):03d}{(a - int(a)) * 60:09.6f},{'E' if deg >= 0 else 'W'}"


def cycle_sentences(at: datetime, state: RouteState, *, sats: int = 9, hdop: float = 0.9) -> str:
    """One receiver cycle at UTC ``at``: RMC, GGA, GSA, GSV, as a receiver would send them."""
    t, d = at.strftime("%H%M%S.00"), at.strftime("%d%m%y")
    pos = f"{_lat(state.lat)},{_lon(state.lon)}"
    prns = [f"{p:02d}" for p in (2, 5, 7, 9, 13, 15, 18, 20, 23, 26, 29, 30)[:sats]]
    out = [
        _nmea(f"GPRMC,{t},A,{pos},{state.speed_kmh / KMH_PER_KNOT:.2f},{state.course_deg:.1f},{d},,,A"),
        _nmea(f"GPGGA,{t},{pos},1,{sats:02d},{hdop:.1f},{ALT_M:.1f},M,48.0,M,,"),
        _nmea(f"GPGSA,A,3,{','.join((prns + [''] * 12)[:12])},{hdop + 0.7:.1f},{hdop:.1f},1.2"),
    ]
    pages = [prns[i : i + 4] for i in range(0, len(prns), 4)]
    for n, page in enumerate(pages, 1):
        sv = ",".join(f"{p},{20 + (7 * int(p)) % 60:02d},{(37 * int(p)) % 360:03d},{30 + int(p) % 15}" for p in page)
        out.append(_nmea(f"GPGSV,{len(pages)},{n},{len(prns):02d},{sv}"))
    return "".join(out)


class GpsRouteServer:
    """A TCP server sending every client the simulated receiver's NMEA, 1 Hz x ``speed``.

    The route runs whether or not anyone listens, like a receiver does. One
    thread; :meth:`stop` ends it and closes every socket.
    """

    def __init__(self, listen: str, plan: RoutePlan, *, speed: float = 1.0, start: datetime | None = None,
                 offset_s: float = 0.0) -> None:
        transport = parse_transport(listen, default_tcp_port=2948)
        if transport.kind != "tcp":
            raise ValueError(f"--gps {listen!r}: the GPS simulator serves tcp://host:port only")
        if not 0 < speed <= MAX_SPEED:
            raise ValueError(f"speed must be in (0, {MAX_SPEED:g}]")
        self.host, self.port = transport.host, transport.port
        self.plan, self.speed, self.offset_s = plan, speed, offset_s
        now = datetime.now(UTC).replace(microsecond=0)
        self.start_time = (start or now).astimezone(UTC).replace(microsecond=0)
        self.cycles = 0  # receiver cycles sent so far
        self._sock: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listen(self) -> str:
        """``tcp://host:port`` actually served (the port filled in when 0 was asked for)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def time_of(self, cycle: int) -> datetime:
        """UTC of receiver cycle ``cycle``."""
        return self.start_time + timedelta(seconds=cycle)

    def route_s(self, utc: datetime) -> float:
        """Route time (for :meth:`RoutePlan.state_at`) of a fix stamped ``utc``."""
        return (utc - self.start_time).total_seconds() + self.offset_s

    def start(self) -> GpsRouteServer:
        """Bind and start serving; OSError when the address is taken."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(8)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock, self.port = sock, sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="gps-route-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close every socket; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for c in self._clients:
            c.close()
        self._clients.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> GpsRouteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._sock is not None
        period = 1.0 / self.speed
        next_tick = time.monotonic()
        while not self._stop.is_set():
            wait = min(0.1, max(0.0, next_tick - time.monotonic()))
            readable, _, _ = select.select([self._sock, *self._clients], [], [], wait)
            for s in readable:
                if s is self._sock:
                    self._accept()
                else:
                    self._drain(s)
            now = time.monotonic()
            if now < next_tick:
                continue
            if now - next_tick > 1.0:  # fell behind (machine busy): skip ahead rather than burst
                next_tick = now
            next_tick += period
            at = self.time_of(self.cycles)
            data = cycle_sentences(at, self.plan.state_at(self.offset_s + self.cycles)).encode("ascii")
            self.cycles += 1
            for c in list(self._clients):
                try:
                    c.sendall(data)  # non-blocking: a client that cannot keep up is dropped
                except OSError:
                    self._drop(c)

    def _accept(self) -> None:
        assert self._sock is not None
        try:
            conn, peer = self._sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self._clients.append(conn)
        log.info("GPS simulator: client %s connected", peer)

    def _drain(self, conn: socket.socket) -> None:
        """Read what a client sends (nothing is expected); a closed client is dropped."""
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        if conn in self._clients:
            self._clients.remove(conn)
        conn.close()


def start_gps_simulator(listen: str, stops: Sequence[Stop], *, speed: float = 1.0, start: datetime | None = None,
                        seed: int = 1, dwell_s: float = DEFAULT_DWELL_S, offset_s: float = 0.0) -> GpsRouteServer:
    """Build the route between ``stops`` and start serving it."""
    return GpsRouteServer(listen, RoutePlan(stops, dwell_s=dwell_s, seed=seed), speed=speed, start=start, offset_s=offset_s).start()
