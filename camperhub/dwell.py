"""Arrival and departure at stops, from dwell inside a geofence (issue 5, item 3).

Why dwell and hysteresis: a GPS at rest wanders by tens of metres, more
between buildings, so "inside the radius" flips at the edge of a fence. An
arrival needs the camper to stay near the stop for ``arrival_dwell_s``; once
it has arrived, only being beyond the *exit* radius (radius ×
``exit_radius_factor``) for ``departure_dwell_s`` is a departure. A camper
parked for an hour with jitter gives exactly one arrival and no departure.

Rules, per camper (one detector per camper):

* a candidate stop starts with a fix inside its radius (the nearest stop when
  fences overlap); it stays a candidate while the fixes stay within its exit
  radius, and becomes an *arrival* once it has been so for ``arrival_dwell_s``;
* after an arrival, the first fix beyond the exit radius starts the departure
  clock; a fix back within the exit radius stops it; ``departure_dwell_s``
  outside is a *departure*;
* events carry the time it happened (first fix inside; first fix outside),
  not the time it was detected;
* fixes not newer than the last one (a replayed backlog, a duplicate) are
  ignored, so feeding the same positions twice changes nothing.

Events would travel as contract ``event`` samples with ``kind`` ``arrival`` /
``departure`` and ``detail`` = stop id; those kinds are not in the contract
yet (EventSample's pattern), so they are plain dataclasses for now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from camperhub.schedule import ScheduleSettings, Stop
from camperhub.service_state import distance_m


@dataclass(frozen=True)
class DwellEvent:
    """An arrival at or a departure from a stop; ``ts_ms`` is when it happened (Unix ms, UTC)."""

    kind: Literal["arrival", "departure"]
    stop_id: str
    ts_ms: int

    def event_fields(self) -> dict[str, str]:
        """The ``kind`` and ``detail`` of the contract event this would be (once the kinds are in the contract)."""
        return {"kind": self.kind, "detail": self.stop_id}


class DwellDetector:
    """Turns one camper's positions into arrival and departure events (see the module doc)."""

    def __init__(
        self,
        stops: Sequence[Stop],
        arrival_dwell_s: float | None = None,
        departure_dwell_s: float | None = None,
        exit_radius_factor: float | None = None,
    ) -> None:
        cfg = ScheduleSettings()
        self.stops = list(stops)
        self.arrival_dwell_ms = int(1000 * (arrival_dwell_s if arrival_dwell_s is not None else cfg.arrival_dwell_s))
        self.departure_dwell_ms = int(1000 * (departure_dwell_s if departure_dwell_s is not None else cfg.departure_dwell_s))
        self.exit_factor = exit_radius_factor if exit_radius_factor is not None else cfg.exit_radius_factor
        if self.exit_factor < 1:
            raise ValueError(f"exit_radius_factor {self.exit_factor} < 1 would make leaving easier than entering")
        self.at_stop: Stop | None = None  # arrived here, no departure yet
        self._candidate: Stop | None = None
        self._candidate_since_ms = 0
        self._outside_since_ms: int | None = None
        self._last_ts_ms: int | None = None

    def _exit_radius(self, stop: Stop) -> float:
        return stop.radius_m * self.exit_factor

    def _nearest_inside(self, lat: float, lon: float) -> Stop | None:
        inside = [(d, s) for s in self.stops if (d := distance_m(lat, lon, s.lat, s.lon)) <= s.radius_m]
        return min(inside, key=lambda ds: ds[0])[1] if inside else None

    def feed(self, ts_ms: int, lat: float, lon: float) -> list[DwellEvent]:
        """Take one fix; the events it completes (at most a departure then an arrival)."""
        if self._last_ts_ms is not None and ts_ms <= self._last_ts_ms:
            return []
        self._last_ts_ms = ts_ms
        events: list[DwellEvent] = []
        if self.at_stop is not None:
            stop = self.at_stop
            if distance_m(lat, lon, stop.lat, stop.lon) <= self._exit_radius(stop):
                self._outside_since_ms = None
                return events
            if self._outside_since_ms is None:
                self._outside_since_ms = ts_ms
            if ts_ms - self._outside_since_ms < self.departure_dwell_ms:
                return events
            events.append(DwellEvent("departure", stop.id, self._outside_since_ms))
            self.at_stop, self._outside_since_ms, self._candidate = None, None, None
            # fall through: this fix may already be inside another stop's fence
        if self._candidate is not None and distance_m(lat, lon, self._candidate.lat, self._candidate.lon) > self._exit_radius(self._candidate):
            self._candidate = None
        if self._candidate is None:
            self._candidate = self._nearest_inside(lat, lon)
            self._candidate_since_ms = ts_ms
        if self._candidate is not None and ts_ms - self._candidate_since_ms >= self.arrival_dwell_ms:
            events.append(DwellEvent("arrival", self._candidate.id, self._candidate_since_ms))
            self.at_stop, self._candidate = self._candidate, None
        return events

    def feed_many(self, fixes: Iterable[tuple[int, float, float]]) -> list[DwellEvent]:
        """Feed (ts_ms, lat, lon) fixes in order; all the events."""
        return [e for ts, lat, lon in fixes for e in self.feed(ts, lat, lon)]
