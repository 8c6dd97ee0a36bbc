"""Shared helpers for edge tests: a frozen-time camper model and readers built from maps."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from camperhub.netutil import free_port  # noqa: F401  (re-exported for the edge tests)
from camperhub.edge.modbus_reader import Bus, DeviceReader
from camperhub.edge.registermap import RegisterMap
from camperhub.edge.sim.model import CamperModel, CamperSpec, SimClock
from camperhub.edge.transport import Transport

T = TypeVar("T")

#: A sunny June midday in Varese: every field has a non-trivial value.
JUNE_NOON = datetime(2026, 6, 21, 10, 30, tzinfo=UTC)


def frozen_model(at: datetime = JUNE_NOON, **spec: Any) -> CamperModel:
    """A model whose clock stands still, so the values a test reads are the values the simulator served."""
    return CamperModel(CamperSpec(**spec), SimClock(at, speed=1.0, monotonic=lambda: 0.0))


def make_reader(rmap: RegisterMap, transport: Transport, unit: int, *, timeout_s: float = 0.5, retries: int = 0) -> DeviceReader:
    return DeviceReader(rmap.model, rmap, Bus(transport, timeout_s), unit, retries=retries)


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
    """Run a coroutine in a fresh loop with a timeout (no pytest-asyncio needed)."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def tolerance(rmap: RegisterMap, field: str) -> float:
    """One step of the register's resolution: the rounding the simulator's encoding allows."""
    reg = next(r for r in rmap.registers if r.field == field)
    return abs(reg.scale) * 1.0001
