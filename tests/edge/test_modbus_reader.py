"""The generic reader against the real pymodbus simulator, over TCP and over RTU on a PTY pair."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.constants import ExcCodes

from camperhub.edge.modbus_reader import DeviceReader
from camperhub.edge.planner import plan_reads
from camperhub.edge.registermap import available_maps, load_register_map
from camperhub.edge.sim.modbus_server import ModbusSimulator, SimulatedDevice
from camperhub.edge.transport import parse_transport
from tests.edge.helpers import free_port, frozen_model, make_reader, run, tolerance

MAPS = available_maps()


async def _poll_once(reader: DeviceReader):
    try:
        return await reader.poll()
    finally:
        reader.bus.close()


def _assert_matches_model(reader: DeviceReader, device: SimulatedDevice) -> None:
    result = run(_poll_once(reader))
    assert result.errors == []
    assert set(result.values) == set(reader.rmap.fields), "every mapped field decoded"
    for field, value in result.values.items():
        served = device.last_values[field]
        if isinstance(served, str | bool):
            assert value == served, field
        else:
            assert value == pytest.approx(served, abs=tolerance(reader.rmap, field)), field


@pytest.mark.parametrize("name", MAPS)
def test_every_map_over_tcp_reads_the_model_values(name: str):
    rmap = load_register_map(name)
    device = SimulatedDevice(rmap, unit=rmap.link.default_unit)
    transport = parse_transport(f"tcp://127.0.0.1:{free_port()}")
    with ModbusSimulator(transport, [device], frozen_model()) as sim:
        reader = make_reader(rmap, transport, device.unit)
        _assert_matches_model(reader, device)
        # the fewest requests the map allows: one per planned block, nothing more
        assert sim.requests == len(plan_reads(rmap)) == reader.counters["requests"]


@pytest.mark.parametrize("name", MAPS)
def test_every_map_over_rtu_on_a_pty_pair_reads_the_model_values(name: str, serial_pty):
    rmap = load_register_map(name)
    device = SimulatedDevice(rmap, unit=rmap.link.default_unit)
    server_side = parse_transport(f"rtu://{serial_pty.server}?baudrate=115200")
    client_side = parse_transport(f"rtu://{serial_pty.client}?baudrate=115200")
    with ModbusSimulator(server_side, [device], frozen_model()):
        reader = make_reader(rmap, client_side, device.unit, timeout_s=1.0)
        _assert_matches_model(reader, device)


def _one_device(name: str = "epever-tracer-an") -> tuple[SimulatedDevice, ModbusSimulator, DeviceReader]:
    rmap = load_register_map(name)
    device = SimulatedDevice(rmap, unit=1)
    transport = parse_transport(f"tcp://127.0.0.1:{free_port()}")
    sim = ModbusSimulator(transport, [device], frozen_model())
    return device, sim, make_reader(rmap, transport, 1, timeout_s=0.3, retries=1)


def test_out_of_range_value_is_dropped_counted_and_the_rest_kept():
    device, sim, reader = _one_device()
    device.faults.raw_overrides[0x3100] = 0xFFFF  # 655.35 V in the PV voltage register
    with sim:
        result = run(_poll_once(reader))
    assert "pv_voltage_v" not in result.values
    assert result.values["battery_voltage_v"] > 10
    assert reader.counters["out_of_range"] == 1 and reader.counters["out_of_range.pv_voltage_v"] == 1
    assert any("pv_voltage_v: 655.35 V outside [0, 200]" in e for e in result.errors)
    assert not reader.stale


def test_modbus_exception_is_counted_with_a_hint_and_does_not_mark_stale():
    device, sim, reader = _one_device()
    device.faults.exception = ExcCodes.ILLEGAL_ADDRESS
    with sim:
        result = run(_poll_once(reader))
    assert result.values == {}
    assert reader.counters["modbus_exceptions"] == len(reader.blocks)
    assert "illegal data address" in result.errors[0] and "max_gap" in result.errors[0]


async def _poll_until_values(reader: DeviceReader, attempts: int = 40):
    for _ in range(attempts):  # reconnect back-off starts at 1 s
        result = await reader.poll()
        if result.values:
            return result
        await asyncio.sleep(0.25)
    return result


def test_silent_device_times_out_is_marked_stale_and_recovers():
    device, sim, reader = _one_device()

    async def scenario():
        try:
            assert (await reader.poll()).values
            device.faults.silent = True
            result = await reader.poll()
            assert result.values == {} and reader.stale
            assert reader.counters["timeouts"] == 1
            assert "no answer" in reader.last_error
            device.faults.silent = False
            # the timed-out connection is dropped; the next polls reconnect by themselves
            result = await _poll_until_values(reader)
            assert result.values and not reader.stale
        finally:
            reader.bus.close()

    with sim:
        run(scenario())


def test_device_that_disappears_and_comes_back():
    device, sim, reader = _one_device()

    async def scenario():
        try:
            assert (await reader.poll()).values
            await asyncio.to_thread(sim.stop)
            result = await reader.poll()
            assert result.values == {} and reader.stale
            assert "no answer" in result.errors[0] or "cannot connect" in result.errors[0]
            with ModbusSimulator(sim.listen, [device], frozen_model()):
                result = await _poll_until_values(reader)
                assert result.values and not reader.stale
        finally:
            reader.bus.close()

    sim.start()
    try:
        run(scenario())
    finally:
        sim.stop()
