"""Times at the API boundary: UTC out, explicit offsets (or Europe/Rome dates) in.

Why: the camper serves Italian neighbourhoods and its tenants read local time,
while storage and analyses are UTC. A time without an offset is ambiguous
(twice a year an hour happens twice in Europe/Rome), so it is refused, not guessed.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Europe/Rome")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_instant(text: str, name: str) -> datetime:
    """An ISO 8601 time with an explicit offset (``Z``, ``+02:00``) or a date (``YYYY-MM-DD``,
    local midnight in Europe/Rome); ValueError names the parameter and the problem."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {text!r} is not a date ({exc})") from None
        return datetime.combine(day, time(0), LOCAL_TZ).astimezone(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an ISO 8601 time such as 2026-05-04T14:00:00+02:00 or 2026-05-04T12:00:00Z") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: {text!r} has no UTC offset; add one (Z, +01:00, +02:00 for Europe/Rome) so that it is not ambiguous")
    return value.astimezone(UTC)


def iso_utc(dt: datetime) -> str:
    """``2026-05-04T12:00:00Z`` (milliseconds when there are any)."""
    dt = dt.astimezone(UTC)
    spec = "milliseconds" if dt.microsecond else "seconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def iso_local(dt: datetime) -> str:
    """The same instant in Europe/Rome with its offset: ``2026-05-04T14:00:00+02:00``."""
    local = dt.astimezone(LOCAL_TZ)
    return local.isoformat(timespec="milliseconds" if local.microsecond else "seconds")


def from_ms(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def when(ts_ms: int) -> dict[str, str]:
    """``{"utc": ..., "local": ...}`` of an epoch-millisecond time."""
    dt = from_ms(ts_ms)
    return {"utc": iso_utc(dt), "local": iso_local(dt)}
