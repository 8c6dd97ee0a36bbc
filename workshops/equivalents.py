"""CO2 avoided and everyday equivalents of an amount of energy, each with its assumption.

Why a module of its own: the numbers here are assumptions that workshop
leaders will question ("a phone charge is how much?"), so each one sits beside
its reasoning and its source, in one place, and the pages translate the
assumptions by ``key`` (message catalogues), not from the English text here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: kg of CO2 per kWh of electricity consumed from the Italian grid.
#:
#: Source: ISPRA (Istituto Superiore per la Protezione e la Ricerca Ambientale),
#: "Fattori di emissione atmosferica di gas a effetto serra nel settore elettrico
#: nazionale e nei principali Paesi europei" / "Efficiency and decarbonization
#: indicators ...", ISPRA Rapporti series (edition 2024, data year 2022): CO2
#: emission factor of electricity *consumption* in Italy about 257 g CO2/kWh
#: (the factor of gross production is close to it, about 0.25-0.26).
#: This value is a RECOLLECTION of the published table, not verified offline
#: while writing: check it against the current ISPRA edition (the dataset
#: "Fattori di emissione per la produzione ed il consumo di energia elettrica in
#: Italia", updated yearly) and update ``ITALY_GRID_CO2_YEAR`` with it.
#: Why consumption and not production: energy the camper makes itself is energy
#: not drawn at a socket, so the grid's losses are avoided too.
ITALY_GRID_CO2_KG_PER_KWH = 0.257
ITALY_GRID_CO2_YEAR = 2022
ITALY_GRID_CO2_SOURCE = "ISPRA, CO2 emission factor of electricity consumption in Italy (data year 2022, ISPRA Rapporti 2024), recollected"


@dataclass(frozen=True)
class Equivalent:
    """How many of an everyday thing an amount of energy would do."""

    key: str  # "phone_charges" | "led_lamp_hours" | "kettles_boiled" | "ebike_km"
    count: float  # how many, from the energy it is applied to
    wh_each: float  # the assumption in numbers
    assumption: str  # the assumption in words (English; pages translate by key)


# A smartphone battery of about 4,000 mAh at 3.85 V nominal holds 15.4 Wh; a
# charger and the phone's charging circuit lose about 15-20 %: ~18 Wh from the
# socket per full charge (0 to 100 %).
PHONE_CHARGE_WH = 18.0
# An LED bulb giving the light of an old 60 W incandescent bulb (about 800 lm)
# draws about 8 W: 8 Wh per hour of light.
LED_LAMP_W = 8.0
# One litre of water from 15 °C to 100 °C: 4.186 kJ/(kg K) x 1 kg x 85 K =
# 356 kJ = 98.8 Wh; an electric kettle puts about 90 % of its energy into the
# water: ~110 Wh per litre boiled.
KETTLE_WH = round(4.186 * 1.0 * 85 / 3.6 / 0.9, 0)
# A city pedal-assist e-bike uses about 10 Wh per km (a 500 Wh battery lasts
# about 50 km at medium assistance), charging losses included.
EBIKE_WH_PER_KM = 10.0

ASSUMPTIONS: tuple[tuple[str, float, str], ...] = (
    ("phone_charges", PHONE_CHARGE_WH, "a full smartphone charge: 4,000 mAh at 3.85 V = 15.4 Wh, plus charger losses: ~18 Wh"),
    ("led_lamp_hours", LED_LAMP_W, "an hour of an 8 W LED bulb (the light of an old 60 W bulb)"),
    ("kettles_boiled", KETTLE_WH, "a litre of water from 15 to 100 °C in a kettle 90 % efficient: ~110 Wh"),
    ("ebike_km", EBIKE_WH_PER_KM, "a km on a city pedal-assist e-bike: ~10 Wh"),
)


def equivalents(wh: float | None) -> tuple[Equivalent, ...]:
    """Everyday equivalents of ``wh`` watt-hours; none for an unknown amount (a gap, not zero)."""
    if wh is None:
        return ()
    return tuple(Equivalent(key, wh / each, each, words) for key, each, words in ASSUMPTIONS)


def co2_avoided_kg(wh: float | None) -> float | None:
    """kg of CO2 the Italian grid would have emitted to supply ``wh`` (None stays None)."""
    return None if wh is None else wh / 1000.0 * ITALY_GRID_CO2_KG_PER_KWH
