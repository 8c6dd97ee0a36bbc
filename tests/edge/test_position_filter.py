"""Position by distance and time: which fixes the agent publishes."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camperhub.edge.gps import GpsFix
from camperhub.edge.position_filter import EARTH_RADIUS_M, GeoFence, PositionSmoother, PositionThrottle, haversine_m
from camperhub.edge.stops import load_stops

VARESE = (45.8200, 8.8300)
#: One metre of latitude, in degrees.
M_LAT = 1 / 111_195.0


def fix_at(lat: float, lon: float) -> GpsFix:
    return GpsFix(fix=3, time_ms=None, boot_ms=0, lat=lat, lon=lon)


NO_FIX = GpsFix(fix=0, time_ms=None, boot_ms=0)


def north(metres: float) -> GpsFix:
    return fix_at(VARESE[0] + metres * M_LAT, VARESE[1])


# -- distance ------------------------------------------------------------------


def test_haversine_known_distances() -> None:
    assert haversine_m(*VARESE, *VARESE) == 0
    # one degree of latitude on the mean sphere
    assert haversine_m(0, 0, 1, 0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    # Varese station to Milano Centrale: about 50 km
    assert haversine_m(45.8164, 8.8329, 45.4859, 9.2043) == pytest.approx(46_000, rel=0.03)
    assert haversine_m(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_M)


lat_st = st.floats(-90, 90, allow_nan=False)
lon_st = st.floats(-180, 180, allow_nan=False)


@given(lat_st, lon_st, lat_st, lon_st)
def test_haversine_is_a_symmetric_bounded_distance(la1: float, lo1: float, la2: float, lo2: float) -> None:
    d = haversine_m(la1, lo1, la2, lo2)
    assert 0 <= d <= math.pi * EARTH_RADIUS_M + 1e-6
    assert d == pytest.approx(haversine_m(la2, lo2, la1, lo1), abs=1e-6)


@given(lat_st, lon_st, lat_st, lon_st, lat_st, lon_st)
def test_haversine_triangle_inequality(a1: float, o1: float, a2: float, o2: float, a3: float, o3: float) -> None:
    assert haversine_m(a1, o1, a3, o3) <= haversine_m(a1, o1, a2, o2) + haversine_m(a2, o2, a3, o3) + 1e-3


# -- the throttle ----------------------------------------------------------------


def test_first_fix_is_accepted_then_nothing_while_parked_until_the_heartbeat() -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    assert t.accept(fix_at(*VARESE), 0.0) and t.reason == "first"
    assert not any(t.accept(fix_at(*VARESE), s) for s in range(1, 900))
    assert t.accept(fix_at(*VARESE), 900.0) and t.reason == "heartbeat"
    assert not t.accept(fix_at(*VARESE), 901.0)
    assert (t.accepted, t.rejected) == (2, 900)


def test_moving_needs_both_distance_and_interval() -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    t.accept(north(0), 0.0)
    assert not t.accept(north(500), 10.0)  # far, but too soon
    assert not t.accept(north(99), 40.0)  # late enough, but not far enough (99 m from the last accepted)
    assert t.accept(north(101), 41.0) and t.reason == "moved"
    # distance counts from the last *accepted* position, not from the last seen one
    assert not t.accept(north(150), 80.0)
    assert t.accept(north(201.5), 81.0)


def test_losing_and_regaining_the_fix_is_reported_at_once() -> None:
    t = PositionThrottle()
    t.accept(north(0), 0.0)
    assert t.accept(NO_FIX, 1.0) and t.reason == "fix_lost"
    assert not t.accept(NO_FIX, 2.0)  # still lost: nothing new to say
    assert t.accept(north(0), 3.0) and t.reason == "fix_regained"
    assert not t.accept(north(0), 4.0)


def test_no_fix_from_the_start_then_heartbeat_and_regain() -> None:
    t = PositionThrottle(max_interval_s=600)
    assert t.accept(NO_FIX, 0.0) and t.reason == "first"
    assert not t.accept(NO_FIX, 599.0)
    assert t.accept(NO_FIX, 600.0) and t.reason == "heartbeat"
    assert t.accept(north(0), 601.0) and t.reason == "fix_regained"


def test_flapping_can_be_damped_without_losing_the_change() -> None:
    t = PositionThrottle(min_change_interval_s=10)
    t.accept(north(0), 0.0)
    assert not t.accept(NO_FIX, 5.0)  # held back
    assert t.accept(NO_FIX, 10.0) and t.reason == "fix_lost"  # reported once the wait is over
    assert not t.accept(north(0), 12.0)
    assert not t.accept(NO_FIX, 13.0)  # back to what was last reported: nothing to say
    assert t.accept(north(0), 20.0) and t.reason == "fix_regained"


def test_clock_going_back_restarts_the_intervals() -> None:
    t = PositionThrottle(max_interval_s=100)
    t.accept(north(0), 1000.0)
    assert not t.accept(north(0), 10.0)
    assert t.accept(north(0), 110.0) and t.reason == "heartbeat"


@pytest.mark.parametrize("kwargs", [
    {"min_distance_m": -1}, {"min_interval_s": -1}, {"max_interval_s": 0}, {"min_interval_s": 60, "max_interval_s": 30},
    {"min_change_interval_s": -1},
])
def test_refuses_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PositionThrottle(**kwargs)


# -- properties over random drives ----------------------------------------------------


step_st = st.tuples(
    st.floats(0.1, 120, allow_nan=False),  # seconds since the previous fix
    st.floats(-300, 300, allow_nan=False),  # metres moved north
    st.booleans(),  # has a fix
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step_st, min_size=1, max_size=200))
def test_random_drive_respects_distance_time_and_heartbeat(steps: list[tuple[float, float, bool]]) -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    now, pos = 0.0, 0.0
    accepted: list[tuple[float, GpsFix, str]] = []
    for i, (dt, dn, has) in enumerate(steps):
        now += dt if i else 0.0
        pos += dn
        fix = north(pos) if has else NO_FIX
        if t.accept(fix, now):
            assert t.reason is not None
            accepted.append((now, fix, t.reason))
    assert accepted[0][0] == 0.0 and accepted[0][2] == "first"
    for (t0, f0, _), (t1, f1, why) in zip(accepted, accepted[1:]):
        gap = t1 - t0
        if why == "moved":
            assert gap >= 30 and f0.has_fix and f1.has_fix
            assert haversine_m(f0.lat, f0.lon, f1.lat, f1.lon) >= 100  # type: ignore[arg-type]
        elif why == "heartbeat":
            assert gap >= 900
        else:
            assert why in ("fix_lost", "fix_regained") and f0.has_fix != f1.has_fix
    # never silent for a heartbeat: a fix seen 900 s after the last accepted one is accepted
    times = [0.0]
    for dt, _, _ in steps[1:]:
        times.append(times[-1] + dt)
    acc_times = [a[0] for a in accepted]
    for s in times:
        assert s - max(a for a in acc_times if a <= s) < 900


@settings(max_examples=100, deadline=None)
@given(st.floats(1, 5, allow_nan=False), st.integers(60, 3000))
def test_parked_camper_sends_one_fix_per_heartbeat(period_s: float, n: int) -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    sent: list[tuple[float, str | None]] = []
    for i in range(n):
        if t.accept(north((i % 7) * 3.0), i * period_s):  # a parked receiver's jitter of a few metres
            sent.append((i * period_s, t.reason))
    assert sent[0] == (0.0, "first") and all(why == "heartbeat" for _, why in sent[1:])
    assert all(900 <= b - a < 900 + period_s for (a, _), (b, _) in zip(sent, sent[1:]))
    assert (n - 1) * period_s - sent[-1][0] < 900


# -- more often when moving --------------------------------------------------------------


def moving(metres: float, kmh: float | None) -> GpsFix:
    return GpsFix(fix=3, time_ms=None, boot_ms=0, lat=VARESE[0] + metres * M_LAT, lon=VARESE[1], speed_kmh=kmh)


def test_a_fast_camper_is_reported_more_often() -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900, fast_speed_kmh=20, fast_min_interval_s=10)
    t.accept(moving(0, 40), 0.0)
    assert not t.accept(moving(110, 40), 9.9)
    assert t.accept(moving(111, 40), 10.0) and t.reason == "moved"
    # slow (or no speed given): the normal interval
    assert not t.accept(moving(300, 15), 25.0)
    assert not t.accept(moving(300, None), 25.0)
    assert t.accept(moving(300, 15), 40.0) and t.reason == "moved"
    # switched off
    off = PositionThrottle(fast_speed_kmh=None)
    off.accept(moving(0, 90), 0.0)
    assert not off.accept(moving(500, 90), 20.0)


def test_fast_interval_is_never_longer_than_the_normal_one() -> None:
    t = PositionThrottle(min_distance_m=50, min_interval_s=0, max_interval_s=600)  # what a live-ish config asks
    t.accept(moving(0, 40), 0.0)
    assert t.accept(moving(60, 40), 1.0) and t.reason == "moved"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 5), st.floats(0, 150)), min_size=2, max_size=300))
def test_moved_reports_respect_the_interval_of_their_speed(steps: list[tuple[float, float]]) -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900, fast_speed_kmh=20, fast_min_interval_s=10)
    now = pos = 0.0
    last = 0.0
    for i, (dt, kmh) in enumerate(steps):
        if i:
            now += dt
            pos += kmh / 3.6 * dt
        if t.accept(moving(pos, kmh), now):
            if t.reason == "moved":
                assert now - last >= (10 if kmh >= 20 else 30)
            last = now


# -- the smoother: jumps, jitter, stops ------------------------------------------------------

M_LON = 1 / (111_195.0 * math.cos(math.radians(VARESE[0])))


def at(north_m: float, east_m: float = 0.0, kmh: float | None = 0.5, hdop: float | None = 1.0) -> GpsFix:
    return GpsFix(fix=3, time_ms=None, boot_ms=0, lat=VARESE[0] + north_m * M_LAT, lon=VARESE[1] + east_m * M_LON,
                  speed_kmh=kmh, hdop=hdop)


def test_kilometre_jumps_within_a_second_are_dropped_and_the_trail_goes_on() -> None:
    s = PositionSmoother()
    assert s.smooth(at(0, kmh=40), 0.0) is not None
    assert s.smooth(at(11, kmh=40), 1.0) is not None
    assert s.smooth(at(1500, kmh=40), 2.0) is None and s.action == "jump"  # 1.5 km in a second
    assert s.smooth(at(-2000, 300, kmh=40), 2.5) is None
    out = s.smooth(at(33, kmh=40), 3.0)  # back on the trail: 22 m in 2 s from the last good fix
    assert out is not None and s.action == "moving" and out.lat == pytest.approx(VARESE[0] + 33 * M_LAT)
    assert s.counters.jumps_dropped == 2


def test_a_long_gap_allows_a_long_way() -> None:
    s = PositionSmoother(max_speed_kmh=200)
    s.smooth(at(0, kmh=40), 0.0)
    assert s.smooth(at(5000, kmh=40), 120.0) is not None  # 5 km in 2 min: 150 km/h, possible
    assert s.smooth(at(20_000, kmh=40), 180.0) is None  # 15 km in 1 min: no


def test_consistent_fixes_far_away_become_the_new_reference() -> None:
    """A bad first fix (a cold start's guess) must not lock out every true one after it."""
    s = PositionSmoother(reanchor_after=5)
    s.smooth(at(50_000, kmh=30), 0.0)  # the bad one
    outs = [s.smooth(at(i * 8.0, kmh=30), 1.0 + i) for i in range(6)]
    assert outs[:4] == [None] * 4
    assert outs[4] is not None and s.counters.reanchored == 1
    assert outs[5] is not None and s.action == "moving"


def test_scattered_outliers_never_reanchor() -> None:
    s = PositionSmoother(reanchor_after=3)
    s.smooth(at(0), 0.0)
    for i in range(1, 50):  # every other fix an outlier in a different far place
        out = s.smooth(at(((-1) ** i) * 5000 * i, kmh=0.5), float(i) / 10)
        assert out is None
    assert s.counters.reanchored == 0


def test_no_fix_passes_unchanged() -> None:
    s = PositionSmoother()
    assert s.smooth(NO_FIX, 0.0) is NO_FIX and s.action == "no_fix"


def _stationary_hour(seed: int) -> list[tuple[float, GpsFix]]:
    """An hour at 1 Hz of a parked receiver: a seeded random walk kept within +-10 m, speed under 1.5 km/h."""
    rng = random.Random(seed)
    n = e = 0.0
    out = []
    for i in range(3600):
        n = max(-10.0, min(10.0, n + rng.uniform(-2, 2)))
        e = max(-10.0, min(10.0, e + rng.uniform(-2, 2)))
        out.append((float(i), at(n, e, kmh=rng.uniform(0, 1.5), hdop=rng.uniform(0.7, 2.5))))
    return out


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_stationary_hour_of_jitter_makes_no_false_move(seed: int) -> None:
    smoother = PositionSmoother()
    throttle = PositionThrottle(min_distance_m=10, min_interval_s=5, max_interval_s=900)  # eager on purpose
    published = []
    for now, fix in _stationary_hour(seed):
        out = smoother.smooth(fix, now)
        assert out is not None  # jitter is never a "jump"
        if throttle.accept(out, now):
            published.append((now, throttle.reason, out.lat, out.lon))
    assert [why for _, why, _, _ in published] == ["first", "heartbeat", "heartbeat", "heartbeat"]
    assert len({(lat, lon) for _, _, lat, lon in published}) == 1  # the held position, every time
    assert smoother.counters.held == 3599


def test_the_same_jitter_without_the_smoother_would_move() -> None:
    """The case above is not vacuous: the raw fixes do wander past an eager throttle's distance."""
    throttle = PositionThrottle(min_distance_m=10, min_interval_s=5, max_interval_s=900)
    reasons = [throttle.reason for now, fix in _stationary_hour(1) if throttle.accept(fix, now)]
    assert reasons.count("moved") > 10


def test_driving_off_releases_the_hold() -> None:
    s = PositionSmoother()
    s.smooth(at(0), 0.0)
    assert s.smooth(at(5), 1.0).lat == VARESE[0]  # type: ignore[union-attr]
    out = s.smooth(at(15, kmh=25), 2.0)
    assert out is not None and out.lat == pytest.approx(VARESE[0] + 15 * M_LAT) and s.action == "moving"
    out = s.smooth(at(60, kmh=1), 10.0)  # stopped elsewhere: the new place is held from now
    assert out is not None and s.action == "parked"
    assert s.smooth(at(62, kmh=1), 11.0).lat == out.lat  # type: ignore[union-attr]


def test_hold_radius_grows_with_hdop() -> None:
    s = PositionSmoother(jitter_radius_m=30)
    s.smooth(at(0), 0.0)
    assert s.smooth(at(50, hdop=1.0), 1.0).lat != VARESE[0]  # type: ignore[union-attr]
    s = PositionSmoother(jitter_radius_m=30)
    s.smooth(at(0), 0.0)
    assert s.smooth(at(50, hdop=2.0), 1.0).lat == VARESE[0]  # type: ignore[union-attr]


def test_inside_a_geofence_a_slow_camper_snaps_to_the_stop() -> None:
    stop = GeoFence("giubiano", VARESE[0] + 100 * M_LAT, VARESE[1], 80)
    s = PositionSmoother(stops=[stop])
    out = s.smooth(at(40, kmh=5), 0.0)
    assert out is not None and (out.lat, out.lon) == (stop.lat, stop.lon) and s.stop == "giubiano" and s.action == "snapped"
    assert out.speed_kmh == 5 and out.fix == 3  # only the position changes
    out = s.smooth(at(30, kmh=40), 10.0)  # driving through: not snapped
    assert out is not None and s.stop is None and out.lat == pytest.approx(VARESE[0] + 30 * M_LAT)
    out = s.smooth(at(300, kmh=3), 30.0)  # outside
    assert out is not None and s.stop is None


def test_overlapping_fences_snap_to_the_nearest_and_stops_come_in_any_form() -> None:
    stops = load_stops()
    g = next(x for x in stops if x.id == "giubiano")
    s = PositionSmoother(stops=[*stops, ("near-giubiano", g.lat + 150 * M_LAT, g.lon, 120.0)])
    out = s.smooth(GpsFix(fix=3, time_ms=None, boot_ms=0, lat=g.lat + 50 * M_LAT, lon=g.lon, speed_kmh=0.0), 0.0)
    assert out is not None and s.stop == "giubiano" and (out.lat, out.lon) == (g.lat, g.lon)
    s2 = PositionSmoother(stops=[*stops, ("near-giubiano", g.lat + 150 * M_LAT, g.lon, 120.0)])
    s2.smooth(GpsFix(fix=3, time_ms=None, boot_ms=0, lat=g.lat + 110 * M_LAT, lon=g.lon, speed_kmh=0.0), 0.0)
    assert s2.stop == "near-giubiano"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.5, 10), st.floats(0, 130), st.floats(0, 360)), min_size=2, max_size=120),
    st.lists(st.integers(1, 119), max_size=10, unique=True),
    st.floats(5_000, 200_000),
)
def test_random_drive_with_outliers_keeps_every_true_fix_and_no_outlier(
    steps: list[tuple[float, float, float]], bad: list[int], jump_m: float
) -> None:
    """A drive below 130 km/h with isolated outliers kilometres away: only the outliers go."""
    s = PositionSmoother(reanchor_after=5)
    now = n = e = 0.0
    bad_set = {i for i in bad if i < len(steps) and i - 1 not in bad}  # isolated: never two in a row
    for i, (dt, kmh, course) in enumerate(steps):
        if i:
            now += dt
            n += kmh / 3.6 * dt * math.cos(math.radians(course))
            e += kmh / 3.6 * dt * math.sin(math.radians(course))
        if i in bad_set:
            assert s.smooth(at(n + jump_m, e, kmh=kmh), now) is None
        else:
            out = s.smooth(at(n, e, kmh=kmh), now)
            assert out is not None
