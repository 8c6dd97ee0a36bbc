"""InfluxQL pieces shared by the InfluxDB backend's modules: quoting, field kinds, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from camperhub.contract import STORAGE_KINDS, Stream

_PY_TYPE: dict[str, type] = {"real": float, "int": int, "bool": bool, "text": str}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: Python type a contract field is stored as in InfluxDB, per stream (from the contract).
FIELD_KINDS: dict[Stream, dict[str, type]] = {
    stream: {name: _PY_TYPE[kind] for name, kind in kinds.items()} for stream, kinds in STORAGE_KINDS.items()
}


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes, escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_literal(text: str) -> str:
    """An InfluxQL string literal in single quotes, escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def ns(t: datetime) -> int:
    """Epoch nanoseconds of an aware datetime, exact (InfluxQL takes bare integers as ns)."""
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000
