"""The SVG charts: well-formed, accessible, local time on the axis, gaps drawn as gaps."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from camperhub.workshops.charts import Line, daily_bar_chart, nice_max, power_chart

NS = {"s": "http://www.w3.org/2000/svg"}
START = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)  # 08:00 in Europe/Rome (CEST)


def frame(minutes: list[int], pv: float = 200.0, load: float = 50.0) -> pd.DataFrame:
    idx = pd.DatetimeIndex([START + timedelta(minutes=m) for m in minutes], name="time")
    return pd.DataFrame({"pv_w": [pv] * len(idx), "load_w": [load] * len(idx)}, index=idx)


def test_nice_max() -> None:
    assert nice_max(0) == 1 and nice_max(float("nan")) == 1
    assert nice_max(190) == 200 and nice_max(201) == 400 and nice_max(2300) == 4000 and nice_max(7.5) == 8


def test_power_chart_is_accessible_svg_with_rome_times_and_gaps() -> None:
    f = frame([*range(0, 60), *range(120, 180)])  # an hour of readings, an hour of nothing, an hour again
    svg = power_chart(f, [Line("pv_w", "Sole", "pv", area=True), Line("load_w", "Consumi", "load")],
                      START, START + timedelta(hours=3), title="Potenza <solare>", desc="Media & consumi")
    root = ET.fromstring(svg)  # well-formed XML (and the title escaped)
    assert root.get("role") == "img"
    assert root.find("s:title", NS).text == "Potenza <solare>" and root.find("s:desc", NS).text == "Media & consumi"
    ticks = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "tick"]
    assert "08:00" in ticks and "10:00" in ticks and "06:00" not in ticks  # Europe/Rome, not UTC
    lines = [p for p in root.iter("{http://www.w3.org/2000/svg}polyline") if "pv" in p.get("class")]
    assert len(lines) == 2  # the gap breaks the line in two
    assert {"Sole", "Consumi"} <= {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}


def test_power_chart_without_data_and_a_bad_window() -> None:
    svg = power_chart(frame([]), [Line("pv_w", "PV", "pv")], START, START + timedelta(hours=1), title="t", desc="d")
    assert "<polyline" not in svg and ET.fromstring(svg) is not None
    with pytest.raises(ValueError, match="end after it starts"):
        power_chart(frame([]), [], START, START, title="t", desc="d")


def test_daily_bars_mark_a_missing_day_instead_of_a_zero() -> None:
    days = [(date(2026, 5, 4), {"pv": 1200.0, "load": 400.0}), (date(2026, 5, 5), {"pv": None, "load": None}),
            (date(2026, 5, 6), {"pv": 0.0, "load": 300.0})]
    svg = daily_bar_chart(days, [("pv", "Sole", "pv"), ("load", "Consumi", "load")], title="Energia", desc="per giorno")
    root = ET.fromstring(svg)
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if "bar" in (r.get("class") or "")]
    assert len(bars) == 4  # two days of two bars; the missing day none
    missing = [t for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "missing"]
    assert len(missing) == 2
    assert ["04/05", "05/05", "06/05"] == [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "tick" and "/" in (t.text or "")]
    heights = {b.find("s:title", NS).text: float(b.get("height")) for b in bars}
    assert heights["04/05 Sole: 1200 Wh"] > heights["04/05 Consumi: 400 Wh"] > 0 and heights["06/05 Sole: 0 Wh"] == 0
