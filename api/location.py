"""The public location of a camper, shared by ``/location`` and ``/location/stream``.

The decision (what the public may know) is :func:`camperhub.service_state.public_view`'s;
this module gathers its inputs (the schedule, the newest status, the positions
of the last :data:`RECENT` minutes, from the store and from the live
listener), and turns the view into JSON: UTC instants with their Europe/Rome
time beside them. It never copies a camper's own coordinates into an answer:
only :class:`~camperhub.service_state.PublicStop` positions leave this module.

A camper without a schedule still has a view from ``status.in_service``
alone: ``not_in_service`` (no next stop known) or ``in_service`` with no place
at all (there is no stop whose position could be shown instead of its own).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from camperhub.api.events import Broadcaster, Message
from camperhub.api.timefmt import LOCAL_TZ, iso_local, iso_utc
from camperhub.contract import PositionSample, StatusSample, Stream
from camperhub.schedule import Schedule, ScheduleSettings
from camperhub.schedule_io import ScheduleRepository
from camperhub.service_state import SPEED_WINDOW, NotInService, PublicStop, public_view
from camperhub.store.base import Store

#: Positions older than this do not count (the speed estimate's window; a fix must be fresher still).
RECENT = SPEED_WINDOW
POSITION_FIELDS = ("lat", "lon", "speed_kmh", "fix")
#: Days of visits the public schedule lists.
SCHEDULE_DAYS = 14
#: Keys that change with every computation and are left out of the change signature.
_VOLATILE = ("as_of_utc", "as_of_local_time", "eta_utc", "eta_local_time")


def _model_fields(model: type, fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k in model.model_fields and v is not None and not _nan(v)}  # type: ignore[attr-defined]


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def status_sample(ts_ms: int, fields: dict[str, Any]) -> StatusSample | None:
    """A status as the contract has it (seq 0 when unknown); None when it does not validate."""
    try:
        return StatusSample(**{"seq": 0, **_model_fields(StatusSample, fields), "ts": ts_ms})
    except ValidationError:
        return None


def position_sample(ts_ms: int, fields: dict[str, Any]) -> PositionSample | None:
    """A position as the contract has it; None when it does not validate (no fix, no coordinates)."""
    values = _model_fields(PositionSample, fields)
    for k in ("fix", "sats"):  # the stores' frames hold numbers as floats
        if isinstance(values.get(k), float) and values[k].is_integer():
            values[k] = int(values[k])
    try:
        return PositionSample(**{"seq": 0, **values, "ts": ts_ms})
    except ValidationError:
        return None


def render(view: Any) -> dict[str, Any]:
    """A view model as JSON: each ``*_utc`` instant as ISO UTC, with ``*_local_time`` (Europe/Rome) beside it."""
    raw = view.model_dump(mode="python")
    out: dict[str, Any] = {}
    for k, v in view.model_dump(mode="json").items():
        value = raw[k]
        if isinstance(value, datetime):
            out[k] = iso_utc(value)
            out[k.removesuffix("_utc") + "_local_time"] = iso_local(value)
        else:
            out[k] = v
    out["timezone"] = str(LOCAL_TZ)
    return out


def signature(view: dict[str, Any]) -> str:
    """What a client has seen of a view: everything but the time it was computed and the ETA's
    seconds (the ETA counts through ``eta_local``, HH:MM, and its uncertainty)."""
    body = {k: v for k, v in view.items() if k not in _VOLATILE}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclass
class LocationTracker:
    """The inputs of one camper's public view: built from the store, fed by live messages."""

    camper: str
    schedule: Schedule | None
    status: StatusSample | None = None
    positions: dict[int, PositionSample] = field(default_factory=dict)
    settings: ScheduleSettings = field(default_factory=ScheduleSettings)

    @classmethod
    def load(
        cls, camper: str, store: Store, schedules: ScheduleRepository, broadcaster: Broadcaster, now: datetime,
        settings: ScheduleSettings | None = None,
    ) -> "LocationTracker | None":
        """From the store, the schedule repository and what the live listener saw; None for a camper
        nobody knows (no schedule, nothing stored, nothing live). Blocking: run it in a thread."""
        schedule = schedules.get(camper)
        tracker = cls(camper, schedule, settings=settings or ScheduleSettings())
        stored = store.latest(camper, Stream.STATUS)
        if stored is not None:
            tracker.status = status_sample(stored.ts_ms, stored.fields)
        for stream in (Stream.STATUS, Stream.POSITION):
            live = broadcaster.latest(camper, stream.value)
            if live is not None:
                tracker.feed(live)
        frame = store.series(camper, Stream.POSITION, list(POSITION_FIELDS), now - RECENT, now + timedelta(milliseconds=1))
        for ts, row in zip(frame.index, frame.to_dict("records")):
            p = position_sample(int(ts.timestamp() * 1000), row)
            if p is not None:
                tracker.positions[p.ts] = p
        if schedule is None and tracker.status is None and not tracker.positions and camper not in store.campers():
            return None
        return tracker

    def reload_schedule(self, schedules: ScheduleRepository) -> None:
        """Pick up a schedule saved since (blocking)."""
        self.schedule = schedules.get(self.camper)

    def feed(self, msg: Message) -> None:
        """A live status or position (a :func:`camperhub.api.views.sample_view` message)."""
        fields = msg.data.get("fields", {})
        if msg.stream == Stream.STATUS.value:
            s = status_sample(msg.ts_ms, fields)
            if s is not None and (self.status is None or s.ts >= self.status.ts):
                self.status = s
        elif msg.stream == Stream.POSITION.value:
            p = position_sample(msg.ts_ms, fields)
            if p is not None:
                self.positions[p.ts] = p

    def view(self, now: datetime) -> dict[str, Any]:
        """The public view at ``now`` as JSON (see the module doc)."""
        now = now.astimezone(UTC)
        oldest = int((now - RECENT).timestamp() * 1000)
        for ts in [t for t in self.positions if t < oldest]:
            del self.positions[ts]
        if self.schedule is not None:
            return render(public_view(self.schedule, self.status, list(self.positions.values()), now, settings=self.settings))
        if self.status is not None and self.status.in_service is True:
            return {
                "camper": self.camper, "as_of_utc": iso_utc(now), "as_of_local_time": iso_local(now), "state": "in_service",
                "note": "in service, but without a schedule there is no stop whose position could be shown",
                "timezone": str(LOCAL_TZ),
            }
        return render(NotInService(camper=self.camper, as_of_utc=now))


def schedule_view(schedule: Schedule, now: datetime, days: int = SCHEDULE_DAYS) -> dict[str, Any]:
    """The public schedule: stops, the concrete visits of the next ``days`` local days (starting
    today) with UTC and local times and services, and the exceptions from today on."""
    tz = schedule.tz
    today = now.astimezone(tz).date()
    start = datetime.combine(today, datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=days), datetime.min.time(), tz).astimezone(UTC)
    visits = [
        {
            "stop": w.stop.id,
            "stop_name": w.stop.name,
            "neighbourhood": w.stop.neighbourhood,
            "date": w.local_date.isoformat(),
            "weekday": w.local_date.strftime("%a").lower(),
            "start_local": w.start_utc.astimezone(tz).strftime("%H:%M"),
            "end_local": w.end_utc.astimezone(tz).strftime("%H:%M"),
            "start": {"utc": iso_utc(w.start_utc), "local": iso_local(w.start_utc)},
            "end": {"utc": iso_utc(w.end_utc), "local": iso_local(w.end_utc)},
            "services": [s.value for s in w.services],
        }
        for w in schedule.visits_between(start, end)
        if start <= w.start_utc < end
    ]
    return {
        "camper": schedule.camper,
        "timezone": schedule.timezone,
        "from": today.isoformat(),
        "days": days,
        "stops": [PublicStop.of(s).model_dump() for s in schedule.stops],
        "visits": visits,
        "exceptions": [e.model_dump(mode="json", exclude_none=True) for e in schedule.exceptions if e.date >= today],
    }
