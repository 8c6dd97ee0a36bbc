"""What runs beside the Modbus polls: the GPS reader and the GPIO pins (edge/agent.py ``Companion``).

Each companion turns a peripheral's events into the agent's terms; protocol
I/O stays in edge/gps.py and edge/gpio.py:

* GPS (gpsd, or NMEA from a serial port where there is no gpsd): a fix with a
  time sets the clock (edge/clock.py: the Pi has no RTC); the smoother drops
  jumps, holds a parked camper still and snaps it to a stop; dwell inside a
  stop's geofence becomes ``arrival`` and ``departure`` events;
  positions go through the distance-and-time throttle in normal mode (small
  on 4G), every fix in live mode. A position is stamped with the GPS's own
  time. gpsd down or no fix is transient: the client reconnects, nothing else
  waits for it.
* GPIO: the workshop button toggles live mode (and is an ``event``), the
  shore-power and in-service switches become events, the ``shore_power``
  energy field and status ``in_service``; the status LED shows whether data
  flows. No GPIO on the machine is for a person to fix: that companion logs
  what to do and stops; the agent goes on without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from camperhub.contract import Stream
from camperhub.dwell import DwellDetector
from camperhub.edge.config import EdgeConfig, GpioConfig, PositionConfig
from camperhub.edge.gpio import GpioError, GpioInputs, StatusLed
from camperhub.edge.gps import GpsdClient
from camperhub.edge.nmea import NmeaReader
from camperhub.edge.position_filter import PositionSmoother, PositionThrottle
from camperhub.edge.stops import load_stops

if TYPE_CHECKING:
    from camperhub.edge.agent import Companion, EdgeAgent

log = logging.getLogger(__name__)

#: How often the status LED is brought up to date.
LED_EVERY_S = 0.5


class GpsCompanion:
    """GPS fixes (gpsd, or NMEA straight from a serial port) → the clock and ``position`` readings.

    Fixes go through the smoother (jumps no vehicle makes dropped, a parked
    camper held still, snapped to a stop inside its geofence) and then the
    throttle (by distance and time, more often when moving).
    """

    def __init__(self, client: GpsdClient | NmeaReader, position: PositionConfig) -> None:
        self.client = client
        self.throttle = PositionThrottle(
            position.min_distance_m, position.min_interval_s, position.max_interval_s,
            fast_speed_kmh=position.fast_speed_kmh, fast_min_interval_s=position.fast_min_interval_s,
        )
        stops = load_stops(position.stops_file) if position.stops_file else []
        self.smoother = PositionSmoother(
            max_speed_kmh=position.max_speed_kmh, parked_speed_kmh=position.parked_speed_kmh,
            jitter_radius_m=position.jitter_radius_m, snap_speed_kmh=position.snap_speed_kmh, stops=stops,
        )
        #: arrivals and departures, detected on the camper (right times, even offline)
        self.dwell = DwellDetector(stops) if stops else None

    async def run(self, agent: "EdgeAgent") -> None:
        try:
            async for fix in self.client.fixes():
                if fix.time_ms is not None:
                    agent.clock.gps_time(fix.time_ms, fix.boot_ms)
                agent.gps = (fix.fix, time.monotonic())
                smoothed = self.smoother.smooth(fix, fix.boot_ms / 1000)
                if smoothed is None:
                    continue  # a jump no vehicle makes (counted in self.smoother.counters)
                fix = smoothed
                if self.dwell is not None and fix.time_ms is not None and fix.lat is not None and fix.lon is not None:
                    for event in self.dwell.feed(fix.time_ms, fix.lat, fix.lon):
                        agent.outbox.put(Stream.EVENT, {"ts": event.ts_ms, **event.event_fields()})
                fields = fix.position_fields()
                accepted = self.throttle.accept(fix, fix.boot_ms / 1000)  # always: it tracks fix lost/regained
                if fields is None or not (accepted or agent.modes.mode == "live"):
                    continue
                if fix.time_ms is not None:
                    agent.outbox.put(Stream.POSITION, {"ts": fix.time_ms, **fields})  # GPS time: trusted
                else:
                    agent.take(Stream.POSITION, fields)
                agent.counters["positions"] += 1
        finally:
            await self.client.close()


class GpioCompanion:
    """The workshop button, the shore-power and in-service switches, and the status LED."""

    def __init__(self, config: GpioConfig) -> None:
        self.config = config

    async def run(self, agent: "EdgeAgent") -> None:
        loop = asyncio.get_running_loop()
        try:
            led = StatusLed.from_config(self.config)
            inputs = GpioInputs.from_config(
                self.config,
                on_button=lambda: loop.call_soon_threadsafe(self._button, agent),
                on_shore_power=lambda on: loop.call_soon_threadsafe(self._shore_power, agent, on),
                on_in_service=lambda on: loop.call_soon_threadsafe(self._in_service, agent, on),
            )
        except GpioError as exc:
            agent.last_error = f"GPIO: {exc}"
            log.error("GPIO disabled: %s", exc)
            return
        agent.shore_power, agent.in_service = inputs.shore_power, inputs.in_service
        try:
            while True:
                if led is not None:
                    led.show("flowing" if agent.data_flowing() else "buffering")
                await asyncio.sleep(LED_EVERY_S)
        finally:
            inputs.close()
            if led is not None:
                led.close()  # off: the agent is down

    @staticmethod
    def _button(agent: "EdgeAgent") -> None:
        mode = agent.modes.button()
        agent.take(Stream.EVENT, {"kind": "button", "detail": f"workshop button: {mode} mode"})

    @staticmethod
    def _shore_power(agent: "EdgeAgent", on: bool) -> None:
        agent.shore_power = on
        agent.take(Stream.EVENT, {"kind": "shore_power_on" if on else "shore_power_off"})

    @staticmethod
    def _in_service(agent: "EdgeAgent", on: bool) -> None:
        agent.in_service = on
        agent.take(Stream.EVENT, {"kind": "service_start" if on else "service_stop"})
        agent.request_status()


def build_companions(config: EdgeConfig) -> list["Companion"]:
    """The companions the config asks for (none without ``gps:`` or ``gpio:``)."""
    out: list[Companion] = []
    if config.gps is not None and config.gps.gpsd is not None:
        out.append(GpsCompanion(GpsdClient.from_config(config.gps), config.position))
    elif config.gps is not None and config.gps.nmea is not None:
        out.append(GpsCompanion(NmeaReader.from_config(config.gps), config.position))
    if config.gpio is not None:
        out.append(GpioCompanion(config.gpio))
    return out
