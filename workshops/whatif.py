"""What if the camper had another panel, another battery, another load?

The workshop question ("what if we had one more panel?", "can we run an
induction hob for the cooking workshop?") is answered by *replaying* a real
period: the measured load and the measured sun, minute by minute, through an
energy balance of the van with the changed system, side by side with the same
replay of the system as it is. Why a replay of both and not "measured vs
scenario": the baseline and the scenario then share every assumption (the
battery model, what counts as empty), so the difference is the change alone.

The energy balance of one minute (all flows in Wh over ``dt``):

1. PV available: the measured PV power times ``kWp_new / kWp_now`` (or the
   modelled sun of :mod:`camperhub.workshops.solar` where the camper recorded
   no PV, or everywhere with ``model_sun``), clipped at the MPPT limit. An
   added panel comes with a controller like the present one (the limit scales
   with the kWp), as one would install it.
2. PV feeds the load first; the surplus charges the battery (charge
   efficiency), up to its usable capacity; the rest is *curtailed*.
3. The load PV could not cover comes from the battery (discharge efficiency),
   up to the inverter/BMS limit ``max_discharge_w`` and down to the usable
   floor; what is still missing comes from *shore power* (or, parked without
   it, is not served: the workshop reads it as "we would have run out").
4. A minute counts as *empty* when the battery is at its floor and shore power
   had to step in.

Known limits, said to the reader: measured PV is what the controller
*harvested*, so while the real battery was full it understates what the sun
offered; in those minutes the modelled sun (an average sky) stands in when it
is higher (``raise_full``; counted in ``minutes_pv_raised``), an estimate
that is low on a bright day and may be high on a dull one. Charging from
shore power is not replayed (the scenario asks what the sun and
the battery alone would do). Minutes without a load reading are skipped with
the battery held (a gap is never a zero); ``coverage_pct`` tells how many.

Guarantees the tests check on generated frames (hypothesis): more panel never
lowers self-sufficiency, a bigger battery never adds empty hours. They hold
because each step is monotone in the stored energy, the PV and the capacity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pandas as pd

from camperhub.edge.sim.model import LOCAL_TZ, MPPT_MAX_CHARGE_A, CamperSpec
from camperhub.store.base import Store
from camperhub.workshops import solar

_SPEC = CamperSpec()
MINUTE = timedelta(minutes=1)
#: Largest window a what-if replays (a year and a bit, like the analyses).
MAX_DAYS = 400
EPS_WH = 1e-9
#: At or above this measured SoC the real controller was curtailing (absorption/float).
FULL_SOC_PCT = 98.0
#: A SoC reading stands for the minutes after it up to this many (it is reported less often than power).
SOC_HOLD_MIN = 15


class WhatIfError(ValueError):
    """The what-if cannot be answered as asked; the message names the problem."""


class NoDataError(WhatIfError):
    """The window holds no load reading of the camper: there is nothing to replay."""


@dataclass(frozen=True)
class Battery:
    """A battery: nameplate energy, the usable share and the conversion efficiencies."""

    capacity_kwh: float
    usable_frac: float = 0.9  # LiFePO4: the BMS keeps the bottom ~10 % (and the cells live longer)
    charge_eff: float = _SPEC.charge_efficiency
    discharge_eff: float = 0.96

    def __post_init__(self) -> None:
        checks = {
            "capacity_kwh": 0 < self.capacity_kwh <= 1000,
            "usable_frac": 0 < self.usable_frac <= 1,
            "charge_eff": 0 < self.charge_eff <= 1,
            "discharge_eff": 0 < self.discharge_eff <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise WhatIfError(f"battery: invalid {', '.join(bad)}")

    @classmethod
    def from_ah(cls, ah: float, nominal_v: float = _SPEC.battery_nominal_v, **kw: float) -> Battery:
        """A battery given in amp-hours at its nominal voltage (12.8 V LiFePO4)."""
        return cls(capacity_kwh=ah * nominal_v / 1000.0, **kw)

    @property
    def usable_wh(self) -> float:
        return self.capacity_kwh * 1000.0 * self.usable_frac

    @property
    def floor_soc_pct(self) -> float:
        return 100.0 * (1.0 - self.usable_frac)


@dataclass(frozen=True)
class System:
    """The van's energy system as the replay sees it."""

    pv_kwp: float
    battery: Battery
    mppt_max_w: float  # most the charge controller(s) deliver
    max_discharge_w: float  # most the battery side feeds the loads (inverter + DC loads, BMS)

    def __post_init__(self) -> None:
        bad = [n for n, ok in (("pv_kwp", 0 <= self.pv_kwp <= 100), ("mppt_max_w", self.mppt_max_w >= 0), ("max_discharge_w", self.max_discharge_w >= 0)) if not ok]
        if bad:
            raise WhatIfError(f"system: invalid {', '.join(bad)}")


#: The Varese camper: 400 Wp, a 30 A MPPT at ~13.3 V, 12.8 V 200 Ah LiFePO4, a 3 kW inverter.
CAMPER = System(
    pv_kwp=_SPEC.panel_wp / 1000.0,
    battery=Battery.from_ah(_SPEC.battery_capacity_ah),
    mppt_max_w=MPPT_MAX_CHARGE_A * 13.3,
    max_discharge_w=3000.0,
)


@dataclass(frozen=True)
class Appliance:
    """A load added in the scenario: its power during a daily local time window on some weekdays."""

    key: str  # "induction-hob", ..., or "custom"
    watts: float  # at the appliance (AC side when ``through_inverter``)
    start: time  # Europe/Rome wall time
    end: time  # excluded; time(0) means midnight at the end of the day
    weekdays: frozenset[int] = frozenset(range(7))  # Monday = 0
    through_inverter: bool = True

    def dc_w(self, inverter_eff: float) -> float:
        """What it draws from the battery side."""
        return self.watts / inverter_eff if self.through_inverter else self.watts


_WORKDAYS = frozenset(range(5))
#: Appliances a workshop leader can name (the times are the camper's usual workshop hours).
APPLIANCES: dict[str, Appliance] = {
    # the cooking workshop: a 2 kW induction hob for an hour in the afternoon
    "induction-hob": Appliance("induction-hob", 2000.0, time(15, 0), time(16, 0), _WORKDAYS),
    # a 2 kW kettle boils a litre in ~3 min: tea at the morning break
    "kettle": Appliance("kettle", 2000.0, time(10, 30), time(10, 33), _WORKDAYS),
    # a second 12 V compressor fridge, averaged over its cycle (~45 W at ~40 % duty)
    "fridge": Appliance("fridge", 18.0, time(0, 0), time(0, 0), frozenset(range(7)), through_inverter=False),
    # one more laptop during office hours
    "laptop": Appliance("laptop", 30.0, time(9, 0), time(18, 0), _WORKDAYS),
    # a 10 W LED work lamp in office hours
    "led-lamp": Appliance("led-lamp", 10.0, time(9, 0), time(18, 0), _WORKDAYS, through_inverter=False),
}
INVERTER_EFF = 0.9  # as in the simulator's loads
_CUSTOM_RE = re.compile(r"^(?P<w>\d+(?:\.\d+)?)\s*(?:[wW])?(?:@(?P<a>\d{1,2}:\d{2})-(?P<b>\d{1,2}:\d{2})(?P<workdays>/mon-fri)?)?$")


def _hhmm(text: str, what: str) -> time:
    h, m = (int(x) for x in text.split(":"))
    if h == 24 and m == 0:
        return time(0)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise WhatIfError(f"{what}: {text!r} is not a time of day HH:MM")
    return time(h, m)


def parse_appliance(text: str) -> Appliance:
    """An appliance by name (see :data:`APPLIANCES`), or ``W`` (all day, every day), or
    ``W@HH:MM-HH:MM`` (every day in that Europe/Rome window; ``W@HH:MM-HH:MM/mon-fri``
    Monday to Friday only, like the named workshop appliances), W at the appliance."""
    name = text.strip().lower()
    if name in APPLIANCES:
        return APPLIANCES[name]
    m = _CUSTOM_RE.match(name)
    if m is None:
        raise WhatIfError(f"unknown load {text!r}: use one of {', '.join(APPLIANCES)}, or W, or W@HH:MM-HH:MM[/mon-fri] (e.g. 300@09:00-12:00)")
    watts = float(m["w"])
    if not 0 < watts <= 10_000:
        raise WhatIfError(f"load {text!r}: {watts:g} W is outside 0-10000 W")
    if m["a"] is None:
        return Appliance("custom", watts, time(0), time(0))
    start, end = _hhmm(m["a"], f"load {text!r}"), _hhmm(m["b"], f"load {text!r}")
    if start == end:
        raise WhatIfError(f"load {text!r}: the window {m['a']}-{m['b']} is empty")
    return Appliance("custom", watts, start, end, _WORKDAYS if m["workdays"] else frozenset(range(7)))


def appliance_w(labels: pd.DatetimeIndex, appliance: Appliance, inverter_eff: float = INVERTER_EFF) -> np.ndarray:
    """DC power (W) the appliance adds in each minute ``[label, label + 1 min)``."""
    local = labels.tz_convert(LOCAL_TZ)
    minute = local.hour.to_numpy() * 60 + local.minute.to_numpy()
    a = appliance.start.hour * 60 + appliance.start.minute
    b = appliance.end.hour * 60 + appliance.end.minute or 24 * 60
    inside = (minute >= a) & (minute < b) if a < b else (minute >= a) | (minute < b)  # a window across midnight
    on = inside & np.isin(local.day_of_week.to_numpy(), sorted(appliance.weekdays))
    return np.where(on, appliance.dc_w(inverter_eff), 0.0)


@dataclass(frozen=True)
class Scenario:
    """What changes: panel peak power added (W, may be negative), the battery, added loads."""

    add_pv_w: float = 0.0
    battery: Battery | None = None  # None = the same battery
    loads: tuple[Appliance, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """One replay's result; energies in Wh over the replayed minutes."""

    pv_kwp: float
    battery_kwh: float
    usable_kwh: float
    pv_available_wh: float  # what the panels offered (before the MPPT limit: see curtailed)
    pv_used_wh: float  # into the load or the battery
    curtailed_wh: float  # offered but not taken: battery full, or above the MPPT limit
    load_wh: float  # the measured load plus the added loads
    added_load_wh: float
    shore_wh: float  # load the sun and the battery could not cover
    self_sufficiency_pct: float | None  # share of the load not from shore power; None without load
    empty_hours: float  # time with the battery at its floor and shore power needed
    soc_start_pct: float
    soc_end_pct: float
    soc_min_pct: float


@dataclass(frozen=True)
class WhatIfResult:
    """Baseline and scenario side by side, with how the inputs were obtained."""

    start: datetime  # UTC, aware, [start, end)
    end: datetime
    minutes_in_window: int
    minutes_replayed: int  # minutes with a load reading
    coverage_pct: float
    pv_source: str  # "measured", "model", or "measured+model" (gaps in the PV filled from the model)
    minutes_pv_modelled: int
    minutes_pv_raised: int  # minutes with the real battery full where the model's sun was higher than the measured
    soc_start_source: str  # "measured" or "assumed" (50 % when the window has no SoC reading)
    baseline: Outcome
    scenario: Outcome
    added_loads: tuple[str, ...] = field(default=())


def _replay(pv_avail_w: np.ndarray, load_w: np.ndarray, added_w: np.ndarray, system: System, soc_start_pct: float, dt_h: float) -> Outcome:
    """The minute-by-minute energy balance of the module docstring (pure; one pass).

    What does not depend on the battery (the MPPT clip, PV straight into the
    load, the inverter limit) is done on whole arrays; only the stored energy
    is stepped, with operations that are monotone in it, in the surplus and in
    the capacity (so the invariants hold exactly, in floating point too).
    """
    bat = system.battery
    cap_wh = bat.usable_wh
    ce, de = bat.charge_eff, bat.discharge_eff
    pv_in = pv_avail_w * dt_h
    pv = np.minimum(pv_in, system.mppt_max_w * dt_h)
    load = (load_w + added_w) * dt_h
    direct = np.minimum(pv, load)
    need = load - direct
    want = np.minimum(need, system.max_discharge_w * dt_h)
    e0 = min(max(bat.capacity_kwh * 1000.0 * (soc_start_pct - bat.floor_soc_pct) / 100.0, 0.0), cap_wh)
    e = e0
    charged: list[float] = []
    from_bat: list[float] = []
    after: list[float] = []
    for s_ce, want_wh in zip(((pv - direct) * ce).tolist(), want.tolist(), strict=True):
        e_charged = e + s_ce
        if e_charged > cap_wh:
            e_charged = cap_wh
        charged.append(e_charged - e)
        e = e_charged
        avail = e * de
        if avail <= want_wh:
            from_bat.append(avail)
            e = 0.0
        else:
            from_bat.append(want_wh)
            e = e - want_wh / de
            if e < 0.0:
                e = 0.0
        after.append(e)
    e_after = np.asarray(after)
    short = need - np.asarray(from_bat)
    short_on = short > EPS_WH
    charge = np.clip(np.asarray(charged), 0.0, None) / ce
    used = float(np.sum(direct + charge))
    offered = float(np.sum(pv_in))
    load_tot = float(np.sum(load))
    shore = float(np.sum(np.where(short_on, short, 0.0)))
    empty_n = int(np.count_nonzero(short_on & (e_after <= 0.0)))
    e_min = min(e0, float(e_after.min())) if len(e_after) else e0
    curtailed = offered - used

    def soc(wh: float) -> float:
        return bat.floor_soc_pct + 100.0 * wh / (bat.capacity_kwh * 1000.0)

    return Outcome(
        pv_kwp=system.pv_kwp,
        battery_kwh=bat.capacity_kwh,
        usable_kwh=cap_wh / 1000.0,
        pv_available_wh=offered,
        pv_used_wh=used,
        curtailed_wh=max(curtailed, 0.0),
        load_wh=load_tot,
        added_load_wh=float(np.sum(added_w)) * dt_h,
        shore_wh=shore,
        self_sufficiency_pct=None if load_tot <= 0 else min(100.0, max(0.0, 100.0 * (1.0 - shore / load_tot))),
        empty_hours=empty_n * dt_h,
        soc_start_pct=soc(e0),
        soc_end_pct=soc(e),
        soc_min_pct=soc(e_min),
    )


def _soc_held(soc_pct: pd.Series, labels: pd.DatetimeIndex) -> np.ndarray:
    """The latest SoC reading at or before each label, up to SOC_HOLD_MIN minutes old; else -inf."""
    known = soc_pct.dropna()
    out = np.full(len(labels), -np.inf)
    if known.empty:
        return out
    times = pd.DatetimeIndex(known.index)
    pos = times.searchsorted(labels, side="right") - 1
    ok = pos >= 0
    age = labels[ok] - times[pos[ok]]
    fresh = np.flatnonzero(ok)[age <= pd.Timedelta(minutes=SOC_HOLD_MIN)]
    out[fresh] = known.to_numpy(dtype=float)[pos[fresh]]
    return out


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window in UTC, or a WhatIfError that says what is wrong with it."""
    if start.tzinfo is None or end.tzinfo is None:
        raise WhatIfError("start and end must carry a time zone; a naive time is ambiguous")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise WhatIfError(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if end - start > timedelta(days=MAX_DAYS):
        raise WhatIfError(f"the period of {(end - start).days} days is longer than {MAX_DAYS} days: ask for a shorter one")
    return start, end


def run_whatif(
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    scenario: Scenario,
    system: System = CAMPER,
    *,
    model_sun: bool = False,
    raise_full: bool = True,
    roof: solar.PvSystem | None = None,
) -> WhatIfResult:
    """Replay ``frame`` (per-minute ``pv_w``, ``load_w``, ``battery_soc_pct``, indexed by
    the minute's start, tz-aware UTC; missing minutes are missing rows) for the
    system as it is and for ``scenario``.

    ``model_sun``: use the modelled sun of ``roof`` (default: the camper's roof
    at ``system.pv_kwp``) for every minute instead of the measured PV; without
    it, the model fills only the minutes that have a load but no PV reading.
    ``raise_full``: in minutes when the real battery was full (SoC at least
    :data:`FULL_SOC_PCT`), take the higher of the measured and the modelled PV,
    since the controller then harvested only what the van used.
    """
    start, end = check_window(start, end)
    if scenario.add_pv_w < -system.pv_kwp * 1000.0 - EPS_WH:
        raise WhatIfError(f"cannot remove {-scenario.add_pv_w:g} W of panels from a {system.pv_kwp * 1000:g} Wp roof")
    minutes_in_window = math.ceil((end - start) / MINUTE)
    f = frame.loc[(frame.index >= start) & (frame.index < end)]
    f = f.loc[f["load_w"].notna()] if "load_w" in f else f.iloc[0:0]
    if f.empty:
        raise NoDataError(f"no load readings between {start.isoformat()} and {end.isoformat()}: nothing to replay")
    f = f.sort_index()
    labels = pd.DatetimeIndex(f.index)
    pv = f["pv_w"].to_numpy(dtype=float, na_value=np.nan) if "pv_w" in f else np.full(len(f), np.nan)
    missing = np.isnan(pv) | np.full(len(f), model_sun)
    roof = roof if roof is not None else replace(solar.CAMPER_ROOF, kwp=system.pv_kwp)
    if missing.any():
        pv = pv.copy()
        pv[missing] = solar.modelled_pv_w_at(labels[missing], roof, MINUTE).to_numpy()
    # while the real battery was full the controller took only what the van used: the sun
    # offered more. There the model's (average) sun stands in when it is higher.
    full = np.zeros(len(f), dtype=bool)
    if raise_full and not model_sun and "battery_soc_pct" in f:
        full = _soc_held(f["battery_soc_pct"], labels) >= FULL_SOC_PCT
        full &= ~missing
    n_raised = 0
    if full.any():
        pv = pv.copy()
        modelled = solar.modelled_pv_w_at(labels[full], roof, MINUTE).to_numpy()
        n_raised = int(np.count_nonzero(modelled > pv[full]))
        pv[full] = np.maximum(pv[full], modelled)
    pv = np.clip(pv, 0.0, None)
    load = np.clip(f["load_w"].to_numpy(dtype=float), 0.0, None)
    soc = f["battery_soc_pct"].dropna() if "battery_soc_pct" in f else pd.Series(dtype=float)
    soc_start = float(soc.iloc[0]) if len(soc) else 50.0

    ratio = (system.pv_kwp * 1000.0 + scenario.add_pv_w) / (system.pv_kwp * 1000.0) if system.pv_kwp > 0 else 1.0
    new_system = System(
        pv_kwp=max(system.pv_kwp + scenario.add_pv_w / 1000.0, 0.0),
        battery=scenario.battery or system.battery,
        mppt_max_w=system.mppt_max_w * max(ratio, 0.0),
        max_discharge_w=system.max_discharge_w,
    )
    added = np.zeros(len(f))
    for appliance in scenario.loads:
        added = added + appliance_w(labels, appliance)
    dt_h = MINUTE.total_seconds() / 3600.0
    baseline = _replay(pv, load, np.zeros(len(f)), system, soc_start, dt_h)
    outcome = _replay(pv * max(ratio, 0.0), load, added, new_system, soc_start, dt_h)
    n_modelled = int(missing.sum())
    source = "model" if model_sun else ("measured+model" if n_modelled else "measured")
    return WhatIfResult(
        start=start,
        end=end,
        minutes_in_window=minutes_in_window,
        minutes_replayed=len(f),
        coverage_pct=100.0 * len(f) / minutes_in_window,
        pv_source=source,
        minutes_pv_modelled=n_modelled,
        minutes_pv_raised=n_raised,
        soc_start_source="measured" if len(soc) else "assumed",
        baseline=baseline,
        scenario=outcome,
        added_loads=tuple(a.key if a.key != "custom" else f"{a.watts:g} W" for a in scenario.loads),
    )


def whatif_from_store(
    store: Store, camper: str, start: datetime, end: datetime, scenario: Scenario, system: System = CAMPER, *, model_sun: bool = False
) -> WhatIfResult:
    """Read the camper's per-minute power from the store (``analysis.power_frame``) and replay it."""
    from camperhub.workshops.analysis import AnalysisError, power_frame

    start, end = check_window(start, end)
    try:
        frame = power_frame(store, camper, start, end, MINUTE)
    except AnalysisError as exc:
        raise WhatIfError(str(exc)) from exc
    return run_whatif(frame, start, end, scenario, system, model_sun=model_sun)


__all__ = [
    "APPLIANCES",
    "CAMPER",
    "Appliance",
    "Battery",
    "NoDataError",
    "Outcome",
    "Scenario",
    "System",
    "WhatIfError",
    "WhatIfResult",
    "appliance_w",
    "check_window",
    "parse_appliance",
    "run_whatif",
    "whatif_from_store",
]
