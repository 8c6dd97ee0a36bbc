"""Device register maps: a Modbus device is data, not code.

One YAML file per device model under ``firmware-config/devices/`` describes
how to read it (link settings, request limits) and every register that feeds a
contract field (address, function, data type, word order, scale, unit, valid
range, and the datasheet entry it comes from). This module is the schema of
those files: unknown keys are refused, and fields are checked against each
other and against the contract (type vs register count, overlapping registers,
one register per field, units equal to the contract's).
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from camperhub.contract import ChargeState, EnergySample, field_specs
from camperhub.yamlconf import ConfigError, ConfigIssue, PathKey, load_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def devices_dir() -> Path:
    """Where register maps live: ``CAMPERHUB_DEVICES_DIR`` or the repository's folder."""
    return Path(os.environ.get("CAMPERHUB_DEVICES_DIR") or REPO_ROOT / "firmware-config" / "devices")


class Function(StrEnum):
    """Modbus read function: ``holding`` is FC 03, ``input`` is FC 04."""

    HOLDING = "holding"
    INPUT = "input"

    @property
    def code(self) -> int:
        return 3 if self is Function.HOLDING else 4


class DataType(StrEnum):
    """How raw registers become a number."""

    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    FLOAT32 = "float32"
    UINT8 = "uint8"  # one byte of a register (``byte: high|low``)
    SM8 = "sm8"  # one byte, sign-magnitude: b7 sign, b6..b0 magnitude (Renogy temperatures)

    @property
    def register_count(self) -> int:
        return 2 if self in (DataType.UINT32, DataType.INT32, DataType.FLOAT32) else 1

    @property
    def is_byte(self) -> bool:
        return self in (DataType.UINT8, DataType.SM8)

    @property
    def raw_range(self) -> tuple[int, int]:
        """Smallest and largest raw number this type decodes to (before scaling)."""
        return {
            DataType.UINT16: (0, 0xFFFF), DataType.INT16: (-0x8000, 0x7FFF),
            DataType.UINT32: (0, 0xFFFF_FFFF), DataType.INT32: (-0x8000_0000, 0x7FFF_FFFF),
            DataType.FLOAT32: (-0x8000_0000, 0x7FFF_FFFF), DataType.UINT8: (0, 0xFF), DataType.SM8: (-127, 127),
        }[self]


WordOrder = Literal["low_first", "high_first"]

#: What a register can feed: every measured energy field (readings_n is the queue's, not a device's).
_ENERGY_FIELDS = set(EnergySample.model_fields) - {"seq", "ts", "readings_n"}
_NUMERIC_SPECS = field_specs()
#: Contract fields that are not numbers with a unit.
_FIELD_KINDS = {"charge_state": "state", "shore_power": "bool"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class SerialSettings(_Strict):
    """Serial line defaults of the device (the edge config's transport URL may override)."""

    baudrate: int = Field(default=9600, ge=300, le=1_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class Link(_Strict):
    """How the device is reached."""

    transports: list[Literal["rtu", "tcp"]] = Field(min_length=1)
    default_unit: int = Field(ge=0, le=255, description="Modbus unit (slave) id when the edge config names none")
    serial: SerialSettings | None = None
    port: int = Field(default=502, ge=1, le=65535, description="Default TCP port")


class Requests(_Strict):
    """What the device tolerates in one read request."""

    max_registers: int = Field(default=64, ge=1, le=125, description="Largest block one read may cover")
    max_gap: int = Field(default=0, ge=0, le=124, description="Unmapped registers a read may span (the device answers them)")
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    retries: int = Field(default=2, ge=0, le=10)


class Register(_Strict):
    """One register (or register pair, or byte) that feeds one contract field."""

    field: str = Field(description="EnergySample field this register feeds")
    address: int = Field(ge=0, le=65535, description="PDU address (0-based, as on the wire)")
    function: Function
    type: DataType
    count: int | None = Field(default=None, ge=1, le=2, description="Registers occupied; must agree with type")
    word_order: WordOrder | None = None
    byte: Literal["high", "low"] | None = None
    mask: int | None = Field(default=None, ge=1, le=0xFFFF, description="Bit mask for a bitfield, applied before the shift")
    scale: float = Field(default=1.0, description="Multiplier from raw value to unit")
    unit: str
    valid: tuple[float, float] | None = Field(default=None, description="Physical range after scaling; outside it the value is dropped")
    invalid: list[int] = Field(default_factory=list, description="Raw values that mean 'not available'")
    enum: dict[int, ChargeState] | None = None
    datasheet: str = Field(min_length=3, description="The datasheet entry (document, table, row) this register comes from")

    @field_validator("scale")
    @classmethod
    def _scale_not_zero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v

    @property
    def register_count(self) -> int:
        return self.type.register_count

    @property
    def bits(self) -> int:
        """The bits of the first register this entry occupies (for overlap checks)."""
        if self.type.is_byte:
            base = 0xFF00 if self.byte == "high" else 0x00FF
        else:
            base = 0xFFFF
        return base & self.mask if self.mask is not None else base

    def problems(self) -> list[tuple[str, str]]:
        """Checks across this entry's keys, each as (offending key, message).

        Run by RegisterMap.cross_check so that every message points at the
        line of the key that is wrong, not at the start of the entry.
        """
        out: list[tuple[str, str]] = []
        t = self.type
        if self.field not in _ENERGY_FIELDS:
            out.append(("field", f"{self.field!r} is not an energy field of the contract"))
        if self.count is not None and self.count != self.register_count:
            out.append(("count", f"type {t.value} occupies {self.register_count} register(s), but count is {self.count}"))
        if self.register_count == 2 and self.word_order is None:
            out.append(("type", f"type {t.value} needs word_order (low_first or high_first)"))
        if self.register_count == 1 and self.word_order is not None:
            out.append(("word_order", f"applies to 32-bit types only, not {t.value}"))
        if t.is_byte and self.byte is None:
            out.append(("type", f"type {t.value} needs byte: high or low"))
        if not t.is_byte and self.byte is not None:
            out.append(("byte", f"applies to uint8 and sm8 only, not {t.value}"))
        if self.mask is not None and t is not DataType.UINT16:
            out.append(("mask", "applies to uint16 bitfields only"))
        if self.address + self.register_count > 65536:
            out.append(("address", "register runs past address 65535"))
        lo_raw, hi_raw = t.raw_range
        for raw in self.invalid:
            if not lo_raw <= raw <= hi_raw:
                out.append(("invalid", f"raw value {raw} can never come out of a {t.value} (range {lo_raw}..{hi_raw}); write it as the decoded raw number"))
        kind = _FIELD_KINDS.get(self.field)
        if kind == "state":
            if not self.enum:
                out.append(("enum", "charge_state needs an enum mapping raw values to off|bulk|absorption|float|equalize|fault"))
            if self.unit != "state":
                out.append(("unit", "charge_state takes unit: state"))
            if self.valid is not None or self.scale != 1:
                out.append(("valid" if self.valid is not None else "scale", "charge_state is an enum: no scale or valid range"))
        elif self.enum is not None:
            out.append(("enum", "applies to charge_state only"))
        if kind == "bool":
            if self.unit != "bool":
                out.append(("unit", f"{self.field} is true/false: unit: bool (raw 0 = false, anything else = true)"))
            if self.valid is not None or self.scale != 1:
                out.append(("valid" if self.valid is not None else "scale", f"{self.field} is true/false: no scale or valid range"))
        spec = _NUMERIC_SPECS.get(self.field)
        if spec is not None:
            if self.unit != spec.unit:
                out.append(("unit", f"{self.unit!r} differs from the contract's {spec.unit!r} for {self.field}"))
            if self.valid is not None:
                lo, hi = self.valid
                if lo > hi:
                    out.append(("valid", f"range [{lo}, {hi}] is empty"))
                elif lo < spec.minimum or hi > spec.maximum:
                    out.append(("valid", f"range [{lo}, {hi}] exceeds the contract's [{spec.minimum:g}, {spec.maximum:g}] for {self.field}"))
        return out

    @property
    def valid_range(self) -> tuple[float, float] | None:
        """The range a decoded value must fall in: the map's own, else the contract's."""
        if self.valid is not None:
            return self.valid
        spec = _NUMERIC_SPECS.get(self.field)
        return (spec.minimum, spec.maximum) if spec else None


class RegisterMap(_Strict):
    """A device model: how to reach it and which registers feed which fields."""

    model: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$", description="Equals the file name without .yaml")
    vendor: str
    name: str
    datasheet: str = Field(min_length=3, description="The documents the registers were checked against")
    link: Link
    requests: Requests = Requests()
    registers: list[Register] = Field(min_length=1)

    def cross_check(self) -> list[tuple[PathKey, str]]:
        """Checks across registers: overlaps, a field fed twice, blocks too large."""
        problems: list[tuple[PathKey, str]] = []
        occupied: dict[tuple[Function, int], tuple[int, int]] = {}
        fed: dict[str, int] = {}
        for i, reg in enumerate(self.registers):
            problems.extend((("registers", i, key), msg) for key, msg in reg.problems())
            if reg.field in fed:
                problems.append((("registers", i, "field"), f"field {reg.field} is already fed by registers[{fed[reg.field]}]"))
            fed.setdefault(reg.field, i)
            if reg.register_count > self.requests.max_registers:
                problems.append((("registers", i, "type"), f"needs {reg.register_count} registers but requests.max_registers is {self.requests.max_registers}"))
            for k in range(reg.register_count):
                key = (reg.function, reg.address + k)
                bits = reg.bits if k == 0 else 0xFFFF
                if key in occupied and occupied[key][1] & bits:
                    other = occupied[key][0]
                    problems.append((("registers", i, "address"), f"register {reg.address + k:#06x} overlaps registers[{other}] ({self.registers[other].field})"))
                prev_bits = occupied.get(key, (i, 0))[1]
                occupied[key] = (occupied.get(key, (i, 0))[0], prev_bits | bits)
        if self.link.serial is None and "rtu" in self.link.transports:
            problems.append((("link", "serial"), "an RTU device needs its serial settings (baudrate, parity, ...)"))
        return problems

    @cached_property
    def fields(self) -> list[str]:
        return [r.field for r in self.registers]


def map_path(name: str) -> Path:
    """The file of register map ``name`` (a bare model name or a path)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.is_absolute() or "/" in name:
        return p
    return devices_dir() / f"{name}.yaml"


def load_register_map(name: str) -> RegisterMap:
    """Load and check a register map by model name or path; ConfigError names file and line."""
    path = map_path(name)
    rmap = load_model(RegisterMap, path)
    if rmap.model != path.stem:
        raise ConfigError([ConfigIssue(str(path), 1, "model", f"model {rmap.model!r} must equal the file name {path.stem!r}")])
    return rmap


def available_maps() -> list[str]:
    """Model names of the register maps shipped in ``devices_dir()``."""
    return sorted(p.stem for p in devices_dir().glob("*.yaml"))
