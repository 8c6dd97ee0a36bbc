"""Small server-side SVG charts for recaps and handouts.

Why inline SVG drawn here and not matplotlib or a JS library: the recap page
and the printed handout must work without JavaScript and print crisply at any
size, and a line of power over a few hours or a dozen bars of daily energy
need nothing more than a few ``<path>`` and ``<rect>`` elements. Every chart
carries ``role="img"`` with a ``<title>`` and a ``<desc>`` (screen readers,
and what a reader sees when the SVG cannot be shown).

Times on the axis are Europe/Rome (what people read); the data stay UTC.
A gap in the data (a missing interval, never a zero) breaks the line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import pandas as pd

LOCAL_TZ = ZoneInfo("Europe/Rome")
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 24, 40


@dataclass(frozen=True)
class Line:
    """One series of a power chart: a frame column, its legend label, its CSS class (colour)."""

    column: str
    label: str
    css: str
    area: bool = False


def nice_max(value: float) -> float:
    """A round upper bound of the axis (1, 2, 4, 6, 8 x 10^n: quarters read well) at or above ``value``; 1 for nothing."""
    if not value or value <= 0 or math.isnan(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 4, 6, 8, 10):
        if m * exp >= value - 1e-9:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 10_000 else f"{v / 1000:g}k"


def _svg_open(title: str, desc: str, css: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
    ]


def _y_axis(ymax: float, unit: str) -> list[str]:
    out = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        v = ymax * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    out.append(f'<text class="unit" x="{LEFT - 6}" y="{TOP - 10}" text-anchor="end">{escape(unit)}</text>')
    return out


def _time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Tick instants and their Europe/Rome labels: hours on short windows, days on long ones."""
    span = end - start
    if span <= timedelta(days=2):
        step_h = next((h for h in (1, 2, 3, 6, 12) if span / timedelta(hours=h) <= 8), 24)
        local = start.astimezone(LOCAL_TZ).replace(minute=0, second=0, microsecond=0)
        ticks = []
        t = local
        while t.astimezone(start.tzinfo) <= end:
            if t.astimezone(start.tzinfo) >= start and t.hour % step_h == 0:
                ticks.append((t, t.strftime("%H:%M")))
            t = (t + timedelta(hours=1)).astimezone(LOCAL_TZ)  # DST-safe: whole hours of UTC
        return ticks
    step_d = next((d for d in (1, 2, 7, 14) if span / timedelta(days=d) <= 10), 30)
    day = start.astimezone(LOCAL_TZ).date()
    ticks = []
    while True:
        t = datetime.combine(day, datetime.min.time(), LOCAL_TZ)
        if t > end:
            break
        if t >= start and (day.toordinal() % step_d == 0 or step_d == 1):
            ticks.append((t, day.strftime("%d/%m")))
        day += timedelta(days=1)
    return ticks


def power_chart(
    frame: pd.DataFrame, lines: Sequence[Line], start: datetime, end: datetime, *,
    title: str, desc: str, unit: str = "W", every: timedelta = timedelta(minutes=1),
) -> str:
    """A line (or area) chart of power over ``[start, end)`` from a frame indexed by UTC time.

    Rows further apart than 1.5 × ``every`` are a gap: the line breaks there.
    """
    if end <= start:
        raise ValueError("the chart's window must end after it starts")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    cols = [ln.column for ln in lines if ln.column in frame.columns]
    peak = float(frame[cols].abs().max().max()) if cols and not frame.empty else 0.0
    ymax = nice_max(peak)
    span_s = (end - start).total_seconds()

    def x(t: datetime) -> float:
        return LEFT + plot_w * min(max((t - start).total_seconds() / span_s, 0.0), 1.0)

    def y(v: float) -> float:
        return TOP + plot_h - plot_h * max(min(v / ymax, 1.0), 0.0)

    out = _svg_open(title, desc, "power")
    out += _y_axis(ymax, unit)
    for t, label in _time_ticks(start, end):
        out.append(f'<text class="tick" x="{x(t):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    gap_s = every.total_seconds() * 1.5
    for ln in lines:
        if ln.column not in frame.columns:
            continue
        col = frame[ln.column].dropna()
        runs: list[list[tuple[float, float]]] = []
        prev: pd.Timestamp | None = None
        for ts, v in col.items():
            t = ts.to_pydatetime()
            if prev is None or (ts - prev).total_seconds() > gap_s:
                runs.append([])
            runs[-1].append((x(t), y(float(v))))
            prev = ts
        for run in runs:
            if len(run) == 1:
                run = [run[0], (run[0][0] + 1, run[0][1])]
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
            if ln.area:
                base = TOP + plot_h
                out.append(f'<path class="area {ln.css}" d="M{run[0][0]:.1f},{base} L{pts} L{run[-1][0]:.1f},{base} Z"/>')
            out.append(f'<polyline class="line {ln.css}" fill="none" points="{pts}"/>')
    out += _legend([(ln.label, ln.css) for ln in lines])
    out.append("</svg>")
    return "\n".join(out)


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    xpos = LEFT
    for label, css in items:
        out.append(f'<rect class="key {css}" x="{xpos}" y="{HEIGHT - 14}" width="12" height="8"/>')
        out.append(f'<text class="legend" x="{xpos + 16}" y="{HEIGHT - 6}">{escape(label)}</text>')
        xpos += 24 + 7 * len(label)
    return out


def daily_bar_chart(
    days: Sequence[tuple[date, dict[str, float | None]]], bars: Sequence[tuple[str, str, str]], *,
    title: str, desc: str, unit: str = "Wh",
) -> str:
    """Grouped bars per day: ``days`` = (day, {key: value}), ``bars`` = (key, label, css).

    A missing value (None: not enough data) draws no bar and a small "–" so a
    gap never reads as zero.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for _, d in days for k, _, _ in bars if (v := d.get(k)) is not None]
    ymax = nice_max(max(values) if values else 0.0)
    out = _svg_open(title, desc, "daily")
    out += _y_axis(ymax, unit)
    n = max(len(days), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.8 / max(len(bars), 1), 1.0)
    label_every = max(1, math.ceil(n / 12))
    for i, (day, vals) in enumerate(days):
        x0 = LEFT + slot * i + slot * 0.1
        for j, (key, label, css) in enumerate(bars):
            v = vals.get(key)
            bx = x0 + bar_w * j
            if v is None:
                out.append(f'<text class="missing" x="{bx + bar_w / 2:.1f}" y="{TOP + plot_h - 3}" text-anchor="middle">–</text>')
                continue
            h = plot_h * min(max(v / ymax, 0.0), 1.0)
            out.append(
                f'<rect class="bar {css}" x="{bx:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                f"<title>{escape(day.strftime('%d/%m') + f' {label}: {v:.0f} {unit}')}</title></rect>"
            )
        if i % label_every == 0:
            out.append(f'<text class="tick" x="{LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                       f'text-anchor="middle">{escape(day.strftime("%d/%m"))}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    out += _legend([(label, css) for _, label, css in bars])
    out.append("</svg>")
    return "\n".join(out)


__all__ = ["Line", "daily_bar_chart", "nice_max", "power_chart"]
