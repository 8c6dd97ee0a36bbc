"""Which GPS fixes are worth sending: "position by distance and time", to keep 4G data small.

gpsd reports once a second; a camper parked for a six-hour workshop would
send 21,600 identical positions. :class:`PositionThrottle` lets a fix through
when the camper has moved far enough *and* enough time has passed since the
last one sent, sends a heartbeat while parked so the map never looks stale,
and always lets through the moment the receiver gains or loses its fix (the
public page must stop showing a position the GPS no longer vouches for).

Before the throttle, :class:`PositionSmoother` cleans what the receiver says:
a jump no vehicle can make (a multipath outlier, a cold start's first guess)
is dropped; a parked camper's jitter is suppressed (the held position is
reported while it stays slow and near); inside a stop's geofence a parked
camper's position snaps to the stop, so the public map says "at the stop". And
the throttle reports a moving camper more often (``fast_min_interval_s`` above
``fast_speed_kmh``): the trail on the map is what tenants watch while they wait.

Pure logic, no clock of its own: the caller passes ``now_s`` (any clock that
does not jump, e.g. ``time.monotonic()`` or the time since boot), so tests
and replays drive it deterministically.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from camperhub.edge.gps import GpsFix

log = logging.getLogger(__name__)

#: Mean Earth radius (IUGG), metres: the haversine error against WGS84 is below 0.5 %,
#: plenty for a 100 m threshold.
EARTH_RADIUS_M = 6_371_008.8

Reason = Literal["first", "moved", "heartbeat", "fix_lost", "fix_regained"]


class FixLike(Protocol):
    """What the throttle reads of a fix (camperhub.edge.gps.GpsFix has it)."""

    @property
    def fix(self) -> int: ...
    @property
    def lat(self) -> float | None: ...
    @property
    def lon(self) -> float | None: ...


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def _has_position(fix: FixLike) -> bool:
    return fix.fix >= 2 and fix.lat is not None and fix.lon is not None


@dataclass
class PositionThrottle:
    """Decide, fix by fix, which ones to publish.

    A fix is accepted when it is the first one; or the camper moved at least
    ``min_distance_m`` from the last accepted position and at least
    ``min_interval_s`` passed since then; or ``max_interval_s`` passed
    (heartbeat while parked, with or without a fix); or the receiver went
    from no fix to a fix or back, compared with the last *accepted* fix, so a
    change held back by ``min_change_interval_s`` (0 by default: never held
    back; set it to damp a receiver flapping in and out of a tunnel) is still
    reported once the wait is over. ``reason`` says why the last accepted
    fix was let through.

    More often when moving: a fix whose ``speed_kmh`` is at least
    ``fast_speed_kmh`` needs only ``fast_min_interval_s`` since the last
    accepted one (capped at ``min_interval_s``; still ``min_distance_m``
    away); None switches this off.
    A fix without a speed counts as slow.
    """

    min_distance_m: float = 100.0
    min_interval_s: float = 30.0
    max_interval_s: float = 900.0
    min_change_interval_s: float = 0.0
    fast_speed_kmh: float | None = 20.0
    fast_min_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.min_distance_m < 0 or self.min_interval_s < 0 or self.min_change_interval_s < 0:
            raise ValueError("min_distance_m, min_interval_s and min_change_interval_s must not be negative")
        if self.max_interval_s <= 0 or self.max_interval_s < self.min_interval_s:
            raise ValueError("max_interval_s must be positive and at least min_interval_s")
        if self.fast_speed_kmh is not None and (self.fast_speed_kmh <= 0 or self.fast_min_interval_s < 0):
            raise ValueError("fast_speed_kmh must be positive and fast_min_interval_s not negative")
        self.reason: Reason | None = None
        self.accepted = 0
        self.rejected = 0
        self._last_s: float | None = None  # when the last accepted fix was taken
        self._last_had_fix = False
        self._last_pos: tuple[float, float] | None = None  # the last accepted position

    def accept(self, fix: FixLike, now_s: float) -> bool:
        """True when ``fix`` (taken at ``now_s``) should be published; updates ``reason`` when it is."""
        reason = self._decide(fix, now_s)
        if reason is None:
            self.rejected += 1
            return False
        self.reason = reason
        self.accepted += 1
        self._last_s = now_s
        self._last_had_fix = _has_position(fix)
        if self._last_had_fix:
            assert fix.lat is not None and fix.lon is not None
            self._last_pos = (fix.lat, fix.lon)
        if reason in ("fix_lost", "fix_regained"):
            log.info("GPS %s: position %s", "fix regained" if reason == "fix_regained" else "fix lost",
                     "reported again" if reason == "fix_regained" else "no longer vouched for")
        return True

    def _min_interval(self, fix: FixLike) -> float:
        """The wait between two "moved" reports: shorter at speed."""
        speed = getattr(fix, "speed_kmh", None)
        if self.fast_speed_kmh is not None and speed is not None and speed >= self.fast_speed_kmh:
            return min(self.fast_min_interval_s, self.min_interval_s)  # never slower than when slow
        return self.min_interval_s

    def _decide(self, fix: FixLike, now_s: float) -> Reason | None:
        if self._last_s is None:
            return "first"
        if now_s < self._last_s:
            # the caller's clock went back (it should not): restart the intervals rather than stall them
            log.warning("position throttle: time went back from %.3f to %.3f s; intervals restart", self._last_s, now_s)
            self._last_s = now_s
        elapsed = now_s - self._last_s
        has = _has_position(fix)
        if has != self._last_had_fix and elapsed >= self.min_change_interval_s:
            return "fix_regained" if has else "fix_lost"
        if elapsed >= self.max_interval_s:
            return "heartbeat"
        if has and self._last_pos is not None and elapsed >= self._min_interval(fix):
            assert fix.lat is not None and fix.lon is not None
            if haversine_m(self._last_pos[0], self._last_pos[1], fix.lat, fix.lon) >= self.min_distance_m:
                return "moved"
        return None


# -- before the throttle: what the receiver says, cleaned ------------------------------------

#: Dropped jumps are logged at most this often (the caller's seconds).
JUMP_LOG_EVERY_S = 60.0

SmoothAction = Literal["no_fix", "moving", "parked", "held", "snapped", "jump", "reanchored"]


@dataclass(frozen=True)
class GeoFence:
    """A stop as the smoother needs it: a name, a point and a radius in metres."""

    name: str
    lat: float
    lon: float
    radius_m: float

    def __post_init__(self) -> None:
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180) or not self.radius_m > 0:
            raise ValueError(f"geofence {self.name!r}: lat/lon out of range or radius not positive")


class _StopLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def radius_m(self) -> float: ...


def as_fence(stop: GeoFence | tuple[str, float, float, float] | _StopLike) -> GeoFence:
    """A GeoFence from a GeoFence, a ``(name, lat, lon, radius_m)`` tuple or a stop (camperhub.edge.stops.Stop)."""
    if isinstance(stop, GeoFence):
        return stop
    if isinstance(stop, tuple):
        return GeoFence(*stop)
    return GeoFence(stop.id, stop.lat, stop.lon, stop.radius_m)


@dataclass
class SmootherCounters:
    """How often each cleaning step acted; for logs or metrics."""

    jumps_dropped: int = 0
    reanchored: int = 0
    held: int = 0
    snapped: int = 0


@dataclass
class PositionSmoother:
    """Clean a receiver's fixes before the throttle; pure logic, ``now_s`` from the caller.

    * Jumps: a fix farther from the last accepted one than a vehicle at
      ``max_speed_kmh`` could get (plus ``jump_slack_m`` of receiver error),
      or more than ``max_jump_m`` away within ``jump_window_s``, is dropped
      (``smooth`` returns None). So that one bad reference cannot lock the
      smoother out for ever, ``reanchor_after`` dropped fixes in a row that
      are plausible among themselves become the new reference.
    * Jitter: while the camper is slow (``speed_kmh`` below
      ``parked_speed_kmh``, or no speed given) and stays within
      ``jitter_radius_m`` x HDOP (HDOP clamped to 1..4) of the held position,
      the held position is reported: a parked camper does not wander.
    * Stops: a fix slower than ``snap_speed_kmh`` inside a stop's geofence is
      reported at the stop's point (the nearest, when fences overlap);
      :attr:`stop` names it. Driving through a fence does not snap.

    A fix without a position passes unchanged (the throttle must see the fix lost).
    """

    max_speed_kmh: float = 200.0
    max_jump_m: float = 1000.0
    jump_window_s: float = 1.0
    jump_slack_m: float = 50.0
    reanchor_after: int = 5
    parked_speed_kmh: float = 2.0
    jitter_radius_m: float = 30.0
    snap_speed_kmh: float = 10.0
    stops: Sequence[GeoFence | tuple[str, float, float, float] | _StopLike] = ()
    counters: SmootherCounters = field(default_factory=SmootherCounters)

    def __post_init__(self) -> None:
        if self.max_speed_kmh <= 0 or self.max_jump_m <= 0 or self.jump_window_s < 0 or self.jump_slack_m < 0:
            raise ValueError("max_speed_kmh and max_jump_m must be positive, jump_window_s and jump_slack_m not negative")
        if self.reanchor_after < 1 or self.parked_speed_kmh < 0 or self.jitter_radius_m < 0 or self.snap_speed_kmh < 0:
            raise ValueError("reanchor_after must be at least 1; speeds and radius must not be negative")
        self.fences: tuple[GeoFence, ...] = tuple(as_fence(s) for s in self.stops)
        self.action: SmoothAction | None = None
        #: the stop the last fix was snapped to, None when it was not
        self.stop: str | None = None
        self._ref: tuple[float, float, float] | None = None  # last accepted raw fix: lat, lon, now_s
        self._candidate: tuple[float, float, float] | None = None  # last dropped fix
        self._run = 0  # dropped fixes in a row, each plausible from the one before
        self._held: tuple[float, float] | None = None
        self._last_jump_log: float | None = None
        self._jumps_unlogged = 0

    def smooth(self, fix: GpsFix, now_s: float) -> GpsFix | None:
        """The fix to pass on (possibly moved to the held position or a stop), or None to drop it."""
        if fix.lat is None or fix.lon is None or fix.fix < 2:
            self.action, self.stop = "no_fix", None
            return fix
        lat, lon = fix.lat, fix.lon
        if self._ref is not None and now_s < self._ref[2]:
            log.warning("position smoother: time went back from %.3f to %.3f s; jump check restarts", self._ref[2], now_s)
            self._ref = None
        if self._ref is not None and not self._plausible(self._ref, lat, lon, now_s):
            if self._candidate is not None and self._plausible(self._candidate, lat, lon, now_s):
                self._run += 1
            else:
                self._run = 1
            self._candidate = (lat, lon, now_s)
            if self._run < self.reanchor_after:
                self.counters.jumps_dropped += 1
                self.action = "jump"
                self._log_jump(haversine_m(self._ref[0], self._ref[1], lat, lon), now_s - self._ref[2], now_s)
                return None
            self.counters.reanchored += 1
            log.warning("GPS: %d consistent fixes far from the last accepted one: taking them as the new position", self._run)
            self._held = None
            action: SmoothAction = "reanchored"
        else:
            action = "moving"
        self._candidate, self._run = None, 0
        self._ref = (lat, lon, now_s)

        out_lat, out_lon = lat, lon
        speed = fix.speed_kmh
        if speed is None or speed < self.parked_speed_kmh:
            hdop = min(4.0, max(1.0, fix.hdop if fix.hdop is not None else 1.0))
            if self._held is not None and haversine_m(self._held[0], self._held[1], lat, lon) <= self.jitter_radius_m * hdop:
                out_lat, out_lon = self._held
                self.counters.held += 1
                action = "held" if action == "moving" else action
            else:
                self._held = (lat, lon)
                action = "parked" if action == "moving" else action
        else:
            self._held = None

        self.stop = None
        if speed is None or speed < self.snap_speed_kmh:
            inside = [(haversine_m(f.lat, f.lon, lat, lon), f) for f in self.fences]
            inside = [(d, f) for d, f in inside if d <= f.radius_m]
            if inside:
                fence = min(inside, key=lambda x: x[0])[1]
                out_lat, out_lon, self.stop = fence.lat, fence.lon, fence.name
                self.counters.snapped += 1
                action = "snapped"
        self.action = action
        if (out_lat, out_lon) == (lat, lon):
            return fix
        return replace(fix, lat=out_lat, lon=out_lon)

    def _log_jump(self, d: float, dt: float, now_s: float) -> None:
        """The first jump, then at most one message a minute with how many were not logged."""
        if self._last_jump_log is not None and 0 <= now_s - self._last_jump_log < JUMP_LOG_EVERY_S:
            self._jumps_unlogged += 1
            return
        more = f" ({self._jumps_unlogged} more not logged)" if self._jumps_unlogged else ""
        self._last_jump_log, self._jumps_unlogged = now_s, 0
        log.warning("GPS fix %.0f m from the last one after %.1f s: dropped as a jump no vehicle makes%s", d, dt, more)

    def _plausible(self, ref: tuple[float, float, float], lat: float, lon: float, now_s: float) -> bool:
        """Could a vehicle get from ``ref`` to (lat, lon) by ``now_s``?"""
        dt = max(0.0, now_s - ref[2])
        d = haversine_m(ref[0], ref[1], lat, lon)
        if d > self.max_jump_m and dt <= self.jump_window_s:
            return False
        return d <= self.max_speed_kmh / 3.6 * dt + self.jump_slack_m
