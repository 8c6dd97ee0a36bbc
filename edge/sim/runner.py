"""Start simulators from command-line style specs (``--map NAME[@UNIT]``)."""

from __future__ import annotations

from datetime import datetime, timezone

from camperhub.edge.registermap import load_register_map
from camperhub.edge.sim.model import CamperModel, CamperSpec, SimClock
from camperhub.edge.sim.modbus_server import ModbusSimulator, SimulatedDevice
from camperhub.edge.transport import parse_transport
from camperhub.yamlconf import ConfigError


def parse_map_specs(specs: list[str]) -> list[tuple[str, int | None]]:
    """``["victron-gx@100", "epever-tracer-an"]`` -> [(name, unit or None)]."""
    out = []
    for spec in specs:
        name, _, unit = spec.partition("@")
        if unit and not unit.isdigit():
            raise ValueError(f"--map {spec!r}: unit after @ must be a number")
        out.append((name, int(unit) if unit else None))
    return out


def parse_start(start: str | None) -> datetime | None:
    if start is None:
        return None
    try:
        t = datetime.fromisoformat(start)
    except ValueError:
        raise ValueError(f"--start {start!r} is not an ISO 8601 time (e.g. 2026-06-21T06:00:00+02:00)") from None
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def build_simulator(listen: str, specs: list[tuple[str, int | None]], model: CamperModel) -> ModbusSimulator:
    """A simulator serving each map at its unit id (the map's default when none given)."""
    transport = parse_transport(listen)
    devices = []
    for name, unit in specs:
        try:
            rmap = load_register_map(name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        if transport.kind not in rmap.link.transports:
            raise ValueError(f"{rmap.model} speaks {'/'.join(rmap.link.transports)}, not {transport.kind}")
        devices.append(SimulatedDevice(rmap, unit if unit is not None else rmap.link.default_unit))
    units = [d.unit for d in devices]
    if len(set(units)) != len(units):
        raise ValueError(f"two maps on one unit id: {units}; give each its own with NAME@UNIT")
    if transport.kind == "rtu":
        transport = transport.with_serial_defaults(devices[0].rmap.link.serial)
    return ModbusSimulator(transport, devices, model)


def start_simulator(
    listen: str, specs: list[tuple[str, int | None]], *, speed: float = 1.0, start: str | None = None, seed: int = 1, spec: CamperSpec | None = None
) -> ModbusSimulator:
    """Build and start a simulator with its own camper model."""
    model = CamperModel(spec or CamperSpec(seed=seed), SimClock(parse_start(start), speed=speed))
    return build_simulator(listen, specs, model).start()
