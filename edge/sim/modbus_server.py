"""A Modbus device simulator that serves any register map from the physical model.

It is a real pymodbus server (TCP, or RTU on a serial port or PTY) built on
pymodbus's own simulator datastore (``SimDevice``/``SimData``): on every read
request the registers are refreshed from :class:`CamperModel` through the same
codec the agent decodes with, so the simulator and the agent cannot disagree
about word order, sign or scale without a test noticing.

Registers that a map does not list are absent (the server answers ILLEGAL
ADDRESS), except the gaps a map declares readable with ``requests.max_gap``.
Faults can be injected per device for tests: silence (a timeout), a Modbus
exception, raw override values (out of range), and the whole server can stop
to play a device that disappears.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from camperhub.edge.codec import encode
from camperhub.edge.planner import plan_reads
from camperhub.edge.registermap import RegisterMap
from camperhub.edge.sim.model import CamperModel
from camperhub.edge.transport import Transport

log = logging.getLogger(__name__)

#: How long one model evaluation serves further reads (real seconds): a poll
#: cycle's requests then see one consistent state.
STATE_CACHE_S = 0.2


@dataclass
class Faults:
    """Faults a test can switch on for one simulated device at run time."""

    silent: bool = False
    exception: ExcCodes | None = None
    raw_overrides: dict[int, int] = field(default_factory=dict)  # address -> raw word


@dataclass
class SimulatedDevice:
    """One register map served under one unit id."""

    rmap: RegisterMap
    unit: int
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    last_values: dict[str, Any] = field(default_factory=dict)


class _StateCache:
    """Evaluates the model at most once per STATE_CACHE_S, shared by all devices."""

    def __init__(self, model: CamperModel) -> None:
        self.model = model
        self._at = -1e9
        self._state: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if now - self._at > STATE_CACHE_S:
                self._state = self.model.state()
                self._at = now
            return self._state


def _sim_blocks(rmap: RegisterMap) -> list[SimData]:
    """The address space of a device: every block the map allows to be read."""
    return [
        SimData(address=b.address, count=b.count, values=0, datatype=SimType.REGISTERS)
        for b in plan_reads(rmap)
    ]


class ModbusSimulator:
    """Serves one or more simulated devices on one listen address, in a background thread."""

    def __init__(self, listen: Transport, devices: list[SimulatedDevice], model: CamperModel) -> None:
        self.listen = listen
        self.devices = {d.unit: d for d in devices}
        self._state = _StateCache(model)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # -- register refresh -------------------------------------------------
    async def _action(
        self,
        dev: SimulatedDevice,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        dev.requests += 1
        if dev.faults.silent:
            await asyncio.sleep(3600)  # the client times out; cancelled on shutdown
        if dev.faults.exception is not None:
            return dev.faults.exception
        state = self._state.get()
        for reg in dev.rmap.registers:
            value = state.get(reg.field)
            if value is None:
                continue
            off = reg.address - start_address
            words = encode(reg, value, registers[off : off + reg.register_count])
            registers[off : off + reg.register_count] = words
            dev.last_values[reg.field] = value
        for addr, raw in dev.faults.raw_overrides.items():
            registers[addr - start_address] = raw
        return None

    def _sim_devices(self) -> list[SimDevice]:
        out = []
        for dev in self.devices.values():

            async def action(fc: int, start: int, addr: int, count: int, regs: list[int], values: Any, _dev: SimulatedDevice = dev) -> ExcCodes | None:
                return await self._action(_dev, fc, start, addr, count, regs, values)

            out.append(SimDevice(id=dev.unit, simdata=_sim_blocks(dev.rmap), action=action))
        return out

    # -- lifecycle ----------------------------------------------------------
    async def serve(self) -> None:
        """Run the server in the current event loop until cancelled."""
        devices = self._sim_devices()
        if self.listen.kind == "tcp":
            self._server = ModbusTcpServer(devices, address=(self.listen.host, self.listen.port))
        else:
            s = self.listen.serial
            self._server = ModbusSerialServer(
                devices, port=self.listen.device, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits
            )
        try:
            await self._server.serve_forever(background=True)
            self._started.set()
            await asyncio.Event().wait()
        finally:
            await self._server.shutdown()

    def start(self, timeout_s: float = 10.0) -> "ModbusSimulator":
        """Start serving in a background thread; returns once the server listens."""

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await self.serve()

        def run() -> None:
            try:
                asyncio.run(main())
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # reported to start()
                self._error = exc
                self._started.set()

        self._thread = threading.Thread(target=run, name=f"modbus-sim-{self.listen}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError(f"Modbus simulator on {self.listen} did not start: {self._error}")
        return self

    def stop(self) -> None:
        """Stop serving (a device that disappears) and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            if self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "ModbusSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> int:
        """Read requests served so far, all devices."""
        return sum(d.requests for d in self.devices.values())
