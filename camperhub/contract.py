"""The shared contract: MQTT topics, the envelope, every field with its unit and range.

This module is the single source of truth that the edge agent, the ingest and
the API import (ARCHITECTURE.md §4). The JSON Schema committed under
``camperhub/schema/`` is generated from these models (``camperhub schema``)
and a test keeps the two in sync, so outside tools can validate payloads
without Python.

Ranges are *physical* plausibility bounds, not device limits: a value outside
them cannot be a real reading of a camper's 12/24/48 V system (0xFFFF in a
voltage register, a sign error) and is refused at the edge and at the ingest.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from enum import StrEnum
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

CONTRACT_VERSION = 1
TOPIC_ROOT = "camperhub/v1"
CAMPER_ID_PATTERN = r"^[a-z0-9-]{1,32}$"
_CAMPER_ID_RE = re.compile(CAMPER_ID_PATTERN)

#: Earliest timestamp accepted anywhere (2020-01-01T00:00:00Z, in ms): a reading
#: stamped before it comes from a clock that was never set.
MIN_TS_MS = 1_577_836_800_000
#: Largest envelope, in bytes, that the ingest accepts.
MAX_PAYLOAD_BYTES = 256 * 1024
#: Largest number of samples one envelope may batch.
MAX_SAMPLES_PER_ENVELOPE = 1000
#: Largest envelope once a gzip payload is inflated (a bound against decompression bombs).
MAX_INFLATED_BYTES = 2 * 2**20
#: A gzip payload starts with these bytes (RFC 1952); a JSON envelope starts with ``{``.
GZIP_MAGIC = b"\x1f\x8b"
#: Event kind that accounts for readings removed on the camper (detail: :class:`ReadingsLost` JSON).
READINGS_LOST_EVENT = "alarm_readings_lost"


class Stream(StrEnum):
    """Uplink streams: ``camperhub/v1/{camper}/{stream}``."""

    ENERGY = "energy"
    POSITION = "position"
    STATUS = "status"
    EVENT = "event"


#: QoS and retain flag per stream (§4): status is retained so that a new
#: subscriber learns at once whether the agent is online.
STREAM_QOS: dict[Stream, int] = {s: 1 for s in Stream}
STREAM_RETAIN: dict[Stream, bool] = {s: s is Stream.STATUS for s in Stream}


class ChargeState(StrEnum):
    """Charger state, common to every charge controller's own enumeration."""

    OFF = "off"
    BULK = "bulk"
    ABSORPTION = "absorption"
    FLOAT = "float"
    EQUALIZE = "equalize"
    FAULT = "fault"


def is_valid_camper_id(camper: str) -> bool:
    """True when ``camper`` may appear in a topic (``[a-z0-9-]{1,32}``)."""
    return bool(_CAMPER_ID_RE.fullmatch(camper))


def topic(camper: str, stream: Stream | str) -> str:
    """The uplink topic of ``stream`` for ``camper``."""
    if not is_valid_camper_id(camper):
        raise ValueError(f"camper id {camper!r} does not match {CAMPER_ID_PATTERN}")
    return f"{TOPIC_ROOT}/{camper}/{Stream(stream).value}"


def command_topic(camper: str, name: str) -> str:
    """The downlink topic of command ``name`` for ``camper`` (e.g. ``mode``)."""
    if not is_valid_camper_id(camper):
        raise ValueError(f"camper id {camper!r} does not match {CAMPER_ID_PATTERN}")
    if not re.fullmatch(r"[a-z_]{1,32}", name):
        raise ValueError(f"command name {name!r} is not [a-z_]{{1,32}}")
    return f"{TOPIC_ROOT}/{camper}/cmd/{name}"


def parse_topic(topic_name: str) -> tuple[str, Stream]:
    """Split an uplink topic into (camper, stream); ValueError names what is wrong."""
    parts = topic_name.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ValueError(f"topic {topic_name!r} is not {TOPIC_ROOT}/{{camper}}/{{stream}}")
    camper, stream = parts[2], parts[3]
    if not is_valid_camper_id(camper):
        raise ValueError(f"camper id {camper!r} in topic does not match {CAMPER_ID_PATTERN}")
    try:
        return camper, Stream(stream)
    except ValueError:
        raise ValueError(f"unknown stream {stream!r} in topic {topic_name!r}") from None


@dataclass(frozen=True)
class FieldSpec:
    """A numeric field of the contract: unit, physical range and meaning."""

    name: str
    unit: str
    minimum: float
    maximum: float
    description: str


def _num(unit: str, lo: float, hi: float, text: str) -> Any:
    return Field(default=None, ge=lo, le=hi, description=f"{text} [{unit}]", json_schema_extra={"unit": unit})


def _int(unit: str, lo: int, hi: int, text: str) -> Any:
    return Field(default=None, ge=lo, le=hi, description=f"{text} [{unit}]", json_schema_extra={"unit": unit})


class _Sample(BaseModel):
    """Fields every sample carries: its sequence number and reading time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=0, le=2**63 - 1, description="Per camper and stream, strictly increasing, persisted across restarts")
    ts: int = Field(ge=MIN_TS_MS, le=2**53, description="Reading time, Unix epoch milliseconds, UTC")

    def fields(self) -> dict[str, Any]:
        """The measured fields that are present (not None), without seq and ts."""
        # straight from __dict__: model_dump costs more than the validation itself
        # on the ingest's hot path; values are plain (enums are str subclasses)
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "seq" and k != "ts"}


class EnergySample(_Sample):
    """One reading of the solar system. Absent means not reported, never zero."""

    pv_voltage_v: float | None = _num("V", 0, 250, "PV array voltage")
    pv_current_a: float | None = _num("A", 0, 100, "PV array current")
    pv_power_w: float | None = _num("W", 0, 10_000, "PV array power")
    battery_voltage_v: float | None = _num("V", 0, 70, "Battery voltage")
    battery_current_a: float | None = _num("A", -500, 500, "Battery current, positive = charging")
    battery_power_w: float | None = _num("W", -20_000, 20_000, "Battery power, positive = charging")
    battery_soc_pct: float | None = _num("%", 0, 100, "Battery state of charge")
    battery_temp_c: float | None = _num("°C", -40, 80, "Battery temperature")
    load_current_a: float | None = _num("A", 0, 300, "DC load current")
    load_power_w: float | None = _num("W", 0, 10_000, "DC load power")
    charge_state: ChargeState | None = Field(default=None, description="Charger state")
    pv_yield_today_wh: float | None = _num("Wh", 0, 100_000, "PV energy since local midnight (device counter)")
    load_today_wh: float | None = _num("Wh", 0, 100_000, "Load energy since local midnight (device counter)")
    controller_temp_c: float | None = _num("°C", -40, 100, "Charge controller temperature")
    shore_power: bool | None = Field(default=None, description="Shore power connected")
    cell_voltage_min_v: float | None = _num("V", 0, 5, "Lowest cell voltage (BMS)")
    cell_voltage_max_v: float | None = _num("V", 0, 5, "Highest cell voltage (BMS)")
    battery_cycles: int | None = _int("cycles", 0, 100_000, "Battery charge cycles (BMS)")
    battery_soh_pct: float | None = _num("%", 0, 100, "Battery state of health (BMS)")
    readings_n: int | None = _int(
        "readings", 2, 1_000_000,
        "How many raw readings this sample is the 1-minute mean of (folded on the camper to keep the queue's disk "
        "budget; its seq is the last of them); absent for one reading",
    )


class PositionSample(_Sample):
    """One GPS position (WGS84)."""

    lat: float = Field(ge=-90, le=90, description="Latitude [deg]", json_schema_extra={"unit": "deg"})
    lon: float = Field(ge=-180, le=180, description="Longitude [deg]", json_schema_extra={"unit": "deg"})
    alt_m: float | None = _num("m", -500, 9_000, "Altitude above mean sea level")
    speed_kmh: float | None = _num("km/h", 0, 250, "Ground speed")
    course_deg: float | None = _num("deg", 0, 360, "Course over ground")
    hdop: float | None = _num("1", 0, 100, "Horizontal dilution of precision")
    sats: int | None = _int("count", 0, 64, "Satellites used")
    fix: Literal[0, 2, 3] = Field(description="0 none, 2 = 2D, 3 = 3D")


class StatusSample(_Sample):
    """The agent's state; retained, and set to offline by the Last Will."""

    state: Literal["online", "offline"]
    agent_version: str | None = Field(default=None, max_length=64)
    uptime_s: float | None = _num("s", 0, 10 * 365 * 86400, "Agent uptime")
    queue_depth: int | None = _int("messages", 0, 10**9, "Samples waiting to be sent")
    oldest_queued_s: float | None = _num("s", 0, 10 * 365 * 86400, "Age of the oldest queued sample")
    queue_folded: int | None = _int("readings", 0, 2**53, "Readings folded into 1-minute means so far to keep the queue's disk budget")
    queue_dropped: int | None = _int("readings", 0, 2**53, "Readings dropped so far because folding was not enough")
    queue_unsynced: int | None = _int(
        "readings", 0, 2**53, "Readings removed so far because their time could not be known (taken in a boot whose clock was never set)"
    )
    clock: Literal["gps", "ntp", "unsynced"] | None = Field(default=None, description="Which clock stamps the readings now")
    in_service: bool | None = None
    gps_fix: Literal[0, 2, 3] | None = Field(
        default=None, description="The GPS now: 0 no fix (no position is sent), 2 = 2D, 3 = 3D; absent without a GPS"
    )
    mode: Literal["normal", "live"] | None = None
    live_until_ts: int | None = Field(
        default=None, ge=MIN_TS_MS, le=2**53, description="While mode is live: when it falls back to normal, Unix epoch ms"
    )
    last_error: str | None = Field(default=None, max_length=500)


class EventSample(_Sample):
    """Something that happened (button, shore power, service window, alarm)."""

    kind: str = Field(
        pattern=r"^(button|shore_power_on|shore_power_off|service_start|service_stop|arrival|departure|alarm_[a-z0-9_]{1,40})$",
        description="What happened; arrival and departure (at a stop, detail = the stop id) come from dwell in its geofence",
    )
    detail: str | None = Field(default=None, max_length=500)


SAMPLE_MODELS: dict[Stream, type[_Sample]] = {
    Stream.ENERGY: EnergySample,
    Stream.POSITION: PositionSample,
    Stream.STATUS: StatusSample,
    Stream.EVENT: EventSample,
}


def field_specs(stream: Stream = Stream.ENERGY) -> dict[str, FieldSpec]:
    """Numeric fields of ``stream`` with unit and physical range, read off the models."""
    specs: dict[str, FieldSpec] = {}
    for name, info in SAMPLE_MODELS[stream].model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict) or "unit" not in extra:
            continue
        lo = hi = None
        for m in info.metadata:
            lo = getattr(m, "ge", lo) if getattr(m, "ge", None) is not None else lo
            hi = getattr(m, "le", hi) if getattr(m, "le", None) is not None else hi
        assert lo is not None and hi is not None, name
        specs[name] = FieldSpec(name, str(extra["unit"]), float(lo), float(hi), info.description or "")
    return specs


class _EnvelopeBase(BaseModel):
    """Fields and checks shared by the four envelopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(description="Contract version")
    camper: str = Field(pattern=CAMPER_ID_PATTERN)

    @field_validator("samples", check_fields=False)
    @classmethod
    def _seq_increasing(cls, samples: list[_Sample]) -> list[_Sample]:
        for before, after in zip(samples, samples[1:]):
            if after.seq <= before.seq:
                raise ValueError(f"seq must increase within an envelope ({before.seq} then {after.seq})")
        return samples


StorageKind = Literal["real", "int", "bool", "text"]


def _storage_kind(annotation: Any) -> StorageKind:
    """How a field's values are stored; bool before int (bool is an int subclass)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return _storage_kind(type(get_args(annotation)[0]))
    if origin in (Union, UnionType):
        kinds = {_storage_kind(a) for a in get_args(annotation) if a is not NoneType}
        if len(kinds) == 1:
            return kinds.pop()
    elif isinstance(annotation, type):
        for py, kind in ((bool, "bool"), (int, "int"), (float, "real"), (str, "text")):
            if issubclass(annotation, py):
                return kind  # type: ignore[return-value]
    raise TypeError(f"no storage kind for {annotation!r}")


#: Storage kind of every field of every stream, ``seq`` included (``ts`` is the time, not a
#: field): the one place the stores learn what type a contract field is stored as.
STORAGE_KINDS: dict[Stream, dict[str, StorageKind]] = {
    stream: {name: _storage_kind(info.annotation) for name, info in model.model_fields.items() if name != "ts"}
    for stream, model in SAMPLE_MODELS.items()
}


def _envelope_model(stream: Stream) -> type[_EnvelopeBase]:
    name = f"{stream.value.capitalize()}Envelope"
    return create_model(
        name,
        __base__=_EnvelopeBase,
        stream=(Literal[stream.value], Field(description="Stream name, as in the topic")),  # type: ignore[valid-type]
        samples=(list[SAMPLE_MODELS[stream]], Field(min_length=1, max_length=MAX_SAMPLES_PER_ENVELOPE)),  # type: ignore[valid-type]
    )


ENVELOPE_MODELS: dict[Stream, type[_EnvelopeBase]] = {s: _envelope_model(s) for s in Stream}
EnergyEnvelope = ENVELOPE_MODELS[Stream.ENERGY]
PositionEnvelope = ENVELOPE_MODELS[Stream.POSITION]
StatusEnvelope = ENVELOPE_MODELS[Stream.STATUS]
EventEnvelope = ENVELOPE_MODELS[Stream.EVENT]


class ModeCommand(BaseModel):
    """Downlink ``cmd/mode``: switch to live (1 Hz) for a while, or back to normal."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["normal", "live"]
    minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    issued_ts: int | None = Field(
        default=None, ge=MIN_TS_MS, le=2**53,
        description="When it was issued, Unix epoch ms: a command delivered late (the camper was offline) counts its minutes from here",
    )

    @model_validator(mode="after")
    def _live_needs_duration(self) -> "ModeCommand":
        if self.mode == "live" and self.minutes is None:
            raise ValueError("live mode needs minutes (it falls back to normal by itself)")
        return self


class StoredReceipt(BaseModel):
    """Downlink ``cmd/stored``: the server has stored these readings; the camper may forget them.

    Why: the broker's PUBACK only says the broker has the message, and a broker
    that crashes before it saved its queue (Mosquitto saves on a clean stop or
    every ``autosave_interval``) loses what it acknowledged. The ingest sends a
    receipt once the store accepted a batch; the camper keeps every reading
    until its receipt comes, and sends it again when none comes in time
    (edge ``queue.resend_after_s``; writes are idempotent, so a second copy
    changes nothing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: Literal["energy", "position", "event"]
    seqs: list[tuple[int, int]] = Field(min_length=1, max_length=MAX_SAMPLES_PER_ENVELOPE, description="Inclusive seq ranges stored")

    @field_validator("seqs")
    @classmethod
    def _ranges_ordered(cls, seqs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for lo, hi in seqs:
            if lo < 0 or hi < lo:
                raise ValueError(f"seq range {lo}..{hi} is not 0 <= first <= last")
        return seqs


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges of ``seqs`` (a receipt's ``seqs``)."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


class ReadingsLost(BaseModel):
    """The ``detail`` (JSON) of an ``alarm_readings_lost`` event: readings the camper removed, and why.

    ``dropped``: over the disk budget with nothing left to fold; ``unsynced``:
    taken in a boot whose clock was never set, so no true time can be given.
    The seqs in ``seq_first..seq_last`` that never arrive are these ``n`` readings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: Literal["energy", "position", "event"]
    reason: Literal["dropped", "unsynced"]
    seq_first: int = Field(ge=0)
    seq_last: int = Field(ge=0)
    n: int = Field(ge=1, description="Readings removed (a folded row counts its readings_n)")

    @model_validator(mode="after")
    def _ordered(self) -> "ReadingsLost":
        if self.seq_last < self.seq_first:
            raise ValueError("seq_last before seq_first")
        return self


class ContractError(ValueError):
    """A payload that breaks the contract; ``reason`` is short and names the problem."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def make_envelope(camper: str, stream: Stream | str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Build and validate an envelope; returns the JSON-ready dict (None fields dropped)."""
    s = Stream(stream)
    env = ENVELOPE_MODELS[s].model_validate({"v": CONTRACT_VERSION, "camper": camper, "stream": s.value, "samples": samples})
    return env.model_dump(mode="json", exclude_none=True)


def encode_envelope(camper: str, stream: Stream | str, samples: list[dict[str, Any]], *, compress: bool = False) -> bytes:
    """The UTF-8 JSON payload of an envelope, compact; gzip'd (RFC 1952) when ``compress``.

    Compression is how the camper's normal mode keeps 4G data small: a batch of
    a few minutes of readings repeats the same keys, and gzip takes it to a
    fraction. Receivers tell the two forms apart by the first two bytes
    (:data:`GZIP_MAGIC`); the inflated payload is the same JSON envelope.
    """
    raw = json.dumps(make_envelope(camper, stream, samples), separators=(",", ":"), ensure_ascii=False).encode()
    return gzip_payload(raw) if compress else raw


def gzip_payload(raw: bytes) -> bytes:
    """gzip one JSON envelope (no file name, mtime 0: the same envelope gives the same bytes)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(raw) + packer.flush()


def inflate_payload(payload: bytes) -> bytes:
    """The JSON envelope inside a gzip payload; ContractError when it is corrupt or inflates past :data:`MAX_INFLATED_BYTES`."""
    unpacker = zlib.decompressobj(31)
    try:
        raw = unpacker.decompress(payload, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise ContractError(f"corrupt gzip payload: {exc}") from exc
    if unpacker.unconsumed_tail:
        raise ContractError(f"gzip payload inflates past {MAX_INFLATED_BYTES} bytes")
    if not unpacker.eof:
        raise ContractError("truncated gzip payload")
    return raw


def decode_envelope(payload: bytes, topic_name: str | None = None) -> BaseModel:
    """Parse and validate a payload; ContractError says exactly what is wrong.

    A gzip payload (:func:`encode_envelope` with ``compress``) is inflated first.
    When ``topic_name`` is given, the camper and stream of the payload must
    match the topic it arrived on (a camper cannot speak for another).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if payload[:2] == GZIP_MAGIC:
        payload = inflate_payload(payload)
    if topic_name is not None:
        # Fast path (the ingest's hot loop): pydantic parses and validates the JSON in
        # one pass in Rust. Anything it refuses takes the slow path below, which
        # finds the precise reason.
        try:
            t_camper, t_stream = parse_topic(topic_name)
            env = ENVELOPE_MODELS[t_stream].model_validate_json(payload)
            if env.camper == t_camper:
                return env
        except Exception:  # noqa: BLE001 - the slow path says what is wrong
            pass
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError("envelope is not a JSON object")
    if data.get("v") != CONTRACT_VERSION:
        raise ContractError(f"unsupported contract version v={data.get('v')!r} (expected {CONTRACT_VERSION})")
    try:
        stream = Stream(data.get("stream"))
    except ValueError:
        raise ContractError(f"unknown stream {data.get('stream')!r}") from None
    if topic_name is not None:
        try:
            t_camper, t_stream = parse_topic(topic_name)
        except ValueError as exc:
            raise ContractError(str(exc)) from exc
        if t_camper != data.get("camper"):
            raise ContractError(f"camper {data.get('camper')!r} in payload does not match topic camper {t_camper!r}")
        if t_stream is not stream:
            raise ContractError(f"stream {stream.value!r} in payload does not match topic stream {t_stream.value!r}")
    try:
        return ENVELOPE_MODELS[stream].model_validate(data)
    except Exception as exc:  # pydantic.ValidationError: keep its precise locations
        raise ContractError(_short_validation_message(exc)) from exc


def _short_validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every envelope, for outside tools."""
    defs: dict[str, Any] = {}
    refs = []
    for stream, model in ENVELOPE_MODELS.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
        refs.append({"$ref": f"#/$defs/{model.__name__}"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://camperhub.example/schema/telemetry-v1.json",
        "title": "Camper Hub telemetry envelope, contract v1",
        "description": "Generated from camperhub/contract.py by `camperhub schema`; do not edit by hand.",
        "oneOf": refs,
        "$defs": dict(sorted(defs.items())),
    }


def json_schema_text() -> str:
    """The committed schema file's exact text."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
