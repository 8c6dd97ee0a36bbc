"""InfluxQL pieces shared by the InfluxDB backend's modules: quoting, field kinds, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from camperhub.contract import SAMPLE_MODELS, Stream

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _field_kind(annotation: Any) -> type | None:
    """float, int, bool or str: how a contract field is stored (float wins over int)."""
    if get_origin(annotation) is Literal:
        return type(get_args(annotation)[0])
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    kinds = {_field_kind(m) if get_origin(m) is Literal else m for m in members if m is not type(None)}
    kinds = {str if isinstance(k, type) and issubclass(k, str) else k for k in kinds}
    return next((k for k in (float, bool, int, str) if k in kinds), None)


#: Stored type of every contract field, per stream (``ts`` is the point's time, not a field).
FIELD_KINDS: dict[Stream, dict[str, type]] = {
    stream: {n: k for n, i in model.model_fields.items() if n != "ts" and (k := _field_kind(i.annotation))}
    for stream, model in SAMPLE_MODELS.items()
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
