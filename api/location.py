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

The stream's view is computed once per camper and update, not once per client
(ARCHITECTURE.md §11: one process holds 5,000 stream clients, and a view costs
milliseconds): a :class:`LocationFeed` per camper with clients holds the one
tracker, subscribes to the live messages once, recomputes the view on each of
them and on the periodic refresh, and when the view changed encodes it once
as a server-sent event that every client sends as it is (views form a chain
that each client follows: :class:`SharedView`). :class:`LocationHub` (one per Broadcaster, i.e. per process) opens
a camper's feed with its first client and closes it with its last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from camperhub.api.events import Broadcaster, Message, Subscription
from camperhub.api.timefmt import LOCAL_TZ, iso_local, iso_utc
from camperhub.contract import PositionSample, StatusSample, Stream
from camperhub.schedule import Schedule, ScheduleSettings, ServiceOverride
from camperhub.schedule_io import ScheduleRepository
from camperhub.service_state import SPEED_WINDOW, NotInService, PublicStop, public_view
from camperhub.store.base import Store

log = logging.getLogger(__name__)
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
    override: ServiceOverride | None = None

    @classmethod
    def load(
        cls, camper: str, store: Store, schedules: ScheduleRepository, broadcaster: Broadcaster, now: datetime,
        settings: ScheduleSettings | None = None,
    ) -> "LocationTracker | None":
        """From the store, the schedule repository and what the live listener saw; None for a camper
        nobody knows (no schedule, nothing stored, nothing live). Blocking: run it in a thread."""
        schedule = schedules.get(camper)
        tracker = cls(camper, schedule, settings=settings or ScheduleSettings(), override=schedules.override(camper))
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
        """Pick up a schedule or a staff switch saved since (blocking)."""
        self.schedule = schedules.get(self.camper)
        self.override = schedules.override(self.camper)

    def staff_override(self, now: datetime) -> bool | None:
        """The staff switch in force at ``now`` (True on, False off), None when none is."""
        return self.override.in_service if self.override is not None and self.override.active(now) else None

    def merge(self, older: "LocationTracker") -> None:
        """Keep what ``older`` knows and this (newly loaded) tracker does not: newer status, more positions."""
        if older.status is not None and (self.status is None or older.status.ts > self.status.ts):
            self.status = older.status
        self.positions = {**older.positions, **self.positions}

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
            return render(public_view(
                self.schedule, self.status, list(self.positions.values()), now, staff_override=self.staff_override(now), settings=self.settings,
            ))
        switch = self.staff_override(now)
        if switch if switch is not None else (self.status is not None and self.status.in_service is True):
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


# -- the shared stream of one camper's view ----------------------------------------------------
#: The live streams the view depends on.
VIEW_STREAMS = frozenset({Stream.STATUS.value, Stream.POSITION.value})
#: A client that joins gets a view recomputed at once when the shared one is older than this.
FRESH_S = 1.0


class SharedView:
    """One computed view: its signature and the server-sent event every client sends (encoded once).

    Views form a chain: when a different view replaces this one, ``next`` is set and
    ``changed`` fires (when the feed closes, ``changed`` fires with ``next`` None). A
    client follows the chain, so it sends every view in turn even when several came
    while it was busy; one that lags more than ``LocationFeed.max_lag`` views behind
    skips to the newest.
    """

    __slots__ = ("n", "sig", "event", "changed", "next")

    def __init__(self, n: int, sig: str, event: bytes) -> None:
        self.n = n
        self.sig = sig
        self.event = event
        self.changed = asyncio.Event()
        self.next: SharedView | None = None


class LocationFeed:
    """One camper's public view for all its stream clients (see the module doc); lives on the loop."""

    def __init__(
        self, hub: "LocationHub", tracker: LocationTracker, sub: Subscription, *, store: Store, schedules: ScheduleRepository,
        clock: Callable[[], datetime], refresh_s: float,
    ) -> None:
        self.hub = hub
        self.camper = tracker.camper
        self.tracker = tracker
        self.sub = sub
        self.store = store
        self.schedules = schedules
        self.clock = clock
        self.refresh_s = refresh_s
        self.clients = 0
        self.closed = False
        self.computed = 0  # views computed (all clients together)
        self.max_lag = hub.broadcaster.queue_size
        self._msg_id = hub.broadcaster.last_id()
        self._view: SharedView | None = None
        self._at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._compute()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"location-feed-{self.camper}")

    def current(self) -> SharedView | None:
        """The view now, for a client that joins (recomputed when older than FRESH_S); None once closed."""
        if self.closed:
            return None
        if asyncio.get_running_loop().time() - self._at > FRESH_S:
            self._compute()
        return self._view

    def after(self, view: SharedView) -> SharedView | None:
        """The view a client sends after ``view`` (once ``view.changed`` fired): the next one, or the
        newest when it lags more than ``max_lag`` views behind; None once the feed is closed."""
        nxt = view.next
        if nxt is None or self.closed or self._view is None:
            return None
        return self._view if self._view.n - nxt.n >= self.max_lag else nxt

    def leave(self) -> None:
        """A client is gone; the last one closes the feed."""
        self.clients -= 1
        if self.clients <= 0:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sub.close()
        self.hub._forget(self)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._view is not None:
            self._view.changed.set()  # wakes every client: after() is None, their streams end

    def _compute(self) -> None:
        view = self.tracker.view(self.clock())
        self.computed += 1
        self._at = asyncio.get_running_loop().time()
        sig = signature(view)
        old = self._view
        if old is not None and old.sig == sig:
            return
        event = ServerSentEvent(data=json.dumps(view, ensure_ascii=False), event="location", id=f"{self._msg_id}:{sig}").encode()
        self._view = SharedView(old.n + 1 if old is not None else 0, sig, event)
        if old is not None:
            old.next = self._view
            old.changed.set()

    def _feed(self, msg: Message) -> None:
        self.tracker.feed(msg)
        self._msg_id = msg.id

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.refresh_s
        try:
            while not self.closed:
                try:
                    msg = await asyncio.wait_for(self.sub.queue.get(), timeout=max(0.0, due - loop.time()))
                except asyncio.TimeoutError:
                    # the periodic refresh: time moves ETAs and windows; a schedule may have been saved,
                    # the store may hold what the live listener did not see (it is off, or was reconnecting)
                    if self.clients <= 0:
                        return
                    await self._reload()
                    due = loop.time() + self.refresh_s
                    self._compute()
                    continue
                if msg is None:
                    if not self.sub.dropped:  # the broadcaster closed: shutting down
                        return
                    # too far behind (the loop was busy): what was missed comes from the replay ring
                    self.sub = self.hub.broadcaster.subscribe(self.camper, VIEW_STREAMS, last_id=self._msg_id)
                    if not self.sub.replay_complete:
                        await self._reload()
                else:
                    self._feed(msg)
                self._compute()  # one view per message: every client sees each change in turn
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the location feed of %s failed; its clients reconnect", self.camper)
        finally:
            self.close()

    def reload_soon(self) -> None:
        """Re-read the inputs now (staff saved a schedule or switched the service), not at the next refresh."""

        async def reload_and_compute() -> None:
            await self._reload()
            if not self.closed:
                self._compute()

        task = asyncio.get_running_loop().create_task(reload_and_compute(), name=f"location-reload-{self.camper}")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        try:
            fresh = await run_in_threadpool(
                LocationTracker.load, self.camper, self.store, self.schedules, self.hub.broadcaster, self.clock(), self.tracker.settings
            )
        except Exception as exc:  # the store is unavailable just now: keep what the feed knows
            log.warning("location feed of %s: reloading failed (%s); keeping the current inputs", self.camper, exc)
            return
        if fresh is not None:
            fresh.merge(self.tracker)
            self.tracker = fresh


class LocationHub:
    """The location feeds of one process (one per Broadcaster): ``await hub.join(...)`` per stream client."""

    _hubs: "weakref.WeakKeyDictionary[Broadcaster, LocationHub]" = weakref.WeakKeyDictionary()

    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self._feeds: dict[str, LocationFeed] = {}
        self._opening: dict[str, asyncio.Future[LocationFeed | None]] = {}
        self._views: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self._computing: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    @classmethod
    def of(cls, broadcaster: Broadcaster) -> "LocationHub":
        hub = cls._hubs.get(broadcaster)
        if hub is None:
            hub = cls._hubs[broadcaster] = cls(broadcaster)
        return hub

    @property
    def feeds(self) -> int:
        return len(self._feeds)

    async def join(
        self, camper: str, *, store: Store, schedules: ScheduleRepository, clock: Callable[[], datetime], refresh_s: float,
        settings: ScheduleSettings | None = None,
    ) -> LocationFeed | None:
        """The camper's feed, counting one more client (call ``feed.leave()`` when it goes); None for a
        camper nobody knows. The first client's join loads the inputs; those joining meanwhile wait for it."""
        while True:
            feed = self._feeds.get(camper)
            if feed is not None and not feed.closed:
                feed.clients += 1
                return feed
            opening = self._opening.get(camper)
            if opening is None:
                opening = asyncio.ensure_future(self._open(camper, store, schedules, clock, refresh_s, settings))
                self._opening[camper] = opening
                opening.add_done_callback(lambda _f, c=camper: self._opening.pop(c, None))
            # shielded: a client that leaves while the inputs load must not cancel the others' load
            if await asyncio.shield(opening) is None:
                return None
            # loop: take the feed as registered (it may have closed meanwhile, on shutdown)

    async def _open(
        self, camper: str, store: Store, schedules: ScheduleRepository, clock: Callable[[], datetime], refresh_s: float,
        settings: ScheduleSettings | None,
    ) -> LocationFeed | None:
        sub = self.broadcaster.subscribe(camper, VIEW_STREAMS)  # first: nothing published during the load is missed
        try:
            tracker = await run_in_threadpool(LocationTracker.load, camper, store, schedules, self.broadcaster, clock(), settings)
        except BaseException:
            sub.close()
            raise
        if tracker is None:
            sub.close()
            return None
        feed = LocationFeed(self, tracker, sub, store=store, schedules=schedules, clock=clock, refresh_s=refresh_s)
        try:
            feed.start()
        except BaseException:
            sub.close()
            raise
        self._feeds[camper] = feed
        return feed

    async def view(
        self, camper: str, *, store: Store, schedules: ScheduleRepository, clock: Callable[[], datetime],
        settings: ScheduleSettings, fresh_s: float,
    ) -> dict[str, Any] | None:
        """The public view for ``GET /location``: computed at most once per ``fresh_s`` of the clock per
        camper, by one request while the others arriving meanwhile wait for it; None for a camper nobody knows.

        Why: every request asking the store, the schedule file and the view for the same answer cost
        several milliseconds of CPU each, and /location served 75 requests/s at 500 connections
        where a bare endpoint served 2,000 (tests/bench/test_bench_api.py). The answer already
        carries ``Cache-Control: max-age`` of a few seconds, so a one-second server copy changes
        nothing a client can see; a staff change drops it at once (:meth:`reload`).
        """
        now = clock()
        hit = self._views.get(camper)
        if hit is not None and timedelta(0) <= now - hit[0] < timedelta(seconds=fresh_s):
            return hit[1]
        computing = self._computing.get(camper)
        if computing is None:
            computing = asyncio.ensure_future(self._compute_view(camper, store, schedules, clock, settings, fresh_s))
            self._computing[camper] = computing
            computing.add_done_callback(lambda _f, c=camper: self._computing.pop(c, None))
        return await asyncio.shield(computing)

    async def _compute_view(
        self, camper: str, store: Store, schedules: ScheduleRepository, clock: Callable[[], datetime],
        settings: ScheduleSettings, fresh_s: float,
    ) -> dict[str, Any] | None:
        now = clock()
        tracker = await run_in_threadpool(LocationTracker.load, camper, store, schedules, self.broadcaster, now, settings)
        if tracker is None:
            return None
        view = tracker.view(now)
        if fresh_s > 0:
            self._views[camper] = (now, view)
        return view

    def reload(self, camper: str) -> None:
        """Staff changed the camper's schedule or service switch: its stream clients get the new view now."""
        self._views.pop(camper, None)
        feed = self._feeds.get(camper)
        if feed is not None and not feed.closed:
            feed.reload_soon()

    def _forget(self, feed: LocationFeed) -> None:
        if self._feeds.get(feed.camper) is feed:
            del self._feeds[feed.camper]
