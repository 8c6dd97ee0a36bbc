"""Physical model of the Varese camper's solar system, for the Modbus simulators.

The demo, the tests and the benchmarks need readings that *behave* like the real
camper (a 400 Wp roof, an MPPT, a 12.8 V 200 Ah LiFePO4 pack and the workshop's
loads), so that dashboards, alarms and the workshop "what if" tools show
something credible without the van. Values are in the units of
``camperhub.contract.EnergySample`` and always inside its ranges.

How it is built, and why:

* Everything that does not depend on the battery (sun, clouds, temperatures,
  load) is a pure function of time, spec and seed, computed once per *local*
  day as arrays on a 10 s grid (pvlib is vectorised and far too slow per call).
  So the same seed gives the same sky and the same coffee breaks whatever the
  order of the calls.
* The battery (SOC, charge stage, counters, temperatures) is the only state; it
  is integrated forward in steps of at most 10 s from the last evaluated time.
  A time earlier than the last one does not integrate backwards: the integrated
  state is held and only the instantaneous quantities are recomputed for it.
* A gap longer than ``MAX_CATCHUP_S`` is skipped with the state held (as if the
  camper stood parked with nothing running) and only its last part integrated:
  a simulator paused for weeks would otherwise stall its caller.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import warnings
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pvlib
from pvlib.location import Location
from scipy.signal import lfilter

#: Where the camper lives: (latitude, longitude) in degrees, WGS84.
VARESE: tuple[float, float] = (45.82, 8.83)
VARESE_ALTITUDE_M = 380.0
LOCAL_TZ = ZoneInfo("Europe/Rome")

STEP_S = 10  # integration step and grid of the per-day arrays
MAX_CATCHUP_S = 2 * 86400

# PV: two ~200 W 12 V-class panels in series (Vmp ~18.5 V, Voc ~22.2 V each).
SYSTEM_LOSSES = 0.86  # wiring, soiling, mismatch, MPPT conversion (PVGIS uses 14 %)
GAMMA_PER_C = -0.0037  # power temperature coefficient of mono-Si
VMP_STC_V = 37.0
VOC_STC_V = 44.4
BETA_VOC_PER_C = -0.0029
PV_MIN_W = 3.0  # below this the MPPT does not start harvesting (dawn, dusk)
MPPT_MAX_CHARGE_A = 30.0  # a 100/30 class controller, right for 400 Wp at 12 V
U_C_ROOF = 20.0  # pvsyst heat-loss factor: rack a few cm above a van roof

# Battery: LiFePO4, per-cell open-circuit voltage vs SOC (flat middle, steep ends).
_OCV_SOC = (0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 90.0, 95.0, 99.0, 100.0)
_OCV_CELL_V = (2.90, 3.10, 3.20, 3.28, 3.30, 3.32, 3.34, 3.36, 3.38, 3.42, 3.45)
CELL_NOMINAL_V = 3.2
ABSORPTION_CELL_V = 3.55  # 14.2 V for 4 cells
FLOAT_CELL_V = 3.375  # 13.5 V
R_INTERNAL_OHM_12V = 0.010  # pack + BMS + cables of a 12.8 V pack
BULK_END_SOC = 90.0
FULL_SOC = 99.9
REBULK_SOC = 95.0
LVD_SOC, LVD_RECONNECT_SOC = 1.0, 10.0  # BMS load disconnect hysteresis
SOH_FLOOR_PCT = 20.0  # a pack below this is scrap; keeps the capacity positive
TAU_BATTERY_S = 2 * 3600.0
TAU_CONTROLLER_S = 600.0

# Ambient: approximate monthly mean temperature and daily half-range in Varese (°C).
_MONTH_MEAN_C = (2.5, 4.0, 8.0, 12.0, 16.0, 20.0, 22.5, 22.0, 17.5, 12.5, 7.0, 3.5)
_MONTH_HALF_RANGE_C = (4.0, 4.5, 5.0, 5.5, 5.5, 6.0, 6.0, 6.0, 5.5, 4.5, 4.0, 3.5)


@dataclass(frozen=True)
class CamperSpec:
    """What differs between simulated campers; defaults describe the real one."""

    panel_wp: float = 400.0
    panel_tilt_deg: float = 10.0
    panel_azimuth_deg: float = 180.0
    battery_capacity_ah: float = 200.0  # nameplate
    battery_nominal_v: float = 12.8
    battery_soh_pct: float = 100.0  # starting state of health
    ageing_pct_per_month: float = 0.0  # capacity fade per 30 simulated days
    charge_efficiency: float = 0.96
    initial_soc_pct: float = 70.0
    cloudiness: float = 0.3  # 0 clear .. 1 overcast; drives passing clouds
    shore_power_w: float = 0.0  # charger power when shore power is connected (0 = none)
    cells: int = 4
    weak_cell_mv: float = 0.0  # one cell sagging by this much under load (BMS imbalance)
    seed: int = 1

    def __post_init__(self) -> None:
        """Refuse specs that would make the physics meaningless, naming the field."""
        checks = {
            "panel_wp": self.panel_wp >= 0,
            "battery_capacity_ah": self.battery_capacity_ah > 0,
            "battery_nominal_v": self.battery_nominal_v > 0,
            "battery_soh_pct": 0 < self.battery_soh_pct <= 100,
            "ageing_pct_per_month": self.ageing_pct_per_month >= 0,
            "charge_efficiency": 0 < self.charge_efficiency <= 1,
            "initial_soc_pct": 0 <= self.initial_soc_pct <= 100,
            "cloudiness": 0 <= self.cloudiness <= 1,
            "shore_power_w": self.shore_power_w >= 0,
            "cells": self.cells >= 1,
            "weak_cell_mv": self.weak_cell_mv >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"CamperSpec: invalid {', '.join(bad)}")


class SimClock:
    """Simulated time that can run faster than real time.

    ``monotonic`` is injectable so tests can drive the clock without sleeping.
    """

    def __init__(
        self, start: datetime | None = None, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if start is None:
            start = datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware (UTC)")
        if speed <= 0:
            raise ValueError("SimClock speed must be positive")
        self.start = start.astimezone(UTC)
        self.speed = float(speed)
        self._monotonic = monotonic
        self._m0 = monotonic()

    def now(self) -> datetime:
        """Tz-aware UTC: start + speed x real seconds elapsed since creation."""
        return self.start + timedelta(seconds=self.speed * (self._monotonic() - self._m0))


@dataclass(frozen=True)
class _Day:
    """Exogenous inputs of one local day on the 10 s grid (cell k = [start+10k, start+10k+10))."""

    start_s: float
    end_s: float
    pv_avail_w: array[float]  # MPP power the roof could deliver (after clouds, heat, losses)
    poa_wm2: array[float]  # plane-of-array irradiance with clouds
    cell_c: array[float]  # module temperature
    ambient_c: array[float]  # air around the battery and controller (inside the van)
    load_w: array[float]  # DC load demand, inverter losses included


@functools.lru_cache(maxsize=1)
def _location() -> Location:
    return Location(VARESE[0], VARESE[1], tz="UTC", altitude=VARESE_ALTITUDE_M, name="Varese")


def _clear_sky_poa(spec: CamperSpec, times_s: np.ndarray) -> np.ndarray:
    """Clear-sky plane-of-array irradiance (W/m²) at UTC epoch seconds, with pvlib."""
    loc = _location()
    times = pd.DatetimeIndex(pd.to_datetime(times_s, unit="s", utc=True))
    with warnings.catch_warnings():  # pvlib 0.16 still uses pandas' deprecated dayofyear
        warnings.filterwarnings("ignore", message=".*dayofyear is deprecated")
        solpos = loc.get_solarposition(times)
        try:  # Ineichen needs pvlib's bundled Linke turbidity file; fall back if absent
            cs = loc.get_clearsky(times, model="ineichen", solar_position=solpos)
        except Exception:  # pragma: no cover - depends on the pvlib installation
            cs = loc.get_clearsky(times, model="haurwitz", solar_position=solpos)
            split = pvlib.irradiance.erbs(cs["ghi"], solpos["apparent_zenith"], times)
            cs["dni"], cs["dhi"] = split["dni"], split["dhi"]
        poa = pvlib.irradiance.get_total_irradiance(
            spec.panel_tilt_deg, spec.panel_azimuth_deg, solpos["apparent_zenith"], solpos["azimuth"],
            cs["dni"], cs["ghi"], cs["dhi"], albedo=0.2,
        )["poa_global"]
    out = np.nan_to_num(poa.to_numpy(dtype=float), nan=0.0)
    out[solpos["apparent_zenith"].to_numpy() >= 90.0] = 0.0
    return np.clip(out, 0.0, None)


def _clearness(spec: CamperSpec, day: date, n: int) -> np.ndarray:
    """Fraction of clear-sky irradiance that gets through passing clouds.

    A latent Gaussian process (fast Ornstein-Uhlenbeck, tau 15 min, plus a slow
    one, tau 3 h, for sunnier and cloudier spells) is thresholded so that the sun
    is shaded a fraction ``cloudiness`` of the time; a shaded sun keeps ~25 %
    (diffuse light). Seeded per (seed, day) so any call order sees the same sky.
    """
    c = spec.cloudiness
    if c <= 0.0:
        return np.ones(n)
    rng = np.random.default_rng([spec.seed, day.toordinal(), 1])
    latent = np.zeros(n)
    for tau_s in (900.0, 3 * 3600.0):
        a = math.exp(-STEP_S / tau_s)
        noise = rng.standard_normal(n) * math.sqrt(1 - a * a)
        x0 = rng.standard_normal()
        latent += lfilter([1.0], [1.0, -a], noise, zi=[a * x0])[0] * math.sqrt(0.5)
    if c >= 1.0:
        shade = np.ones(n)
    else:
        threshold = NormalDist().inv_cdf(1.0 - c)
        shade = 1.0 / (1.0 + np.exp(-(latent - threshold) / 0.1))
    return 1.0 - 0.75 * shade


def _ambient_c(day: date, wall_h: np.ndarray, poa_wm2: np.ndarray) -> np.ndarray:
    """Air temperature in the van: a daily sinusoid for the season plus solar gain."""
    doy = day.timetuple().tm_yday
    mid_month_doy = [15.5 + 30.44 * m for m in range(12)]  # monthly normals hold mid-month
    mean = float(np.interp(doy, mid_month_doy, _MONTH_MEAN_C, period=365.25))
    half = float(np.interp(doy, mid_month_doy, _MONTH_HALF_RANGE_C, period=365.25))
    return mean + half * np.cos(2 * math.pi * (wall_h - 15.0) / 24.0) + 0.006 * poa_wm2


def _load_w(spec: CamperSpec, day: date, grid_s: np.ndarray, wall_h: np.ndarray, ambient_c: np.ndarray) -> np.ndarray:
    """DC load demand (W) of the camper's real equipment over one local day.

    Standby (Pi, 4G router, BMS) always; the compressor fridge cycles all day;
    on weekdays 9-18 the office (2-3 laptops, LEDs, inverter idle), a few
    coffee bursts and often an afternoon workshop demo (kettle or induction).
    AC appliances go through an inverter, hence the /0.9.
    """
    rng = np.random.default_rng([spec.seed, day.toordinal(), 2])
    n = grid_s.size
    load = np.full(n, 6.0)
    # Fridge: ~45 W compressor, period ~30 min, duty ~35 % (more when warm).
    period_s = 1500.0 + 600.0 * np.random.default_rng([spec.seed, 3]).random()
    duty = np.clip(0.35 + 0.01 * (ambient_c - 15.0), 0.2, 0.6)
    load += np.where(((grid_s % period_s) / period_s) < duty, 45.0, 0.0)
    if day.weekday() >= 5:
        return load

    def window(h0: float, h1: float) -> np.ndarray:
        return (wall_h >= h0) & (wall_h < h1)

    def burst(start_h: float, seconds: float, ac_w: float, mask: np.ndarray | bool = True) -> np.ndarray:
        return np.where(window(start_h, start_h + seconds / 3600.0) & mask, ac_w / 0.9, 0.0)

    load += np.where(window(9.0, 18.0), 16.0 + 10.0, 0.0)  # LED lights + inverter idle
    for _ in range(int(rng.integers(2, 4))):  # laptops
        on = window(9.0 + rng.uniform(-0.15, 0.5), 18.0 + rng.uniform(-0.75, 0.15))
        if rng.random() < 0.5:
            on &= ~window(13.0, 14.0)  # away for lunch
        watts = rng.uniform(25.0, 40.0) + np.repeat(rng.normal(0.0, 3.0, n // 6 + 1), 6)[:n]
        load += np.where(on, np.clip(watts, 10.0, 65.0), 0.0)
    for _ in range(int(rng.integers(3, 6))):  # coffee machine
        load += burst(rng.uniform(9.0, 17.5), rng.uniform(60, 120), rng.uniform(650, 800))
    if rng.random() < 0.7:  # afternoon workshop demonstration
        start_h = rng.uniform(14.5, 16.5)
        if rng.random() < 0.5:  # kettle
            load += burst(start_h, rng.uniform(180, 240), rng.uniform(1000, 1200))
        else:  # induction hob, its element pulsing 60 % of the time
            load += burst(start_h, rng.uniform(600, 900), rng.uniform(1200, 1500), ((grid_s // 20) % 5) < 3)
    return load


@functools.lru_cache(maxsize=32)
def _day_table(spec: CamperSpec, day: date) -> _Day:
    """All exogenous inputs of a local day; cached because pvlib costs ~tens of ms."""
    start_s = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ).timestamp()
    nxt = day + timedelta(days=1)
    end_s = datetime(nxt.year, nxt.month, nxt.day, tzinfo=LOCAL_TZ).timestamp()
    n = int(round((end_s - start_s) / STEP_S))
    grid_s = start_s + STEP_S * np.arange(n, dtype=float)
    minutes_s = np.arange(start_s, end_s + 60.0, 60.0)
    poa_clear = np.interp(grid_s + STEP_S / 2, minutes_s, _clear_sky_poa(spec, minutes_s))
    poa = poa_clear * _clearness(spec, day, n)
    local = pd.DatetimeIndex(pd.to_datetime(grid_s, unit="s", utc=True)).tz_convert(LOCAL_TZ)
    wall_h = local.hour.to_numpy() + local.minute.to_numpy() / 60.0 + local.second.to_numpy() / 3600.0
    ambient = _ambient_c(day, wall_h, poa)
    cell = pvlib.temperature.pvsyst_cell(poa, ambient, wind_speed=1.0, u_c=U_C_ROOF)
    pv = spec.panel_wp * poa / 1000.0 * (1.0 + GAMMA_PER_C * (cell - 25.0)) * SYSTEM_LOSSES
    pv = np.where(pv >= PV_MIN_W, pv, 0.0)
    load = _load_w(spec, day, grid_s, wall_h, ambient)
    return _Day(
        start_s, end_s, array("d", pv), array("d", poa), array("d", cell), array("d", ambient), array("d", load)
    )


def _ocv_cell_v(soc_pct: float) -> float:
    """LiFePO4 open-circuit cell voltage at ``soc_pct``, linear between table points."""
    i = min(max(bisect_right(_OCV_SOC, soc_pct), 1), len(_OCV_SOC) - 1)
    s0, s1 = _OCV_SOC[i - 1], _OCV_SOC[i]
    v0, v1 = _OCV_CELL_V[i - 1], _OCV_CELL_V[i]
    return v0 + (v1 - v0) * (min(max(soc_pct, 0.0), 100.0) - s0) / (s1 - s0)


def _pv_voc_v(poa_wm2: float, cell_c: float) -> float:
    """Open-circuit voltage of the string: log in irradiance, falling with heat, 0 in the dark."""
    if poa_wm2 <= 0.0:
        return 0.0
    g = max(poa_wm2, 2.0)
    voc = VOC_STC_V * (1.0 + BETA_VOC_PER_C * (cell_c - 25.0)) * (1.0 + 0.04 * math.log(g / 1000.0))
    return max(voc, 0.0) * min(poa_wm2 / 2.0, 1.0)


class CamperModel:
    """The camper's solar system; see the module docstring for the approach."""

    def __init__(self, spec: CamperSpec = CamperSpec(), clock: SimClock | None = None) -> None:
        self.spec = spec
        self.clock = clock if clock is not None else SimClock()
        self._lock = threading.Lock()
        self._start_s = self.clock.start.timestamp()
        self._t_s = self._start_s  # last time the state was integrated to
        self._started = False
        self._volt_scale = spec.battery_nominal_v / CELL_NOMINAL_V  # cell equivalents in series
        self._r_ohm = R_INTERNAL_OHM_12V * self._volt_scale / 4.0
        self._soc = spec.initial_soc_pct
        self._full = spec.initial_soc_pct >= FULL_SOC
        self._load_cut = False
        self._cycles = self._pv_today_wh = self._load_today_wh = 0.0
        self._counter_day_start_s = self._table(self._t_s).start_s
        self._battery_c = self._controller_c = self._exo(self._t_s)[3]
        offsets = np.random.default_rng([spec.seed, 4]).normal(0.0, 0.004, spec.cells)  # cell mismatch
        self._cell_offsets_v = [float(x) for x in offsets - offsets.mean()]

    def state(self) -> dict[str, float | int | str | bool]:
        """The readings now, on the model's clock."""
        return self.state_at(self.clock.now())

    def state_at(self, t: datetime) -> dict[str, float | int | str | bool]:
        """Every EnergySample field at ``t`` (tz-aware), integrating forward to it first.

        An earlier ``t`` than the last one is not integrated backwards: SOC,
        counters and temperatures are held, only instantaneous values follow ``t``.
        The very first call may start the model before the clock's start.
        """
        if t.tzinfo is None:
            raise ValueError("state_at needs a timezone-aware datetime")
        t_s = t.timestamp()
        with self._lock:
            if not self._started and t_s < self._t_s:
                self._t_s = t_s
            self._started = True
            if t_s > self._t_s:
                self._integrate(t_s)
            return self._report(t_s)

    def _table(self, t_s: float) -> _Day:
        return _day_table(self.spec, datetime.fromtimestamp(t_s, LOCAL_TZ).date())

    def _exo(self, t_s: float) -> tuple[float, float, float, float, float, _Day]:
        """(pv_avail_w, poa, cell_c, ambient_c, load_w, day) of the grid cell containing ``t_s``."""
        day = self._table(t_s)
        k = min(int((t_s - day.start_s) // STEP_S), len(day.load_w) - 1)
        return day.pv_avail_w[k], day.poa_wm2[k], day.cell_c[k], day.ambient_c[k], day.load_w[k], day

    def _soh_pct_at(self, t_s: float) -> float:
        """State of health: linear fade per 30 simulated days since the clock's start."""
        months = max(t_s - self._start_s, 0.0) / (30 * 86400.0)
        return min(max(self.spec.battery_soh_pct - self.spec.ageing_pct_per_month * months, SOH_FLOOR_PCT), 100.0)

    def _stage(self, has_source: bool) -> str:
        """Charger stage from SOC: bulk below 90 %, absorption to full, then float."""
        if not has_source:
            return "off"
        if self._full:
            return "float"
        return "bulk" if self._soc < BULK_END_SOC else "absorption"

    def _flows(self, pv_avail_w: float, load_w: float, cap_ah: float, stage: str) -> tuple[float, float, float, float]:
        """(pv_used_w, shore_used_w, battery_v, battery_a) for the present state.

        The charger delivers what the load draws plus what the battery accepts:
        unlimited (up to the MPPT rating) in bulk, tapering as SOC nears 100 %
        in absorption and float. PV is used before shore power; the rest of the
        PV is curtailed. In absorption and float the charger regulates the
        terminal voltage, otherwise it is OCV + R x I.
        """
        ocv = _ocv_cell_v(self._soc) * self._volt_scale
        soc_gap = max(100.0 - self._soc, 0.0)
        if stage == "bulk":
            accept_a = 1e9
        elif stage == "absorption":
            accept_a = cap_ah * 0.5 * soc_gap / 10.0
        else:
            accept_a = cap_ah * 0.05 * soc_gap / 10.0
        demand_w = (accept_a * ocv + load_w) if accept_a < 1e9 else 1e9
        pv_used = min(pv_avail_w, MPPT_MAX_CHARGE_A * ocv, demand_w)
        shore_used = min(self.spec.shore_power_w, max(demand_w - pv_used, 0.0))
        net_w = pv_used + shore_used - load_w
        v = ocv + self._r_ohm * net_w / ocv
        if net_w > 0 and stage == "absorption":
            v = ABSORPTION_CELL_V * self._volt_scale
        elif net_w >= 0 and stage == "float":
            v = FLOAT_CELL_V * self._volt_scale
        else:
            v = min(v, ABSORPTION_CELL_V * self._volt_scale)
        return pv_used, shore_used, v, net_w / v

    def _integrate(self, t_end_s: float) -> None:
        """Advance the battery state to ``t_end_s`` in steps on the 10 s grid."""
        if t_end_s - self._t_s > MAX_CATCHUP_S:
            self._t_s = t_end_s - MAX_CATCHUP_S
        cap_ah = self.spec.battery_capacity_ah * self._soh_pct_at(t_end_s) / 100.0
        eff = self.spec.charge_efficiency
        has_shore = self.spec.shore_power_w > 0
        day = self._table(self._t_s)
        a = self._t_s
        while a < t_end_s:
            if not day.start_s <= a < day.end_s:
                day = self._table(a)
            if day.start_s != self._counter_day_start_s:  # local midnight: reset daily counters
                self._counter_day_start_s = day.start_s
                self._pv_today_wh = self._load_today_wh = 0.0
            k = int((a - day.start_s) // STEP_S)
            b = min(day.start_s + (k + 1) * STEP_S, t_end_s)
            dt_s = b - a
            pv_avail, ambient = day.pv_avail_w[k], day.ambient_c[k]
            load_w = 0.0 if self._load_cut else day.load_w[k]
            pv_w, shore_w, _v, i_a = self._flows(pv_avail, load_w, cap_ah, self._stage(pv_avail > 0 or has_shore))
            dah = i_a * dt_s / 3600.0
            if dah > 0:
                self._soc = min(self._soc + 100.0 * dah * eff / cap_ah, 100.0)
            else:
                self._soc = max(self._soc + 100.0 * dah / cap_ah, 0.0)
                self._cycles -= dah / cap_ah
            self._pv_today_wh += pv_w * dt_s / 3600.0
            self._load_today_wh += load_w * dt_s / 3600.0
            # first-order lags: the pack warms ~5 °C at 100 A, the controller ~10 °C at 400 W
            self._battery_c += (ambient + 0.05 * abs(i_a) - self._battery_c) * min(dt_s / TAU_BATTERY_S, 1.0)
            heat_c = 0.025 * (pv_w + shore_w)
            self._controller_c += (ambient + heat_c - self._controller_c) * min(dt_s / TAU_CONTROLLER_S, 1.0)
            self._update_latches()
            a = b
        self._t_s = t_end_s

    def _update_latches(self) -> None:
        """Hysteresis: full -> float until SOC drops under 95 %; BMS load cut at 1 % until 10 %."""
        if self._soc >= FULL_SOC:
            self._full = True
        elif self._soc < REBULK_SOC:
            self._full = False
        if self._soc <= LVD_SOC:
            self._load_cut = True
        elif self._soc >= LVD_RECONNECT_SOC:
            self._load_cut = False

    def _report(self, t_s: float) -> dict[str, float | int | str | bool]:
        """Instantaneous readings at ``t_s`` from the held state and that time's inputs."""
        pv_avail, poa, cell_c, _ambient, load_raw, day = self._exo(t_s)
        if day.start_s > self._counter_day_start_s:  # exactly at/after midnight: new day's counters
            self._counter_day_start_s = day.start_s
            self._pv_today_wh = self._load_today_wh = 0.0
        soh = self._soh_pct_at(t_s)
        cap_ah = self.spec.battery_capacity_ah * soh / 100.0
        shore = self.spec.shore_power_w > 0
        stage = self._stage(pv_avail > 0 or shore)
        load_w = 0.0 if self._load_cut else load_raw
        pv_w, _shore_w, v, i_a = self._flows(pv_avail, load_w, cap_ah, stage)
        voc = _pv_voc_v(poa, cell_c)
        if pv_w > 0:  # MPPT near Vmp, drifting towards Voc when curtailed
            pv_v = voc * VMP_STC_V / VOC_STC_V
            pv_v += (voc - pv_v) * (1.0 - pv_w / pv_avail)
            pv_a = pv_w / pv_v
        else:
            pv_v, pv_a = voc, 0.0
        cell_min, cell_max = self._cell_extremes(v, i_a)
        return {
            "pv_voltage_v": pv_v,
            "pv_current_a": pv_a,
            "pv_power_w": pv_w,
            "battery_voltage_v": v,
            "battery_current_a": i_a,
            "battery_power_w": v * i_a,
            "battery_soc_pct": self._soc,
            "battery_temp_c": self._battery_c,
            "load_current_a": load_w / v,
            "load_power_w": load_w,
            "charge_state": stage,
            "pv_yield_today_wh": self._pv_today_wh,
            "load_today_wh": self._load_today_wh,
            "controller_temp_c": self._controller_c,
            "shore_power": shore,
            "cell_voltage_min_v": cell_min,
            "cell_voltage_max_v": cell_max,
            "battery_cycles": int(self._cycles),
            "battery_soh_pct": soh,
        }

    def _cell_extremes(self, battery_v: float, battery_a: float) -> tuple[float, float]:
        """(min, max) cell voltage: an even split with a few mV spread; the weak cell sags on discharge."""
        n = self.spec.cells
        sag_v = self.spec.weak_cell_mv / 1000.0 * min(max(-battery_a / 2.0, 0.0), 1.0)  # full from 2 A
        cells = [battery_v / n + off + (sag_v / (n - 1) if n > 1 else 0.0) for off in self._cell_offsets_v]
        cells[0] -= sag_v
        return max(min(cells), 0.0), min(max(cells), 5.0)
