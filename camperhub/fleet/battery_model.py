"""What the battery analytics answer: the spec of a camper's battery and the JSON shapes of
the full report and of the cheap fleet summary (camperhub/fleet/battery.py computes them).

Why every figure is a small object instead of a bare number: fleet staff act on these
figures (replace a battery, book a workshop), so each one carries how it was computed
(``method``), how far to trust it (``confidence``) and, when the data cannot support it,
``value: null`` with a ``reason`` that starts with "not enough data". A missing field is
never turned into a zero.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Confidence = Literal["high", "medium", "low"]

#: Prefix of every reason of a figure without a value (the API and the page test for it).
NOT_ENOUGH = "not enough data"


class BatterySpec(BaseModel):
    """Nameplate of a camper's battery (per-camper config the API passes in).

    Defaults describe the real camper (edge/sim/model.py's CamperSpec): a 12.8 V, 200 Ah
    LiFePO4 pack of 4 cells in series.
    """

    model_config = ConfigDict(frozen=True)

    nameplate_ah: float = Field(200.0, gt=0, le=10_000, description="Rated capacity (Ah)")
    nominal_v: float = Field(12.8, gt=0, le=1_000, description="Nominal pack voltage (V)")
    chemistry: Literal["lifepo4"] = "lifepo4"
    cells_in_series: int = Field(4, ge=1, le=400)


class Figure(BaseModel):
    """One figure of the report: ``{value, unit, method, confidence, note}`` or
    ``{value: null, reason: "not enough data: ..."}``. ``value`` is a number or, for
    figures that are a small table (histogram, monthly trend), a JSON object."""

    model_config = ConfigDict(frozen=True)

    value: Any = None
    unit: str | None = None
    method: str | None = None
    confidence: Confidence | None = None
    note: str | None = None
    reason: str | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    @classmethod
    def missing(cls, why: str, method: str | None = None) -> Figure:
        """A figure the data cannot support; ``why`` says what is missing."""
        return cls(value=None, reason=f"{NOT_ENOUGH}: {why}", method=method)

    def public(self) -> dict[str, Any]:
        """The JSON object of the API contract: a known figure has no ``reason``; an unknown
        one only ``value``, ``reason`` (and ``method`` when one was attempted)."""
        if self.value is None:
            out: dict[str, Any] = {"value": None, "reason": self.reason or NOT_ENOUGH}
            if self.method:
                out["method"] = self.method
            return out
        return {"value": self.value, "unit": self.unit, "method": self.method, "confidence": self.confidence, "note": self.note}


class BatteryReport(BaseModel):
    """The full battery report of one camper over a window (``GET /api/v1/fleet/{camper}/battery``)."""

    model_config = ConfigDict(frozen=True)

    camper: str
    start: datetime
    end: datetime
    spec: BatterySpec
    every_s: int = Field(description="Interval of the per-interval means the figures were computed from (s)")
    intervals: int = Field(description="Intervals with any battery data in the window")
    coverage_pct: float = Field(description="Share of the window's intervals that hold data (%)")
    equivalent_cycles: Figure
    dod_histogram: Figure
    capacity_ah: Figure
    soh_pct: Figure
    soh_trend_pct_per_month: Figure
    internal_resistance_mohm: Figure
    time_high_soc_h: Figure
    time_hot_h: Figure
    time_cold_h: Figure
    cell_imbalance_mv: Figure
    soc_drift_pct: Figure
    days_since_full_reset: Figure

    FIGURES: ClassVar[tuple[str, ...]] = (
        "equivalent_cycles", "dod_histogram", "capacity_ah", "soh_pct", "soh_trend_pct_per_month",
        "internal_resistance_mohm", "time_high_soc_h", "time_hot_h", "time_cold_h", "cell_imbalance_mv",
        "soc_drift_pct", "days_since_full_reset",
    )

    def public(self) -> dict[str, Any]:
        """JSON-ready dict for the API (figures in their contract shape)."""
        out = self.model_dump(mode="json", exclude=set(self.FIGURES))
        for name in self.FIGURES:
            out[name] = getattr(self, name).public()
        return out


SohSource = Literal["bms", "estimate"]


class BatterySummary(BaseModel):
    """The cheap per-camper line of the fleet overview (``GET /api/v1/fleet``).

    Every field may be null: a camper without a BMS has no ``soh_pct`` until a report has
    measured its capacity; a camper that never reached a full charge in the looked-back
    window has no ``days_since_full_reset``.
    """

    model_config = ConfigDict(frozen=True)

    camper: str
    at: datetime = Field(description="When the summary was made (UTC)")
    soc_pct: float | None = None
    soc_at: datetime | None = Field(None, description="Time of the sample the SoC comes from (UTC)")
    soh_pct: float | None = None
    soh_source: SohSource | None = None
    cycles: float | None = None
    cycles_source: SohSource | None = None
    last_full_reset: datetime | None = None
    days_since_full_reset: float | None = None
    full_reset_looked_back_days: float = Field(description="How far back a full charge was looked for")
