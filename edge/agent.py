"""The edge agent: poll the devices, merge a cycle's readings into one sample, hand it on.

Orchestration only; Modbus I/O is in :mod:`modbus_reader`, queueing and
sending in :mod:`outbox` (the durable queue of :mod:`queue` in front of
:mod:`publisher`). Devices with the same ``interval_s`` are polled together in
one cycle and their fields merged into one ``energy`` sample stamped with the
cycle's start (the time the readings were made). One failing device leaves
its fields out of the sample; it never delays the others beyond its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from camperhub.contract import ModeCommand, Stream
from camperhub.edge.clock import EdgeClock
from camperhub.edge.config import EdgeConfig, device_name, resolved_transport
from camperhub.edge.modbus_reader import Bus, DeviceReader
from camperhub.edge.modes import ModeController
from camperhub.edge.outbox import QueuedPublisher
from camperhub.edge.peripherals import build_companions
from camperhub.edge.publisher import Outbox
from camperhub.edge.queue import QueueError
from camperhub.edge.registermap import load_register_map

log = logging.getLogger(__name__)

#: Exit status when a person must fix something (bad credentials): systemd's
#: RestartPreventExitStatus keeps the unit from hammering the broker.
EXIT_CONFIG = 78
#: The agent's heartbeat: mode expiry, status when due, the status LED.
TICK_S = 1.0
#: A GPS silent this long reports no fix in the status (gpsd gone, receiver unplugged).
GPS_SILENT_S = 10.0


class Companion(Protocol):
    """Something that runs beside the polls for the agent's whole life (GPS reader, GPIO): edge/peripherals.py."""

    async def run(self, agent: "EdgeAgent") -> None:
        """Until cancelled; releases what it holds (sockets, pins, threads) on the way out."""
        ...


@dataclass
class CycleGroup:
    """Devices polled together at one interval."""

    interval_s: float
    readers: list[DeviceReader]


def build_readers(config: EdgeConfig) -> tuple[list[DeviceReader], list[Bus]]:
    """One reader per device; devices on the same serial line (or TCP endpoint, for RTU-over-TCP gateways) share a Bus."""
    buses: dict[str, Bus] = {}
    readers = []
    for dev in config.devices:
        rmap = load_register_map(dev.map)
        transport = resolved_transport(dev, rmap)
        timeout = dev.timeout_s or rmap.requests.timeout_s
        # TCP devices each get their own connection, so each keeps its own timeout;
        # devices on one RS-485 line share it and take turns.
        key = transport.bus_key if transport.kind == "rtu" else f"{transport.bus_key}#{len(readers)}"
        bus = buses.get(key)
        if bus is None:
            bus = buses[key] = Bus(transport, timeout)
        else:
            bus.timeout_s = max(bus.timeout_s, timeout)
        readers.append(
            DeviceReader(
                device_name(dev, rmap), rmap, bus,
                dev.unit if dev.unit is not None else rmap.link.default_unit,
                retries=dev.retries if dev.retries is not None else rmap.requests.retries,
                exclude=set(dev.exclude_fields),
            )
        )
    return readers, list(buses.values())


def group_by_interval(config: EdgeConfig, readers: list[DeviceReader]) -> list[CycleGroup]:
    groups: dict[float, list[DeviceReader]] = defaultdict(list)
    for dev, reader in zip(config.devices, readers):
        groups[dev.interval_s].append(reader)
    return [CycleGroup(k, v) for k, v in sorted(groups.items())]


class EdgeAgent:
    """Runs the poll cycles, the mode's clock and the status heartbeat until stopped."""

    def __init__(
        self,
        config: EdgeConfig,
        outbox: Outbox,
        readers: list[DeviceReader],
        buses: list[Bus],
        *,
        clock: EdgeClock | None = None,
        modes: ModeController | None = None,
        companions: Sequence[Companion] = (),
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.readers = readers
        self.buses = buses
        self.clock = clock or EdgeClock("always")
        self.modes = modes or ModeController(config.modes)
        self.companions = list(companions)
        self.groups = group_by_interval(config, readers)
        self.counters: Counter[str] = Counter()
        self.last_error: str | None = None
        #: set by the GPIO inputs when wired (edge/peripherals.py); None: no such input
        self.shore_power: bool | None = None
        self.in_service: bool | None = None
        #: set by the GPS companion on every report: (fix 0|2|3, monotonic time of the report)
        self.gps: tuple[int, float] | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mode_changed = asyncio.Event()
        self._status_due = True

    # -- readings ---------------------------------------------------------------
    def take(self, stream: Stream, fields: dict[str, Any]) -> int:
        """Stamp ``fields`` with the agent's clock and queue them (undated while the clock is not trusted)."""
        stamp = self.clock.stamp()
        return self.outbox.put(stream, {"ts": stamp.ts_ms, **fields}, undated=None if stamp.dated else (stamp.boot_id, stamp.boot_ms))

    async def run_cycle(self, group: CycleGroup) -> dict[str, Any]:
        """Poll a group's devices at once; queue the merged sample (empty when no device answered)."""
        stamp = self.clock.stamp()
        results = await asyncio.gather(*(r.poll() for r in group.readers))
        fields: dict[str, Any] = {}
        for reader, result in zip(group.readers, results):
            fields.update(result.values)
            if result.errors:
                self.last_error = f"{reader.name}: {result.errors[-1]}"
        self.counters["cycles"] += 1
        if not fields:
            # no device answered: an empty sample says so downstream (completeness: "device fault")
            self.counters["empty_cycles"] += 1
        elif self.shore_power is not None and "shore_power" not in fields:
            fields["shore_power"] = self.shore_power
        sample = {"ts": stamp.ts_ms, **fields}
        self.outbox.put(Stream.ENERGY, sample, undated=None if stamp.dated else (stamp.boot_id, stamp.boot_ms))
        self.counters["samples"] += 1
        return sample

    async def _cycle_loop(self, group: CycleGroup) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            await self.run_cycle(group)
            interval = self.modes.poll_interval(group.interval_s)
            next_at += interval
            delay = next_at - loop.time()
            if delay < 0:  # overran (slow device): skip missed ticks rather than bunching them
                self.counters["overruns"] += 1
                next_at = loop.time() + interval
                delay = interval
            if await self._sleep(delay, wake_on_mode=True):
                next_at = loop.time()  # the mode changed: poll at the new rate from now

    async def _sleep(self, seconds: float, *, wake_on_mode: bool = False) -> bool:
        """Wait ``seconds`` or until stopped; True when a mode change woke it."""
        changed = self._mode_changed  # this one is set (and replaced) by the next change only
        waits = [asyncio.ensure_future(self._stop.wait())]
        if wake_on_mode:
            waits.append(asyncio.ensure_future(changed.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return wake_on_mode and changed.is_set() and not self._stop.is_set()

    def _announce_mode_change(self) -> None:
        """Wake every loop sleeping now, once: the event they wait on is set and replaced."""
        changed, self._mode_changed = self._mode_changed, asyncio.Event()
        changed.set()

    # -- the one-second tick: mode expiry, status, LED ------------------------------
    async def _tick_loop(self) -> None:
        publish_status = getattr(self.outbox, "publish_status", None)
        loop = asyncio.get_running_loop()
        status_at = loop.time()
        while not self._stop.is_set():
            self.modes.expire()
            if callable(publish_status) and (self._status_due or loop.time() >= status_at):
                self._status_due = False
                status_at = loop.time() + self.modes.status_interval_s()
                publish_status()
            await self._sleep(TICK_S)

    def mode_changed(self, mode: str, why: str) -> None:
        """From any thread (paho's, gpiozero's): new poll rates now, and a status saying so."""
        self._status_due = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._announce_mode_change)

    def request_status(self) -> None:
        """Publish the status at the next tick (something the staff should see changed)."""
        self._status_due = True

    def data_flowing(self) -> bool:
        """True while readings reach the broker (the status LED: steady on), False while buffering."""
        flowing = getattr(self.outbox, "flowing", None)
        return bool(flowing()) if callable(flowing) else True

    def command(self, name: str, payload: bytes) -> None:
        """A downlink command (paho's thread); ValueError names what is wrong with it."""
        if name != "mode":
            raise ValueError(f"unknown command {name!r} (known: mode)")
        try:
            cmd = ModeCommand.model_validate_json(payload)
        except ValueError as exc:
            raise ValueError(f"bad cmd/mode payload: {exc}") from exc
        log.info("cmd/mode %s", self.modes.command(cmd))

    def status_fields(self) -> dict[str, Any]:
        """The agent's fields of the retained status message."""
        out: dict[str, Any] = {"mode": self.modes.mode, "clock": self.clock.source}
        until = self.modes.live_until_ms()
        if until is not None:
            out["live_until_ts"] = until
        if self.in_service is not None:
            out["in_service"] = self.in_service
        if self.gps is not None:  # a GPS that stopped reporting has no fix either
            fix, at = self.gps
            out["gps_fix"] = fix if time.monotonic() - at < GPS_SILENT_S else 0
        if self.last_error:
            out["last_error"] = self.last_error[:500]
        return out

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until stop(): one task per interval group, plus the tick."""
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self._cycle_loop(g), name=f"cycle-{g.interval_s}s") for g in self.groups]
        tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        tasks += [asyncio.create_task(c.run(self), name=type(c).__name__) for c in self.companions]
        try:
            await self._stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for bus in self.buses:
                bus.close()

    def stats(self) -> dict[str, Any]:
        """Counters of the agent and of every device, for logs and tests."""
        out: dict[str, Any] = dict(self.counters)
        for r in self.readers:
            out[r.name] = {"stale": r.stale, **r.counters}
        return out


async def run_agent(
    config: EdgeConfig, *, install_signals: bool = True, on_start: Callable[[EdgeAgent, QueuedPublisher], None] | None = None
) -> int:
    """Run the agent with the durable queue and MQTT publisher until SIGTERM/SIGINT (or ``agent.stop()``); return the exit status.

    ``on_start`` hands the running agent and publisher to an embedding program
    (the demo, tests) so it can stop it and read its counters.
    """
    readers, buses = build_readers(config)
    loop = asyncio.get_running_loop()
    exit_code = 0
    agent: EdgeAgent | None = None

    def fatal(msg: str) -> None:
        nonlocal exit_code
        exit_code = EXIT_CONFIG
        if agent is not None:
            loop.call_soon_threadsafe(agent.stop)

    clock = EdgeClock(config.clock.trust_system)
    modes = ModeController(config.modes, on_change=lambda mode, why: agent.mode_changed(mode, why) if agent else None)
    try:
        publisher = QueuedPublisher(
            config.camper, config.mqtt, config.queue, on_fatal=fatal, status_extra=lambda: agent.status_fields() if agent else {},
            clock=clock, policy=modes.send_policy, on_command=lambda name, payload: agent.command(name, payload) if agent else None,
        )
    except QueueError as exc:
        for bus in buses:
            bus.close()
        log.error("stopped: %s (check queue.path in the edge config)", exc)
        return EXIT_CONFIG
    clock.on_trusted = publisher.queue.restamp
    agent = EdgeAgent(config, publisher, readers, buses, clock=clock, modes=modes, companions=build_companions(config))
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
    log.info(
        "camper %s: %d device(s) %s, publishing to %s",
        config.camper, len(readers), ", ".join(f"{r.name}@{r.bus.transport}/{r.unit}" for r in readers), config.mqtt.parsed.redacted(),
    )
    publisher.start()
    if on_start is not None:
        on_start(agent, publisher)
    try:
        await agent.run()
    finally:
        await asyncio.to_thread(publisher.stop)
        log.info("agent stopped; counters: %s; publisher: %s", agent.stats(), dict(publisher.counters))
    if publisher.fatal_error:
        log.error("stopped: %s", publisher.fatal_error)
    return exit_code
