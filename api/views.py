"""JSON shapes shared by the routes and the live streams (UTC ISO times, Europe/Rome beside them)."""

from __future__ import annotations

from typing import Any

from camperhub.api.timefmt import iso_local, iso_utc, from_ms


def sample_view(camper: str, stream: str, ts_ms: int, fields: dict[str, Any]) -> dict[str, Any]:
    """One sample as the API shows it, whether it comes from the store or live from the broker."""
    dt = from_ms(ts_ms)
    out_fields = {k: (v.value if hasattr(v, "value") and isinstance(v, str) else v) for k, v in fields.items() if k != "seq"}
    return {
        "camper": camper,
        "stream": stream,
        "time": iso_utc(dt),
        "local_time": iso_local(dt),
        "seq": fields.get("seq"),
        "fields": out_fields,
    }
