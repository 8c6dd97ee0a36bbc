"""Plan the fewest read requests a register map allows.

Neighbouring registers are coalesced into one read when the unmapped gap
between them is no larger than ``requests.max_gap`` (registers the device is
known to answer) and the block stays within ``requests.max_registers``.
Registers are sorted by address, so a greedy sweep is optimal: each block
extends as far as the two limits allow, and no 32-bit value is ever split.
"""

from __future__ import annotations

from dataclasses import dataclass

from camperhub.edge.registermap import Function, Register, RegisterMap


@dataclass(frozen=True)
class ReadBlock:
    """One read request: ``count`` registers from ``address`` with ``function``."""

    function: Function
    address: int
    count: int
    registers: tuple[Register, ...]

    def words_of(self, reg: Register, words: list[int]) -> list[int]:
        """The slice of this block's response that belongs to ``reg``."""
        start = reg.address - self.address
        return words[start : start + reg.register_count]


def plan_reads(rmap: RegisterMap, fields: set[str] | None = None) -> list[ReadBlock]:
    """The read requests that cover every register of ``rmap`` (or those feeding ``fields``)."""
    limits = rmap.requests
    blocks: list[ReadBlock] = []
    for function in Function:
        regs = sorted(
            (r for r in rmap.registers if r.function is function and (fields is None or r.field in fields)),
            key=lambda r: r.address,
        )
        current: list[Register] = []
        start = end = 0
        for reg in regs:
            reg_end = reg.address + reg.register_count
            if current and reg.address - end <= limits.max_gap and max(end, reg_end) - start <= limits.max_registers:
                current.append(reg)
                end = max(end, reg_end)
                continue
            if current:
                blocks.append(ReadBlock(function, start, end - start, tuple(current)))
            current, start, end = [reg], reg.address, reg_end
        if current:
            blocks.append(ReadBlock(function, start, end - start, tuple(current)))
    return blocks
