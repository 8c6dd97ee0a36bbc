"""Raw Modbus registers to contract values and back, driven by a register map entry.

Decoding is used by the edge agent; encoding by the simulator, so the two can
never disagree about word order, sign or scale: a round trip through both is
the simulator test.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from camperhub.edge.registermap import DataType, Register


class OutOfRange(ValueError):
    """A decoded value outside the register's physical range (never published)."""


class NotAvailable(ValueError):
    """The device says it has no value (a declared 'invalid' raw value)."""


def _decimals(scale: float) -> int:
    """Decimals worth keeping for a scale (0.01 -> 2), so 12.3 is not 12.299999."""
    if scale >= 1:
        return 0
    return min(6, max(0, -math.floor(math.log10(abs(scale)) + 1e-9)))


def _mask_shift(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def raw_value(reg: Register, words: list[int]) -> int | float:
    """The register's raw number before scaling (sign, word order, byte and mask applied)."""
    t = reg.type
    if t.register_count == 2:
        hi, lo = (words[1], words[0]) if reg.word_order == "low_first" else (words[0], words[1])
        u32 = (hi << 16) | lo
        if t is DataType.UINT32:
            return u32
        if t is DataType.INT32:
            return u32 - (1 << 32) if u32 & 0x8000_0000 else u32
        return struct.unpack(">f", u32.to_bytes(4, "big"))[0]
    w = words[0]
    if t.is_byte:
        b = (w >> 8) & 0xFF if reg.byte == "high" else w & 0xFF
        if t is DataType.SM8:
            return -(b & 0x7F) if b & 0x80 else b
        return b
    if reg.mask is not None:
        w = (w & reg.mask) >> _mask_shift(reg.mask)
    if t is DataType.INT16:
        return w - 0x10000 if w & 0x8000 else w
    return w


def decode(reg: Register, words: list[int]) -> Any:
    """The contract value of ``reg`` from its registers.

    Raises NotAvailable for a declared 'no value' raw, OutOfRange for a value
    that cannot be physical (e.g. 0xFFFF in a voltage register).
    """
    if len(words) != reg.register_count:
        raise ValueError(f"{reg.field}: expected {reg.register_count} register(s), got {len(words)}")
    raw = raw_value(reg, words)
    if isinstance(raw, int) and raw in reg.invalid:
        raise NotAvailable(f"{reg.field}: device reports no value (raw {raw})")
    if reg.enum is not None:
        if not isinstance(raw, int) or raw not in reg.enum:
            raise OutOfRange(f"{reg.field}: raw value {raw} is not in the map's enum")
        return reg.enum[raw].value
    if reg.field == "shore_power":
        return bool(raw)
    if isinstance(raw, float) and not math.isfinite(raw):
        raise OutOfRange(f"{reg.field}: raw value is not a finite number")
    value = raw * reg.scale
    value = round(value, _decimals(abs(reg.scale))) if reg.scale != 1 else value
    rng = reg.valid_range
    if rng is not None and not (rng[0] <= value <= rng[1]):
        raise OutOfRange(f"{reg.field}: {value:g} {reg.unit} outside [{rng[0]:g}, {rng[1]:g}] (raw {raw})")
    if reg.field == "battery_cycles":
        return int(value)
    return value


def encode(reg: Register, value: Any, current: list[int] | None = None) -> list[int]:
    """Registers that decode to ``value`` (the simulator's side).

    ``current`` holds the register's present words, so that a byte or bitfield
    entry changes only its own bits of a shared register.
    """
    words = list(current) if current is not None else [0] * reg.register_count
    if reg.enum is not None:
        inverse = {v.value: k for k, v in reg.enum.items()}
        if value not in inverse:
            raise ValueError(f"{reg.field}: {value!r} has no raw value in the map's enum")
        raw: int | float = inverse[value]
    elif isinstance(value, bool):
        raw = int(value)
    elif reg.type is DataType.FLOAT32:
        raw = float(value) / reg.scale
    else:
        raw = int(round(float(value) / reg.scale))
    t = reg.type
    if t.register_count == 2:
        if t is DataType.FLOAT32:
            u32 = int.from_bytes(struct.pack(">f", raw), "big")
        else:
            u32 = int(raw) & 0xFFFF_FFFF
        hi, lo = u32 >> 16, u32 & 0xFFFF
        return [lo, hi] if reg.word_order == "low_first" else [hi, lo]
    iraw = int(raw)
    if t.is_byte:
        if t is DataType.SM8:
            b = (0x80 | min(127, -iraw)) if iraw < 0 else min(127, iraw)
        else:
            b = iraw & 0xFF
        if reg.byte == "high":
            words[0] = (words[0] & 0x00FF) | (b << 8)
        else:
            words[0] = (words[0] & 0xFF00) | b
        return words
    if reg.mask is not None:
        shift = _mask_shift(reg.mask)
        words[0] = (words[0] & ~reg.mask & 0xFFFF) | ((iraw << shift) & reg.mask)
        return words
    words[0] = iraw & 0xFFFF
    return words


@dataclass(frozen=True)
class DecodeResult:
    """Values decoded from one poll, and the problems met on the way."""

    values: dict[str, Any]
    out_of_range: list[str]
    not_available: list[str]
