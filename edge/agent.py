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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camperhub.contract import Stream
from camperhub.edge.config import EdgeConfig, device_name, resolved_transport
from camperhub.edge.modbus_reader import Bus, DeviceReader
from camperhub.edge.outbox import QueuedPublisher
from camperhub.edge.publisher import Outbox
from camperhub.edge.queue import QueueError
from camperhub.edge.registermap import load_register_map

log = logging.getLogger(__name__)

#: Exit status when a person must fix something (bad credentials): systemd's
#: RestartPreventExitStatus keeps the unit from hammering the broker.
EXIT_CONFIG = 78


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
    """Runs the poll cycles and the periodic status until stopped."""

    def __init__(self, config: EdgeConfig, outbox: Outbox, readers: list[DeviceReader], buses: list[Bus]) -> None:
        self.config = config
        self.outbox = outbox
        self.readers = readers
        self.buses = buses
        self.groups = group_by_interval(config, readers)
        self.counters: Counter[str] = Counter()
        self.last_error: str | None = None
        self._stop = asyncio.Event()

    async def run_cycle(self, group: CycleGroup) -> dict[str, Any] | None:
        """Poll a group's devices at once; put the merged sample in the outbox."""
        ts_ms = int(time.time() * 1000)
        results = await asyncio.gather(*(r.poll() for r in group.readers))
        fields: dict[str, Any] = {}
        for reader, result in zip(group.readers, results):
            fields.update(result.values)
            if result.errors:
                self.last_error = f"{reader.name}: {result.errors[-1]}"
        self.counters["cycles"] += 1
        if not fields:
            self.counters["empty_cycles"] += 1
            return None
        sample = {"ts": ts_ms, **fields}
        self.outbox.put(Stream.ENERGY, sample)
        self.counters["samples"] += 1
        return sample

    async def _cycle_loop(self, group: CycleGroup) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            await self.run_cycle(group)
            next_at += group.interval_s
            delay = next_at - loop.time()
            if delay < 0:  # overran (slow device): skip missed ticks rather than bunching them
                self.counters["overruns"] += 1
                next_at = loop.time() + group.interval_s
                delay = group.interval_s
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _status_loop(self) -> None:
        publish_status = getattr(self.outbox, "publish_status", None)
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.config.status_interval_s)
            except asyncio.TimeoutError:
                if callable(publish_status):
                    publish_status()

    def status_fields(self) -> dict[str, Any]:
        """Extra fields for the retained status message."""
        out: dict[str, Any] = {"mode": "normal"}
        if self.last_error:
            out["last_error"] = self.last_error[:500]
        return out

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until stop(): one task per interval group, plus the status heartbeat."""
        tasks = [asyncio.create_task(self._cycle_loop(g), name=f"cycle-{g.interval_s}s") for g in self.groups]
        tasks.append(asyncio.create_task(self._status_loop(), name="status"))
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

    try:
        publisher = QueuedPublisher(
            config.camper, config.mqtt, config.queue, on_fatal=fatal, status_extra=lambda: agent.status_fields() if agent else {}
        )
    except QueueError as exc:
        for bus in buses:
            bus.close()
        log.error("stopped: %s (check queue.path in the edge config)", exc)
        return EXIT_CONFIG
    agent = EdgeAgent(config, publisher, readers, buses)
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
