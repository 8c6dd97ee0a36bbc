"""The camper's schedule: stops, a weekly plan of visits, exceptions, and its expansion into UTC windows.

Why this shape (issue 5, item 2): tenants ask "when does it come to my
neighbourhood?", and staff think in a weekly plan ("Tuesday morning at
Bobbiate") with exceptions (holidays, a cancelled afternoon, an extra visit).
So the model stores local wall-clock times in the schedule's time zone
(Europe/Rome) and :meth:`Schedule.visits_between` turns them into concrete UTC
windows, one local day at a time, which keeps a 09:00 visit at 09:00 local
across the daylight-saving changes (08:00 UTC in winter, 07:00 UTC in summer).

A local time that does not exist (02:30 on the spring-forward night) is read
with the offset before the change (so it lands at 03:30 summer time); one that
occurs twice (02:30 on the fall-back night) is its first occurrence. Real
visits do not start at night, but the rule is fixed so the expansion is total.

The pydantic model is also the body of ``PUT /api/v1/campers/{camper}/schedule``:
cross-field checks (unknown stop, overlapping visits) run in a model validator,
and YAML loading (:mod:`camperhub.schedule_io`) runs the same checks through
:meth:`Schedule.cross_check` so each problem names its file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
import datetime as dt
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from camperhub.contract import CAMPER_ID_PATTERN

#: Stop ids are lowercase words joined by single dashes (``valle-olona``): they go into URLs and events.
STOP_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
#: Geofence radius bounds: below 20 m GPS noise alone leaves the fence; above 500 m a fence covers
#: a whole neighbourhood and "at the stop" stops meaning anything.
RADIUS_MIN_M = 20.0
RADIUS_MAX_M = 500.0
#: How far ahead :meth:`Schedule.next_visit` looks (covers the Christmas break and more).
NEXT_VISIT_HORIZON = timedelta(days=60)
#: Context key: skip the cross-field checks in the model validator (the YAML/CSV loaders run
#: :meth:`Schedule.cross_check` themselves, to report file and line).
DEFER_CROSS_CHECK = "defer_cross_check"

PathKey = tuple[str | int, ...]


class ScheduleSettings(BaseSettings):
    """Settings of the schedule, the public service state and the dwell detector (``CAMPERHUB_*``)."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_", extra="ignore")

    schedule_path: Path = Field(default=Path("var/schedules.sqlite"), description="SQLite file of the per-camper schedules")
    position_retention_days: float = Field(
        default=30, ge=0, le=3650, description="Position history (staff only) is kept this long; the store prunes older positions (0: kept forever)"
    )
    service_grace_before_min: float = Field(default=10, ge=0, le=120, description="In service this long before a scheduled window")
    service_grace_after_min: float = Field(default=10, ge=0, le=120, description="In service this long after a scheduled window")
    position_max_age_s: float = Field(default=300, gt=0, le=86400, description="An older position is not used for the public view")
    arrival_dwell_s: float = Field(default=120, gt=0, le=3600, description="Continuously inside a geofence this long = arrival")
    departure_dwell_s: float = Field(default=120, gt=0, le=3600, description="Outside the exit radius this long after an arrival = departure")
    exit_radius_factor: float = Field(default=1.5, ge=1, le=5, description="Exit radius = geofence radius x this (hysteresis)")


class Service(StrEnum):
    """What the camper's team offers at a visit."""

    MAINTENANCE_DESK = "maintenance_desk"
    PAPERWORK_HELP = "paperwork_help"
    ARREARS_MEDIATION = "arrears_mediation"
    ENERGY_WORKSHOP = "energy_workshop"
    JOB_ORIENTATION = "job_orientation"
    CULTURAL_MEDIATION = "cultural_mediation"


class Weekday(StrEnum):
    """Days of the weekly plan, in ``date.weekday()`` order."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def index(self) -> int:
        """0 = Monday, as :meth:`date.weekday`."""
        return list(Weekday).index(self)

    @classmethod
    def of(cls, day: date) -> "Weekday":
        return list(cls)[day.weekday()]


class Stop(BaseModel):
    """A place the camper parks at: the public position while it is there, and its geofence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=STOP_ID_PATTERN, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    neighbourhood: str = Field(min_length=1, max_length=100)
    address: str = Field(min_length=1, max_length=200)
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude [deg]")
    lon: float = Field(ge=-180, le=180, description="WGS84 longitude [deg]")
    radius_m: float = Field(ge=RADIUS_MIN_M, le=RADIUS_MAX_M, description="Geofence radius [m]")


def _check_services(services: list[Service]) -> list[Service]:
    if len(set(services)) != len(services):
        raise ValueError("a service is listed twice")
    return services


class Visit(BaseModel):
    """The camper at a stop from ``start`` to ``end`` local time, weekly (``weekday``) or once (``date``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stop: str = Field(pattern=STOP_ID_PATTERN, max_length=64)
    weekday: Weekday | None = None
    date: dt.date | None = None
    start: time = Field(description="Local start (schedule time zone)")
    end: time = Field(description="Local end, after start, same day")
    services: list[Service] = Field(min_length=1)

    @field_validator("services")
    @classmethod
    def _services_unique(cls, v: list[Service]) -> list[Service]:
        return _check_services(v)

    @field_validator("start", "end")
    @classmethod
    def _naive_minutes(cls, v: time) -> time:
        if v.tzinfo is not None:
            raise ValueError("give local wall-clock time without offset (the schedule's timezone applies)")
        return v

    @model_validator(mode="after")
    def _one_day_and_order(self) -> "Visit":
        if (self.weekday is None) == (self.date is None):
            raise ValueError("give exactly one of weekday (weekly visit) or date (one-off visit)")
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat('minutes')} is not after start {self.start.isoformat('minutes')}")
        return self

    def occurs_on(self, day: dt.date) -> bool:
        """True when this visit's rule (weekday or date) falls on local ``day``."""
        return self.date == day if self.date is not None else Weekday.of(day) == self.weekday


class ScheduleException(BaseModel):
    """A change to the weekly plan on one local date.

    ``holiday``: no visits that day. ``cancelled``: the visits of that day are
    cancelled, only those at ``stop`` when given (and only the one starting at
    ``start`` when given too). ``extra``: ``visit`` is added that day (its
    ``date`` may be left out; it is the exception's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date
    kind: Literal["holiday", "cancelled", "extra"]
    note: str | None = Field(default=None, max_length=200, description="Why, for people (e.g. 'Immacolata Concezione')")
    stop: str | None = Field(default=None, pattern=STOP_ID_PATTERN, max_length=64)
    start: time | None = None
    visit: Visit | None = None

    @model_validator(mode="before")
    @classmethod
    def _extra_visit_date(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "extra" and isinstance(data.get("visit"), dict):
            visit = data["visit"]
            if visit.get("date") is None and visit.get("weekday") is None and data.get("date") is not None:
                data = {**data, "visit": {**visit, "date": data["date"]}}
        return data

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> "ScheduleException":
        if self.kind == "extra":
            if self.visit is None:
                raise ValueError("an extra exception needs a visit")
            if self.visit.date != self.date:
                raise ValueError(f"the extra visit's date must be the exception's date {self.date.isoformat()}")
            if self.stop is not None or self.start is not None:
                raise ValueError("an extra exception takes its stop and start from its visit")
        else:
            if self.visit is not None:
                raise ValueError(f"a {self.kind} exception takes no visit")
            if self.kind == "holiday" and (self.stop is not None or self.start is not None):
                raise ValueError("a holiday cancels the whole day: no stop or start")
            if self.start is not None and self.stop is None:
                raise ValueError("start picks one visit of a stop: give the stop too")
        return self

    def cancels(self, visit: Visit) -> bool:
        """True when this exception removes ``visit`` on its date."""
        if self.kind == "holiday":
            return True
        if self.kind != "cancelled":
            return False
        return (self.stop is None or self.stop == visit.stop) and (self.start is None or self.start == visit.start)


@dataclass(frozen=True)
class VisitWindow:
    """One concrete visit: a stop, its services and its window in UTC (``start_utc`` <= t < ``end_utc``)."""

    stop: Stop
    services: tuple[Service, ...]
    local_date: date
    start_utc: datetime
    end_utc: datetime
    visit: Visit

    def contains(self, now: datetime, before: timedelta = timedelta(0), after: timedelta = timedelta(0)) -> bool:
        """True when ``now`` is inside the window widened by the grace margins (end exclusive)."""
        return self.start_utc - before <= now < self.end_utc + after


def local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Local wall-clock ``day`` ``at`` in ``tz`` as UTC (gap: offset before the change; overlap: first)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _require_aware(*moments: datetime) -> None:
    if any(m.tzinfo is None for m in moments):
        raise ValueError("times must be timezone-aware (UTC in storage); naive times are refused, not guessed")


class Schedule(BaseModel):
    """One camper's schedule: its stops, the weekly plan (and one-off visits), and exceptions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camper: str = Field(pattern=CAMPER_ID_PATTERN)
    timezone: str = Field(default="Europe/Rome", description="IANA time zone of the visits' local times")
    stops: list[Stop] = Field(min_length=1)
    visits: list[Visit] = Field(default_factory=list)
    exceptions: list[ScheduleException] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as Europe/Rome)") from None
        return v

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "Schedule":
        if info.context and info.context.get(DEFER_CROSS_CHECK):
            return self
        problems = self.cross_check()
        if problems:
            raise ValueError("; ".join(f"{_dotted(path)}: {msg}" for path, msg in problems))
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def stop(self, stop_id: str) -> Stop:
        """The stop with this id; KeyError names it when unknown."""
        for s in self.stops:
            if s.id == stop_id:
                return s
        raise KeyError(f"unknown stop {stop_id!r}")

    def cross_check(self) -> list[tuple[PathKey, str]]:
        """Problems across fields, each with its key path: duplicate or unknown stops, overlaps."""
        problems: list[tuple[PathKey, str]] = []
        ids: dict[str, int] = {}
        for i, s in enumerate(self.stops):
            if s.id in ids:
                problems.append((("stops", i, "id"), f"stop id {s.id!r} already used by stops[{ids[s.id]}]"))
            ids.setdefault(s.id, i)
        for i, v in enumerate(self.visits):
            if v.stop not in ids:
                problems.append((("visits", i, "stop"), f"unknown stop {v.stop!r} (not in stops)"))
        for i, e in enumerate(self.exceptions):
            stop_id = e.visit.stop if e.visit is not None else e.stop
            if stop_id is not None and stop_id not in ids:
                key: PathKey = ("exceptions", i, "visit", "stop") if e.visit is not None else ("exceptions", i, "stop")
                problems.append((key, f"unknown stop {stop_id!r} (not in stops)"))
            if e.kind == "cancelled" and stop_id is not None and not any(
                e.cancels(v) for v in self._planned_on(e.date)
            ):
                problems.append((("exceptions", i), f"cancels nothing: no visit at {stop_id!r} on {e.date.isoformat()} matches"))
        # overlaps: weekly plan per weekday, and every date that has one-off visits
        for wd in Weekday:
            problems += self._overlaps([(("visits", i), v) for i, v in enumerate(self.visits) if v.weekday == wd], wd.value)
        dated = {v.date for v in self.visits if v.date is not None} | {e.date for e in self.exceptions if e.kind == "extra"}
        for day in sorted(dated):
            problems += self._overlaps(self._day_plan(day), day.isoformat())
        return problems

    @staticmethod
    def _overlaps(plan: list[tuple[PathKey, Visit]], when: str) -> list[tuple[PathKey, str]]:
        out: list[tuple[PathKey, str]] = []
        ordered = sorted(plan, key=lambda pv: pv[1].start)
        for (pa, a), (pb, b) in zip(ordered, ordered[1:]):
            if b.start < a.end:
                out.append(
                    (pb, f"overlaps {_dotted(pa)} on {when} ({a.start.isoformat('minutes')}-{a.end.isoformat('minutes')} "
                         f"and {b.start.isoformat('minutes')}-{b.end.isoformat('minutes')}): the camper is in one place at a time")
                )
        return out

    def _planned_on(self, day: date) -> list[Visit]:
        return [v for v in self.visits if v.occurs_on(day)]

    def _day_plan(self, day: date) -> list[tuple[PathKey, Visit]]:
        """The visits of local ``day`` after exceptions, with the key path each comes from."""
        todays = [e for e in self.exceptions if e.date == day]
        plan: list[tuple[PathKey, Visit]] = [
            (("visits", i), v) for i, v in enumerate(self.visits) if v.occurs_on(day) and not any(e.cancels(v) for e in todays)
        ]
        if not any(e.kind == "holiday" for e in todays):
            plan += [(("exceptions", i, "visit"), e.visit) for i, e in enumerate(self.exceptions)
                     if e.date == day and e.kind == "extra" and e.visit is not None]
        return plan

    def exceptions_on(self, day: date) -> list[ScheduleException]:
        """The exceptions of local ``day`` (for telling people why there is no visit)."""
        return [e for e in self.exceptions if e.date == day]

    def visits_on(self, day: date) -> list[VisitWindow]:
        """The concrete visits of local ``day``, in time order."""
        tz = self.tz
        out = [
            VisitWindow(self.stop(v.stop), tuple(v.services), day, local_to_utc(day, v.start, tz), local_to_utc(day, v.end, tz), v)
            for _, v in self._day_plan(day)
        ]
        return sorted(out, key=lambda w: w.start_utc)

    def _days(self, start_utc: datetime, end_utc: datetime) -> Iterator[date]:
        tz = self.tz
        # a local day's visits lie within that local date, so one day of margin each side is plenty
        day = start_utc.astimezone(tz).date() - timedelta(days=1)
        last = end_utc.astimezone(tz).date() + timedelta(days=1)
        while day <= last:
            yield day
            day += timedelta(days=1)

    def visits_between(self, start_utc: datetime, end_utc: datetime) -> list[VisitWindow]:
        """Concrete visits overlapping ``[start_utc, end_utc)``, in time order (weekly plan + exceptions)."""
        _require_aware(start_utc, end_utc)
        if end_utc < start_utc:
            raise ValueError(f"window ends ({end_utc.isoformat()}) before it starts ({start_utc.isoformat()})")
        return [w for d in self._days(start_utc, end_utc) for w in self.visits_on(d) if w.start_utc < end_utc and w.end_utc > start_utc]

    def current_visit(self, now: datetime, before: timedelta = timedelta(0), after: timedelta = timedelta(0)) -> VisitWindow | None:
        """The visit whose window (widened by the margins) holds ``now``; the one properly inside wins."""
        _require_aware(now)
        near = self.visits_between(now - after - timedelta(seconds=1), now + before + timedelta(seconds=1))
        hits = [w for w in near if w.contains(now, before, after)]
        inside = [w for w in hits if w.contains(now)]
        return (inside or hits or [None])[0]

    def next_visit(self, now: datetime, horizon: timedelta = NEXT_VISIT_HORIZON) -> VisitWindow | None:
        """The first visit starting after ``now`` (strictly), within ``horizon``."""
        _require_aware(now)
        # Day by day and stop at the first hit: the public view asks this on every request, and
        # building the whole horizon's visits first cost milliseconds (tests/bench/test_bench_api.py).
        # Days come in order and a day's visits lie within its local date, so the first visit
        # that starts after ``now`` is the answer.
        end = now + horizon
        for day in self._days(now, end):
            for w in self.visits_on(day):
                if w.start_utc >= end:
                    return None
                if w.start_utc > now:
                    return w
        return None


#: Longest a staff switch of the service state may last: a forgotten "on" must not publish the
#: camper's stops for ever (ARCHITECTURE.md §10).
OVERRIDE_MAX = timedelta(days=7)


class ServiceOverride(BaseModel):
    """A staff switch of the public service state: on (public although no window runs) or off
    (hidden although one does), until ``until_utc``; kept with the schedules."""

    model_config = ConfigDict(extra="forbid")

    in_service: bool
    until_utc: datetime
    set_by: str = Field(min_length=1, max_length=64)
    set_at_utc: datetime
    note: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _bounded(self) -> "ServiceOverride":
        _require_aware(self.until_utc, self.set_at_utc)
        if self.until_utc <= self.set_at_utc:
            raise ValueError("until must be after the moment the switch is set")
        if self.until_utc - self.set_at_utc > OVERRIDE_MAX:
            raise ValueError(f"a staff switch lasts at most {OVERRIDE_MAX.days} days")
        return self

    def active(self, now: datetime) -> bool:
        return now < self.until_utc


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
