"""What the public may know about the camper's whereabouts right now (issue 5, item 3; ARCHITECTURE.md §10).

Why this module decides and the API only serialises: privacy is a rule, not a
rendering detail. The public never gets the camper's own coordinates:

* in service and at a stop: the *stop's* position, its services today and
  until when (local time);
* in service between stops: "on the way to X, arriving around HH:MM ± N min",
  the estimate from the great-circle distance × a road factor and the recent
  average speed (town speeds when it is unknown), never a track;
* not in service: that, with the next stop and its local start time.

In service = inside a scheduled window (widened by a grace margin before and
after) or the camper's switch on (``status.in_service``, from the GPIO switch
or staff); a staff override decides alone (off hides the camper even inside a
window, on shows it outside one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from camperhub.contract import PositionSample, StatusSample
from camperhub.schedule import Schedule, ScheduleSettings, Service, Stop, VisitWindow

#: Road distance / great-circle distance in town (Varese's streets wind up and down hills).
ROAD_FACTOR = 1.3
#: Town driving speeds [km/h]: an estimate outside them is clamped into them.
TOWN_SPEED_MIN_KMH = 12.0
TOWN_SPEED_MAX_KMH = 50.0
#: Assumed when no recent speed is known, with the range the uncertainty is computed from.
TOWN_SPEED_DEFAULT_KMH = 25.0
TOWN_SPEED_UNKNOWN_RANGE_KMH = (15.0, 40.0)
#: Relative spread of the speed at least assumed (traffic lights, parking), on top of the samples' own.
MIN_SPEED_SPREAD = 0.2
#: Recent = positions of the last this many minutes, for the average speed.
SPEED_WINDOW = timedelta(minutes=10)
EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class PublicStop(BaseModel):
    """A stop as the public sees it (its own, public, position)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    neighbourhood: str
    address: str
    lat: float
    lon: float

    @classmethod
    def of(cls, stop: Stop) -> "PublicStop":
        return cls(id=stop.id, name=stop.name, neighbourhood=stop.neighbourhood, address=stop.address, lat=stop.lat, lon=stop.lon)


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    camper: str
    as_of_utc: datetime


class AtStop(_View):
    """In service at a stop: the public position is the stop's."""

    state: Literal["in_service_at_stop"] = "in_service_at_stop"
    stop: PublicStop
    services: list[Service] = Field(description="Offered at this visit (empty when switched on outside the schedule)")
    until_utc: datetime | None = None
    until_local: str | None = Field(default=None, description="HH:MM, Europe/Rome")
    confirmed: bool = Field(description="A recent GPS position is inside the stop's geofence (else: per schedule)")


class OnTheWay(_View):
    """In service, driving to the next stop: where to and about when, never where from."""

    state: Literal["on_the_way"] = "on_the_way"
    to: PublicStop
    services: list[Service]
    eta_utc: datetime | None = None
    eta_local: str | None = Field(default=None, description="HH:MM, Europe/Rome; None when no recent position")
    eta_uncertainty_min: int | None = Field(default=None, ge=0)
    scheduled_start_local: str | None = Field(default=None, description="HH:MM of the visit's scheduled start")


class NotInService(_View):
    """Not in service: no position at all, only the next visit."""

    state: Literal["not_in_service"] = "not_in_service"
    next_stop: PublicStop | None = None
    next_services: list[Service] = Field(default_factory=list)
    next_start_utc: datetime | None = None
    next_date_local: date | None = None
    next_start_local: str | None = Field(default=None, description="HH:MM, Europe/Rome")
    note: str | None = Field(default=None, description="Why there is no visit today, when an exception says so (e.g. a holiday)")


PublicView = Annotated[AtStop | OnTheWay | NotInService, Field(discriminator="state")]


def _hhmm(moment: datetime, schedule: Schedule) -> str:
    return moment.astimezone(schedule.tz).strftime("%H:%M")


#: Below this a fix is a camper standing (GPS jitter), not driving.
MOVING_KMH = 3.0


def recent_speed_kmh(positions: Sequence[PositionSample], now: datetime) -> tuple[float, float] | None:
    """(mean, standard deviation) of the speed over :data:`SPEED_WINDOW`; None when unknown.

    Reported ``speed_kmh`` values are used; without them, the speed between
    consecutive fixes (distance / time). Only moving fixes count: the minutes the
    camper stood at the last stop say nothing about how fast it drives (they
    would stretch the first ETA after it leaves).
    """
    since_ms = int((now - SPEED_WINDOW).timestamp() * 1000)
    now_ms = int(now.timestamp() * 1000)
    recent = sorted((p for p in positions if since_ms <= p.ts <= now_ms), key=lambda p: p.ts)
    speeds = [p.speed_kmh for p in recent if p.speed_kmh is not None]
    if not speeds:
        speeds = [
            distance_m(a.lat, a.lon, b.lat, b.lon) / ((b.ts - a.ts) / 1000) * 3.6
            for a, b in zip(recent, recent[1:]) if b.ts > a.ts
        ]
    speeds = [v for v in speeds if v >= MOVING_KMH]
    if not speeds:
        return None
    mean = sum(speeds) / len(speeds)
    std = math.sqrt(sum((s - mean) ** 2 for s in speeds) / len(speeds))
    return mean, std


def _clamp(v: float) -> float:
    return min(TOWN_SPEED_MAX_KMH, max(TOWN_SPEED_MIN_KMH, v))


def estimate_eta(distance_great_circle_m: float, speed: tuple[float, float] | None) -> tuple[float, float]:
    """(minutes to arrival, ± minutes): road distance = great circle × ROAD_FACTOR over the clamped speed.

    The uncertainty is half the spread between the arrival at a fast and at a
    slow speed: mean ± max(std, 20 % of mean) when speeds are known, the town
    range when not. At least one minute.
    """
    road_km = distance_great_circle_m * ROAD_FACTOR / 1000
    if speed is None:
        v = TOWN_SPEED_DEFAULT_KMH
        v_lo, v_hi = TOWN_SPEED_UNKNOWN_RANGE_KMH
    else:
        mean, std = speed
        spread = max(std, MIN_SPEED_SPREAD * mean)
        v, v_lo, v_hi = _clamp(mean), _clamp(mean - spread), _clamp(mean + spread)
    eta = road_km / v * 60
    plus_minus = max(1.0, (road_km / v_lo - road_km / v_hi) * 60 / 2)
    return eta, plus_minus


def _fresh(positions: Sequence[PositionSample], now: datetime, max_age: timedelta) -> PositionSample | None:
    now_ms = int(now.timestamp() * 1000)
    oldest_ms = int((now - max_age).timestamp() * 1000)
    usable = [p for p in positions if oldest_ms <= p.ts <= now_ms and p.fix != 0]
    return max(usable, key=lambda p: p.ts) if usable else None


def _services_today(schedule: Schedule, stop: Stop, now: datetime) -> list[Service]:
    day = now.astimezone(schedule.tz).date()
    out: list[Service] = []
    for w in schedule.visits_on(day):
        if w.stop.id == stop.id:
            out += [s for s in w.services if s not in out]
    return out


def public_view(
    schedule: Schedule,
    status: StatusSample | None,
    positions: Sequence[PositionSample],
    now: datetime,
    staff_override: bool | None = None,
    settings: ScheduleSettings | None = None,
) -> AtStop | OnTheWay | NotInService:
    """The public view of the camper at ``now`` (aware). ``positions``: its recent positions, any order."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    cfg = settings or ScheduleSettings()
    before = timedelta(minutes=cfg.service_grace_before_min)
    after = timedelta(minutes=cfg.service_grace_after_min)
    window = schedule.current_visit(now, before, after)
    switch_on = status is not None and status.in_service is True
    in_service = staff_override if staff_override is not None else (window is not None or switch_on)
    base = {"camper": schedule.camper, "as_of_utc": now}
    if not in_service:
        return _not_in_service(schedule, now, base)

    fix = _fresh(positions, now, timedelta(seconds=cfg.position_max_age_s))
    if fix is not None:
        # at a stop: the window's stop first, else the nearest stop whose exit radius holds the fix
        candidates = ([window.stop] if window is not None else []) + sorted(
            schedule.stops, key=lambda s: distance_m(fix.lat, fix.lon, s.lat, s.lon)
        )
        for stop in candidates:
            if distance_m(fix.lat, fix.lon, stop.lat, stop.lon) <= stop.radius_m * cfg.exit_radius_factor:
                if window is not None and stop.id != window.stop.id and now < window.end_utc:
                    # parked at another stop while a window elsewhere runs or is about to: the
                    # tenants waiting at the window's stop need "on the way", not a stop with no services
                    break
                return _at_stop(schedule, stop, window, now, base, confirmed=True)
    target = window if window is not None and now < window.end_utc else schedule.next_visit(now)
    if fix is None:
        if window is not None:
            # no recent position: trust the schedule (the camper is where it is planned to be)
            return _at_stop(schedule, window.stop, window, now, base, confirmed=False)
        if target is None:
            return _not_in_service(schedule, now, base)
        return OnTheWay(**base, to=PublicStop.of(target.stop), services=list(target.services),
                        scheduled_start_local=_hhmm(target.start_utc, schedule))
    if target is None:
        # switched on, away from every stop, nothing planned: nothing public to say without a position
        return _not_in_service(schedule, now, base)
    eta_min, pm_min = estimate_eta(
        distance_m(fix.lat, fix.lon, target.stop.lat, target.stop.lon), recent_speed_kmh(positions, now)
    )
    eta = now + timedelta(minutes=eta_min)
    return OnTheWay(
        **base, to=PublicStop.of(target.stop), services=list(target.services), eta_utc=eta, eta_local=_hhmm(eta, schedule),
        eta_uncertainty_min=math.ceil(pm_min), scheduled_start_local=_hhmm(target.start_utc, schedule),
    )


def _at_stop(schedule: Schedule, stop: Stop, window: VisitWindow | None, now: datetime, base: dict, confirmed: bool) -> AtStop:
    if window is not None and window.stop.id == stop.id:
        return AtStop(**base, stop=PublicStop.of(stop), services=list(window.services), until_utc=window.end_utc,
                      until_local=_hhmm(window.end_utc, schedule), confirmed=confirmed)
    return AtStop(**base, stop=PublicStop.of(stop), services=_services_today(schedule, stop, now), confirmed=confirmed)


def _not_in_service(schedule: Schedule, now: datetime, base: dict) -> NotInService:
    nxt = schedule.next_visit(now)
    today = now.astimezone(schedule.tz).date()
    notes = [e.note for e in schedule.exceptions_on(today) if e.kind != "extra" and e.note]
    note = notes[0] if notes else None
    if nxt is None:
        return NotInService(**base, note=note)
    return NotInService(
        **base, next_stop=PublicStop.of(nxt.stop), next_services=list(nxt.services), next_start_utc=nxt.start_utc,
        next_date_local=nxt.local_date, next_start_local=_hhmm(nxt.start_utc, schedule), note=note,
    )
