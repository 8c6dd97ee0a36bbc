"""Modelled PV power at Varese for any period and any panel, on pvlib.

Why a model next to the measured data: the what-if (``workshops/whatif.py``)
needs the sun where the camper recorded none (a gap, a period before the van
existed, or ``--model-sun`` to compare with a "typical" sky), and the workshop
wants to know how the van's flat roof compares with a well-tilted panel.

How, and what is shared with the simulator: the site, the PV chain constants
(14 % system losses as PVGIS uses, the temperature coefficient, the roof's
heat-loss factor) and the van's ambient temperature come from
``camperhub.edge.sim.model`` (imported, not copied), so the simulator and this
model describe the same van. What differs is the sky: the simulator draws
passing clouds from a seed (a credible *day*); here the sky is a
*climatological* one, the pvlib Ineichen clear-sky GHI times a monthly
clear-sky index, split into beam and diffuse with Erbs and transposed with
Hay-Davies, so that a period's total is what an average year gives.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pvlib

from camperhub.edge.sim.model import (
    GAMMA_PER_C,
    CamperSpec,
    LOCAL_TZ,
    SYSTEM_LOSSES,
    U_C_ROOF,
    VARESE,
    _ambient_c,
    _location,
)

#: Monthly clear-sky index at Varese (Jan..Dec): mean GHI / pvlib Ineichen clear-sky GHI.
#: Approximate climatological values: the monthly GHI behind them (about 1.35, 2.2, 3.5,
#: 4.5, 5.5, 6.1, 6.3, 5.4, 4.0, 2.5, 1.45, 1.1 kWh/m²/day, ~1,340 kWh/m² a year) is
#: typical of the western Po plain and the Varese Prealps in PVGIS-SARAH; it was NOT
#: fetched online (no network on the development machine). Refine it from PVGIS
#: "Monthly irradiation data" (SARAH-3, 45.82 N 8.83 E) when a network is at hand.
MONTHLY_CLEAR_SKY_INDEX: tuple[float, ...] = (0.79, 0.79, 0.78, 0.76, 0.81, 0.88, 0.92, 0.85, 0.79, 0.75, 0.69, 0.70)

OPTIMUM_TILT_DEG = 35.0  # PVGIS's optimum slope at this latitude is ~35-38° facing south
FLAT_ROOF_TILT_DEG = 0.0  # panels lying flat on the van's roof
SOUTH_DEG = 180.0  # pvlib azimuth convention: 0 north, 90 east, 180 south
U_C_FREE_STANDING = 29.0  # pvsyst heat-loss factor of an open rack (PVGIS's "free-standing")
ALBEDO = 0.2


@dataclass(frozen=True)
class PvSystem:
    """A PV array: peak power, orientation, losses and how well it is cooled."""

    kwp: float
    tilt_deg: float = FLAT_ROOF_TILT_DEG
    azimuth_deg: float = SOUTH_DEG
    losses_frac: float = 1.0 - SYSTEM_LOSSES  # 14 %, the PVGIS default
    u_c: float = U_C_ROOF  # a rack a few cm above a van roof runs hotter than an open rack

    def __post_init__(self) -> None:
        bad = [
            name
            for name, ok in (
                ("kwp", self.kwp >= 0),
                ("tilt_deg", 0 <= self.tilt_deg <= 90),
                ("azimuth_deg", 0 <= self.azimuth_deg <= 360),
                ("losses_frac", 0 <= self.losses_frac < 1),
                ("u_c", self.u_c > 0),
            )
            if not ok
        ]
        if bad:
            raise ValueError(f"PvSystem: invalid {', '.join(bad)}")


#: The Varese camper's roof as the simulator describes it (400 Wp, slightly tilted, south).
CAMPER_ROOF = PvSystem(
    kwp=CamperSpec().panel_wp / 1000.0, tilt_deg=CamperSpec().panel_tilt_deg, azimuth_deg=CamperSpec().panel_azimuth_deg
)


def _aware_utc(t: datetime, name: str) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return t.astimezone(UTC)


def _pv_w_at(times: pd.DatetimeIndex, system: PvSystem) -> np.ndarray:
    """PV output (W, DC after losses) at the given UTC instants under the climatological sky."""
    loc = _location()
    with warnings.catch_warnings():  # pvlib 0.16 still uses pandas' deprecated dayofyear
        warnings.filterwarnings("ignore", message=".*dayofyear is deprecated")
        solpos = loc.get_solarposition(times)
        clear = loc.get_clearsky(times, model="ineichen", solar_position=solpos)
        index = np.asarray(MONTHLY_CLEAR_SKY_INDEX)[times.tz_convert(LOCAL_TZ).month.to_numpy() - 1]
        ghi = clear["ghi"].to_numpy() * index
        split = pvlib.irradiance.erbs(ghi, solpos["zenith"].to_numpy(), times)
        poa = pvlib.irradiance.get_total_irradiance(
            system.tilt_deg,
            system.azimuth_deg,
            solpos["apparent_zenith"].to_numpy(),
            solpos["azimuth"].to_numpy(),
            np.asarray(split["dni"]),
            ghi,
            np.asarray(split["dhi"]),
            dni_extra=pvlib.irradiance.get_extra_radiation(times).to_numpy(),
            model="haydavies",
            albedo=ALBEDO,
        )["poa_global"]
    poa = np.clip(np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0), 0.0, None)
    poa[solpos["apparent_zenith"].to_numpy() >= 90.0] = 0.0
    ambient = np.empty(len(times))
    local = times.tz_convert(LOCAL_TZ)
    wall_h = local.hour.to_numpy() + local.minute.to_numpy() / 60.0 + local.second.to_numpy() / 3600.0
    # the van's ambient model is per local day (seasonal mean + daily swing + solar gain);
    # the times are sorted, so each day is one slice
    day_start = local.normalize()
    edges = np.flatnonzero(np.r_[True, day_start[1:] != day_start[:-1], True])
    for a, b in zip(edges[:-1], edges[1:], strict=False):
        ambient[a:b] = _ambient_c(day_start[a].date(), wall_h[a:b], poa[a:b])
    cell_c = pvlib.temperature.pvsyst_cell(poa, ambient, wind_speed=1.0, u_c=system.u_c)
    pv = system.kwp * poa * (1.0 + GAMMA_PER_C * (cell_c - 25.0)) * (1.0 - system.losses_frac)
    return np.clip(pv, 0.0, None)


def modelled_pv_w(start: datetime, end: datetime, system: PvSystem = CAMPER_ROOF, every: timedelta = timedelta(minutes=1)) -> pd.Series:
    """Mean modelled PV power (W) per interval of ``every`` over [start, end).

    Labelled by the interval start (tz-aware UTC, aligned to ``start``),
    evaluated at the interval's middle, as the store labels its rollups.
    """
    start, end = _aware_utc(start, "start"), _aware_utc(end, "end")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    if every <= timedelta(0):
        raise ValueError("every must be positive")
    labels = pd.date_range(start, end, freq=every, inclusive="left", name="time")
    return modelled_pv_w_at(labels, system, every)


def modelled_pv_w_at(labels: pd.DatetimeIndex, system: PvSystem = CAMPER_ROOF, every: timedelta = timedelta(minutes=1)) -> pd.Series:
    """Mean modelled PV power (W) of the intervals ``[label, label + every)``, for any
    sorted tz-aware labels: the what-if asks only for the minutes the camper did not record."""
    if labels.tz is None:
        raise ValueError("labels must be timezone-aware")
    labels = labels.tz_convert(UTC)
    if len(labels) == 0:
        return pd.Series([], index=labels, name="pv_w", dtype="float64")
    return pd.Series(_pv_w_at(labels + every / 2, system), index=labels, name="pv_w")


@functools.lru_cache(maxsize=16)
def monthly_yield_kwh_per_kwp(tilt_deg: float, azimuth_deg: float = SOUTH_DEG, free_standing: bool = True, year: int = 2025) -> tuple[float, ...]:
    """Modelled yield (kWh per kWp) of each month of ``year`` at Varese, Jan..Dec.

    ``free_standing`` cools the modules like PVGIS's open-rack mounting (the
    reference the check compares with); otherwise as on the van's roof.
    """
    system = PvSystem(kwp=1.0, tilt_deg=tilt_deg, azimuth_deg=azimuth_deg, u_c=U_C_FREE_STANDING if free_standing else U_C_ROOF)
    start = datetime(year, 1, 1, tzinfo=LOCAL_TZ)
    end = datetime(year + 1, 1, 1, tzinfo=LOCAL_TZ)
    step = timedelta(minutes=10)  # fine enough for a yearly total (<0.5 % from 1-min)
    pv = modelled_pv_w(start, end, system, every=step)
    kwh = pv.groupby(pv.index.tz_convert(LOCAL_TZ).month).sum() * step.total_seconds() / 3600.0 / 1000.0
    return tuple(float(kwh.get(m, 0.0)) for m in range(1, 13))


def yearly_yield_kwh_per_kwp(tilt_deg: float = OPTIMUM_TILT_DEG, azimuth_deg: float = SOUTH_DEG, free_standing: bool = True, year: int = 2025) -> float:
    """Modelled yearly yield in kWh/kWp at Varese (the figure PVGIS calls E_y for 1 kWp)."""
    return sum(monthly_yield_kwh_per_kwp(tilt_deg, azimuth_deg, free_standing, year))


__all__ = [
    "CAMPER_ROOF",
    "FLAT_ROOF_TILT_DEG",
    "MONTHLY_CLEAR_SKY_INDEX",
    "OPTIMUM_TILT_DEG",
    "PvSystem",
    "SOUTH_DEG",
    "VARESE",
    "modelled_pv_w",
    "modelled_pv_w_at",
    "monthly_yield_kwh_per_kwp",
    "yearly_yield_kwh_per_kwp",
]
