"""The generic Modbus reader: one code path for every device, driven by its register map.

Protocol I/O lives here; orchestration (when to poll, what to publish) lives in
the agent. A failure is sorted at this boundary:

* transient (timeout, connection lost, device busy): the device is marked
  stale, its values are left out of this cycle, and the next cycle retries
  after a back-off; the other devices are not affected;
* a Modbus exception that means the map does not fit the device (illegal
  address or function): counted and logged with what to check, the rest of
  the map keeps being read;
* a value outside the register's physical range: dropped, counted, logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from camperhub.edge.codec import NotAvailable, OutOfRange, decode
from camperhub.edge.planner import ReadBlock, plan_reads
from camperhub.edge.registermap import Function, RegisterMap
from camperhub.edge.transport import Transport

log = logging.getLogger(__name__)

_EXCEPTION_HINTS = {
    1: "illegal function: the device does not support this read function; check `function` in the register map",
    2: "illegal data address: the device does not have these registers; check the map's addresses and requests.max_gap",
    3: "illegal data value: check the block size (requests.max_registers)",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable: check the unit id",
    11: "gateway target did not respond: check the unit id and the device behind the gateway",
}


class DeviceUnavailable(Exception):
    """Transient: the device or the bus did not answer (timeout, disconnected)."""


class DeviceRefused(Exception):
    """The device answered a read with a Modbus exception code."""

    def __init__(self, code: int, block: ReadBlock) -> None:
        self.code = code
        hint = _EXCEPTION_HINTS.get(code, "unexpected exception code")
        super().__init__(f"{block.function.value} registers {block.address:#06x}+{block.count}: exception {code} ({hint})")


class Bus:
    """One connection (a serial line or a TCP endpoint) shared by the devices on it.

    RTU devices on one RS-485 line must take turns, hence the lock; a reconnect
    is attempted at most once per back-off period so a missing device costs
    one timeout per cycle, not one per request.
    """

    def __init__(self, transport: Transport, timeout_s: float) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._next_connect = 0.0
        self._backoff_s = 1.0

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        t = self.transport
        # retries=0 and reconnect_delay=0: the reader owns retries and reconnects.
        if t.kind == "tcp":
            return AsyncModbusTcpClient(t.host, port=t.port, timeout=self.timeout_s, retries=0, reconnect_delay=0)
        s = t.serial
        return AsyncModbusSerialClient(
            t.device, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits,
            timeout=self.timeout_s, retries=0, reconnect_delay=0,
        )

    async def _connected_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._next_connect:
            raise DeviceUnavailable(f"{self.transport}: not connected (next attempt in {self._next_connect - now:.0f} s)")
        self.close()
        self._client = self._make_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.timeout_s + 1)
        except (OSError, asyncio.TimeoutError, ModbusException) as exc:
            ok = False
            log.debug("connect %s failed: %s", self.transport, exc)
        if not ok:
            self._next_connect = now + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, 30.0)
            raise DeviceUnavailable(f"{self.transport}: cannot connect")
        self._backoff_s = 1.0
        return self._client

    async def read(self, block: ReadBlock, unit: int) -> list[int]:
        """Read one block; raise DeviceUnavailable or DeviceRefused."""
        async with self.lock:
            client = await self._connected_client()
            call = client.read_holding_registers if block.function is Function.HOLDING else client.read_input_registers
            try:
                rr = await asyncio.wait_for(call(block.address, count=block.count, device_id=unit), self.timeout_s + 1)
            except (ModbusIOException, ConnectionException, asyncio.TimeoutError, OSError) as exc:
                if not client.connected:
                    self._next_connect = 0.0  # lost the link: reconnect on the next request
                raise DeviceUnavailable(f"{self.transport} unit {unit}: no answer ({type(exc).__name__})") from exc
            except ModbusException as exc:
                raise DeviceUnavailable(f"{self.transport} unit {unit}: {exc}") from exc
            if rr.isError():
                raise DeviceRefused(getattr(rr, "exception_code", 0), block)
            if len(rr.registers) != block.count:
                raise DeviceUnavailable(f"{self.transport} unit {unit}: short answer ({len(rr.registers)} of {block.count} registers)")
            return list(rr.registers)

    @property
    def connected(self) -> bool:
        """Whether the link is up now (a retry on a dead link would only cost another timeout)."""
        return self._client is not None and self._client.connected

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class PollResult:
    """What one poll of one device gave."""

    values: dict[str, Any]
    complete: bool
    errors: list[str] = field(default_factory=list)


class DeviceReader:
    """Reads one device through its register map; keeps its own counters and staleness."""

    def __init__(self, name: str, rmap: RegisterMap, bus: Bus, unit: int, *, retries: int, exclude: set[str] | None = None) -> None:
        self.name = name
        self.rmap = rmap
        self.bus = bus
        self.unit = unit
        self.retries = retries
        wanted = set(rmap.fields) - (exclude or set())
        self.blocks = plan_reads(rmap, wanted)
        self.counters: Counter[str] = Counter()
        self.stale = True
        self.last_ok_monotonic: float | None = None
        self.last_error: str | None = None
        self._logged: Counter[str] = Counter()

    def _log_limited(self, key: str, level: int, msg: str, *args: Any) -> None:
        """Log the 1st, 10th, 100th... occurrence of one problem, so a stuck sensor cannot flood the SD card."""
        self._logged[key] += 1
        n = self._logged[key]
        if n == 1 or (n >= 10 and str(n).strip("0") == "1"):
            log.log(level, msg + (f" (seen {n} times)" if n > 1 else ""), *args)

    async def _read_block(self, block: ReadBlock) -> list[int]:
        attempt = 0
        while True:
            self.counters["requests"] += 1
            try:
                return await self.bus.read(block, self.unit)
            except DeviceUnavailable:
                attempt += 1
                if attempt > self.retries or not self.bus.connected:
                    raise
                self.counters["retries"] += 1

    async def poll(self) -> PollResult:
        """Read every block; values that decode and are in range, and what went wrong."""
        values: dict[str, Any] = {}
        errors: list[str] = []
        unavailable = 0
        for block in self.blocks:
            try:
                words = await self._read_block(block)
            except DeviceUnavailable as exc:
                unavailable += 1
                self.counters["timeouts"] += 1
                errors.append(str(exc))
                self._log_limited("unavailable", logging.WARNING, "%s: %s; marked stale, will retry", self.name, exc)
                break  # the device is not answering: do not spend a timeout per block
            except DeviceRefused as exc:
                self.counters["modbus_exceptions"] += 1
                errors.append(str(exc))
                self._log_limited(f"refused:{block.address}", logging.ERROR, "%s (%s unit %d): %s", self.name, self.rmap.model, self.unit, exc)
                continue
            for reg in block.registers:
                try:
                    values[reg.field] = decode(reg, block.words_of(reg, words))
                except OutOfRange as exc:
                    self.counters["out_of_range"] += 1
                    self.counters[f"out_of_range.{reg.field}"] += 1
                    errors.append(str(exc))
                    self._log_limited(f"range:{reg.field}", logging.WARNING, "%s: dropped %s", self.name, exc)
                except NotAvailable:
                    self.counters["not_available"] += 1
        complete = not errors
        if unavailable:
            self.stale = True
            self.last_error = errors[-1]
            return PollResult({}, False, errors)
        if self.stale and self.last_ok_monotonic is not None:
            log.info("%s answers again", self.name)
        self.stale = False
        self.last_ok_monotonic = time.monotonic()
        self.counters["polls_ok"] += 1
        if errors:
            self.last_error = errors[-1]
        return PollResult(values, complete, errors)
