"""Which GPS fixes are worth sending: "position by distance and time", to keep 4G data small.

gpsd reports once a second; a camper parked for a six-hour workshop would
send 21,600 identical positions. :class:`PositionThrottle` lets a fix through
when the camper has moved far enough *and* enough time has passed since the
last one sent, sends a heartbeat while parked so the map never looks stale,
and always lets through the moment the receiver gains or loses its fix (the
public page must stop showing a position the GPS no longer vouches for).

Pure logic, no clock of its own: the caller passes ``now_s`` (any clock that
does not jump, e.g. ``time.monotonic()`` or the time since boot), so tests
and replays drive it deterministically.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Protocol

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
    """

    min_distance_m: float = 100.0
    min_interval_s: float = 30.0
    max_interval_s: float = 900.0
    min_change_interval_s: float = 0.0

    def __post_init__(self) -> None:
        if self.min_distance_m < 0 or self.min_interval_s < 0 or self.min_change_interval_s < 0:
            raise ValueError("min_distance_m, min_interval_s and min_change_interval_s must not be negative")
        if self.max_interval_s <= 0 or self.max_interval_s < self.min_interval_s:
            raise ValueError("max_interval_s must be positive and at least min_interval_s")
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
        if has and self._last_pos is not None and elapsed >= self.min_interval_s:
            assert fix.lat is not None and fix.lon is not None
            if haversine_m(self._last_pos[0], self._last_pos[1], fix.lat, fix.lon) >= self.min_distance_m:
                return "moved"
        return None
