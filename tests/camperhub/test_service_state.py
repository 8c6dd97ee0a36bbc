"""The public view: in service or not, at a stop or on the way, and never the camper's own coordinates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from camperhub.contract import PositionSample, StatusSample
from camperhub.schedule import Schedule, ScheduleSettings, Service, Weekday
from camperhub.service_state import (
    AtStop,
    NotInService,
    OnTheWay,
    PublicView,
    distance_m,
    estimate_eta,
    public_view,
    recent_speed_kmh,
)

pytestmark = pytest.mark.timeout(60)

A = (45.8100, 8.8200)
B = (45.8300, 8.8200)
NO_GRACE = ScheduleSettings(service_grace_before_min=0, service_grace_after_min=0)
GRACE = ScheduleSettings(service_grace_before_min=10, service_grace_after_min=15)
M_PER_DEG_LAT = 111_195.0


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _stop(id: str, latlon: tuple[float, float]) -> dict:
    return {"id": id, "name": id.upper(), "neighbourhood": f"Quartiere {id}", "address": "Via Roma 1, Varese",
            "lat": latlon[0], "lon": latlon[1], "radius_m": 100}


SCHEDULE = Schedule.model_validate({
    "camper": "varese-1", "stops": [_stop("a", A), _stop("b", B)],
    "visits": [{"stop": "a", "weekday": wd.value, "start": "09:00", "end": "12:00", "services": ["energy_workshop", "paperwork_help"]}
               for wd in Weekday] + [{"stop": "b", "weekday": "mon", "start": "14:00", "end": "16:00", "services": ["job_orientation"]}],
    "exceptions": [{"date": "2026-05-06", "kind": "holiday", "note": "Festa di prova"}],
})


def pos(ts: datetime, latlon: tuple[float, float], speed_kmh: float | None = None, seq: int = 1) -> PositionSample:
    return PositionSample(seq=seq, ts=int(ts.timestamp() * 1000), lat=latlon[0], lon=latlon[1], speed_kmh=speed_kmh, fix=3)


def north_of(latlon: tuple[float, float], metres: float) -> tuple[float, float]:
    return latlon[0] + metres / M_PER_DEG_LAT, latlon[1]


def status(in_service: bool | None) -> StatusSample:
    return StatusSample(seq=1, ts=int(utc(2026, 5, 4).timestamp() * 1000), state="online", in_service=in_service)


# --- window edges (no grace) ------------------------------------------------------------------


@pytest.mark.parametrize(("now", "in_service"), [
    (utc(2026, 5, 4, 7), True),  # 09:00 CEST exactly at start
    (utc(2026, 5, 4, 6, 59, 59), False),  # one second before
    (utc(2026, 5, 4, 9, 59, 59), True),  # last second
    (utc(2026, 5, 4, 10), False),  # exactly at end
    (utc(2026, 5, 4, 10, 0, 1), False),  # after
    (utc(2026, 3, 29, 7), True),  # spring-forward Sunday: 09:00 CEST
    (utc(2026, 3, 29, 6, 59, 59), False),
    (utc(2026, 3, 28, 8), True),  # the Saturday before: 09:00 CET
    (utc(2026, 3, 28, 7, 59, 59), False),
    (utc(2026, 10, 25, 8), True),  # fall-back Sunday: 09:00 CET
    (utc(2026, 10, 25, 7, 59, 59), False),
    (utc(2026, 10, 25, 10, 59, 59), True),
    (utc(2026, 10, 25, 11), False),
])
def test_window_edges(now: datetime, in_service: bool):
    view = public_view(SCHEDULE, None, [], now, settings=NO_GRACE)
    assert isinstance(view, AtStop if in_service else NotInService)
    if in_service:
        assert (view.stop.id, view.until_local, view.confirmed) == ("a", "12:00", False)
    else:
        local_day = now.astimezone(SCHEDULE.tz).date()
        assert view.next_stop is not None and view.next_start_local in ("09:00", "14:00")
        assert view.next_date_local in (local_day, local_day + timedelta(days=1))


def test_not_in_service_names_next_stop_and_local_time():
    view = public_view(SCHEDULE, None, [], utc(2026, 5, 4, 10, 30), settings=NO_GRACE)  # Monday 12:30
    assert isinstance(view, NotInService)
    assert (view.next_stop.id, view.next_date_local, view.next_start_local, view.next_services) == (
        "b", date(2026, 5, 4), "14:00", [Service.JOB_ORIENTATION])
    assert view.next_start_utc == utc(2026, 5, 4, 12)


def test_holiday_says_why_and_names_the_day_after():
    view = public_view(SCHEDULE, None, [], utc(2026, 5, 6, 8), settings=NO_GRACE)  # Wednesday 10:00, holiday
    assert isinstance(view, NotInService)
    assert view.note == "Festa di prova"
    assert (view.next_date_local, view.next_start_local) == (date(2026, 5, 7), "09:00")


@pytest.mark.parametrize(("now", "in_service"), [
    (utc(2026, 5, 5, 6, 50), True),  # 08:50: 10 min before
    (utc(2026, 5, 5, 6, 49, 59), False),
    (utc(2026, 5, 5, 10, 14, 59), True),  # 12:14:59: inside 15 min after
    (utc(2026, 5, 5, 10, 15), False),
])
def test_grace_margins(now: datetime, in_service: bool):
    view = public_view(SCHEDULE, None, [], now, settings=GRACE)
    assert view.state == ("in_service_at_stop" if in_service else "not_in_service")


# --- switches ---------------------------------------------------------------------------------


def test_staff_off_overrides_the_window_and_staff_on_works_outside_it():
    inside, outside = utc(2026, 5, 5, 8), utc(2026, 5, 5, 14)
    assert public_view(SCHEDULE, status(True), [], inside, staff_override=False, settings=NO_GRACE).state == "not_in_service"
    on = public_view(SCHEDULE, None, [pos(outside, B)], outside, staff_override=True, settings=NO_GRACE)
    assert isinstance(on, AtStop) and on.stop.id == "b" and on.confirmed and on.services == [] and on.until_local is None


def test_gpio_switch_on_outside_window_off_does_not_hide_a_window():
    outside, inside = utc(2026, 5, 5, 14), utc(2026, 5, 5, 8)
    assert public_view(SCHEDULE, status(True), [], outside, settings=NO_GRACE).state == "on_the_way"  # heads for the next visit
    assert public_view(SCHEDULE, status(False), [], outside, settings=NO_GRACE).state == "not_in_service"
    assert public_view(SCHEDULE, status(None), [], outside, settings=NO_GRACE).state == "not_in_service"
    assert public_view(SCHEDULE, status(False), [], inside, settings=NO_GRACE).state == "in_service_at_stop"


def test_switched_on_without_position_heads_for_the_next_visit_without_eta():
    view = public_view(SCHEDULE, status(True), [], utc(2026, 5, 4, 11), settings=NO_GRACE)  # Monday 13:00
    assert isinstance(view, OnTheWay)
    assert (view.to.id, view.eta_local, view.eta_uncertainty_min, view.scheduled_start_local) == ("b", None, None, "14:00")


# --- at a stop, on the way, privacy -----------------------------------------------------------


def test_at_stop_shows_the_stops_position_not_the_campers():
    now = utc(2026, 5, 5, 8)
    here = north_of(A, 60)  # parked 60 m from the stop's point, inside its fence
    view = public_view(SCHEDULE, None, [pos(now - timedelta(seconds=20), here, 0.0)], now, settings=NO_GRACE)
    assert isinstance(view, AtStop) and view.confirmed
    assert (view.stop.lat, view.stop.lon) == A
    assert view.services == [Service.ENERGY_WORKSHOP, Service.PAPERWORK_HELP]
    assert f"{here[0]}" not in view.model_dump_json()


def test_on_the_way_eta_from_distance_road_factor_and_speed():
    now = utc(2026, 5, 4, 11, 40)  # Monday 13:40, in b's window grace
    here = north_of(B, -3000)  # 3 km (great circle) south of b
    assert distance_m(*here, *B) == pytest.approx(3000, rel=1e-3)
    track = [pos(now - timedelta(seconds=s), here, 30.0, seq=100 - s) for s in (60, 30, 0)]
    view = public_view(SCHEDULE, None, track, now, settings=GRACE.model_copy(update={"service_grace_before_min": 30}))
    assert isinstance(view, OnTheWay) and view.to.id == "b"
    # 3 km x 1.3 = 3.9 km at 30 km/h = 7.8 min; speeds 24..36 km/h give 9.75..6.5 min, so +-1.6 -> 2
    assert (view.eta_utc - now).total_seconds() / 60 == pytest.approx(7.8, abs=0.01)
    assert view.eta_local == "13:47" and view.eta_uncertainty_min == 2
    assert view.scheduled_start_local == "14:00"
    dumped = view.model_dump_json()
    assert f"{here[0]}" not in dumped and "track" not in dumped


def test_stale_positions_are_not_used():
    now = utc(2026, 5, 5, 8)
    old = pos(now - timedelta(minutes=30), north_of(A, 5000), 40.0)
    view = public_view(SCHEDULE, None, [old], now, settings=NO_GRACE)
    assert isinstance(view, AtStop) and not view.confirmed  # per schedule, not per a half-hour-old fix


def test_late_camper_inside_its_window_is_on_the_way_to_the_window_stop():
    now = utc(2026, 5, 5, 7, 5)  # Tuesday 09:05, still 2 km away
    view = public_view(SCHEDULE, None, [pos(now, north_of(A, 2000), 25.0)], now, settings=NO_GRACE)
    assert isinstance(view, OnTheWay) and view.to.id == "a" and view.eta_local is not None


def test_estimate_eta_unknown_and_clamped_speeds():
    eta, pm = estimate_eta(3000, None)  # 25 km/h, range 15..40
    assert eta == pytest.approx(3.9 / 25 * 60) and pm == pytest.approx((3.9 / 15 - 3.9 / 40) * 60 / 2)
    fast, _ = estimate_eta(3000, (120.0, 0.0))
    assert fast == pytest.approx(3.9 / 50 * 60)  # clamped to town speed
    slow, _ = estimate_eta(3000, (2.0, 1.0))
    assert slow == pytest.approx(3.9 / 12 * 60)
    assert estimate_eta(10, (30.0, 0.0))[1] == 1.0  # at least a minute


def test_recent_speed_from_fixes_when_not_reported():
    now = utc(2026, 5, 4, 12)
    fixes = [pos(now - timedelta(seconds=120), A, seq=1), pos(now, north_of(A, 1000), seq=2)]
    mean, std = recent_speed_kmh(fixes, now)
    assert mean == pytest.approx(30, rel=1e-2) and std == 0
    assert recent_speed_kmh([pos(now - timedelta(hours=1), A, 30.0)], now) is None  # too old to be recent
    with pytest.raises(ValueError, match="timezone-aware"):
        public_view(SCHEDULE, None, [], datetime(2026, 5, 4, 12))


latlons = st.tuples(st.floats(45.78, 45.86), st.floats(8.76, 8.88))


@settings(max_examples=80, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
    where=st.lists(st.tuples(st.integers(0, 900), latlons, st.none() | st.floats(0, 90)), max_size=5),
    switch=st.none() | st.booleans(),
    staff=st.none() | st.booleans(),
)
def test_no_raw_coordinates_ever(now, where, switch, staff):
    positions = [pos(now - timedelta(seconds=age), ll, v, seq=i) for i, (age, ll, v) in enumerate(where)]
    view = public_view(SCHEDULE, status(switch), positions, now, staff_override=staff, settings=GRACE)
    stops = {(s.lat, s.lon) for s in SCHEDULE.stops}

    def coordinates(obj):
        if isinstance(obj, dict):
            if "lat" in obj or "lon" in obj:
                yield (obj["lat"], obj["lon"])
            for v in obj.values():
                yield from coordinates(v)

    dumped = TypeAdapter(PublicView).dump_python(view, mode="json")
    assert set(coordinates(dumped)) <= stops
    assert TypeAdapter(PublicView).validate_python(dumped) == view  # what the API serialises reads back
    if staff is False:
        assert view.state == "not_in_service"


def test_the_minutes_parked_at_the_last_stop_do_not_slow_the_eta():
    now = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    parked = [pos(now - timedelta(seconds=600 - 10 * i), (45.8068, 8.8128), speed_kmh=0.0, seq=i) for i in range(50)]
    driving = [pos(now - timedelta(seconds=60 - 10 * i), (45.8068, 8.8128 + 0.001 * i), speed_kmh=36.0, seq=100 + i) for i in range(6)]
    mean, _ = recent_speed_kmh(parked + driving, now)
    assert mean == pytest.approx(36.0), "only moving fixes say how fast the camper drives"
    assert recent_speed_kmh(parked, now) is None, "standing only: no speed known (the town default applies)"


def test_parked_at_another_stop_during_a_window_is_on_the_way_to_the_windows_stop():
    now = utc(2026, 5, 4, 7, 30)  # Monday 09:30, a's window; the camper still stands at b
    view = public_view(SCHEDULE, None, [pos(now - timedelta(seconds=s), B, 0.0, seq=10 - s // 30) for s in (60, 30, 0)], now,
                       settings=NO_GRACE)
    assert isinstance(view, OnTheWay) and view.to.id == "a"
    assert view.services == [Service.ENERGY_WORKSHOP, Service.PAPERWORK_HELP]
    assert view.eta_local is not None and view.eta_uncertainty_min >= 1


def test_still_at_the_last_stop_in_the_grace_after_its_window_is_at_that_stop():
    now = utc(2026, 5, 4, 14, 10)  # Monday 16:10, ten minutes after b's window, grace 15 min
    view = public_view(SCHEDULE, None, [pos(now - timedelta(seconds=10), B, 0.0)], now, settings=GRACE)
    assert isinstance(view, AtStop) and view.stop.id == "b" and view.confirmed
