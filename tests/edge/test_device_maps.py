"""Every shipped register map loads, and known raw values decode to known readings.

The raw examples come from ../shared/reference/modbus-registers.md: a real EPEVER
bus capture (§1.4), the Renogy document's worked examples (§2.2) and Victron's
register list (§3). The negative tests show that the schema refuses the classic
register-map mistakes and names the file, the line and the key.
"""

from __future__ import annotations

import pytest

from camperhub.edge.codec import NotAvailable, OutOfRange, decode, encode
from camperhub.edge.planner import plan_reads
from camperhub.edge.registermap import Register, RegisterMap, available_maps, load_register_map
from camperhub.yamlconf import ConfigError, validate_yaml

EXPECTED_MAPS = {"epever-tracer-an", "renogy-rover", "victron-gx", "victron-gx-battery", "victron-gx-solarcharger"}


def reg(model: str, field: str) -> Register:
    """The register of ``model`` that feeds ``field``."""
    rmap = load_register_map(model)
    found = [r for r in rmap.registers if r.field == field]
    assert len(found) == 1, f"{model}: {len(found)} registers feed {field}"
    return found[0]


# --- every map loads -------------------------------------------------------------


def test_the_expected_maps_are_shipped():
    assert EXPECTED_MAPS <= set(available_maps())


@pytest.mark.parametrize("model", available_maps())
def test_map_loads_and_is_documented(model):
    rmap = load_register_map(model)
    assert rmap.model == model
    assert rmap.registers
    for r in rmap.registers:
        assert r.datasheet.strip(), f"{model}: {r.field} names no datasheet entry"
    # every block the planner makes fits the device's request limits
    for block in plan_reads(rmap):
        assert block.count <= rmap.requests.max_registers


# --- EPEVER Tracer AN: the kasbert bus capture (§1.4) ------------------------------


def test_epever_battery_voltage_from_bus_capture():
    r = reg("epever-tracer-an", "battery_voltage_v")
    assert r.address == 0x331A
    assert decode(r, [1276]) == pytest.approx(12.76)


def test_epever_net_battery_current_is_signed_low_word_first():
    r = reg("epever-tracer-an", "battery_current_a")
    assert r.address == 0x331B
    # capture: 0x331B = 0xFFFD (low word), 0x331C = 0xFFFF (high word) -> -3 -> -0.03 A
    assert decode(r, [0xFFFD, 0xFFFF]) == pytest.approx(-0.03)


def test_epever_soc_is_a_plain_percent():
    r = reg("epever-tracer-an", "battery_soc_pct")
    assert decode(r, [63]) == 63


def test_epever_pv_voltage_ffff_is_out_of_range():
    r = reg("epever-tracer-an", "pv_voltage_v")
    with pytest.raises(OutOfRange):
        decode(r, [0xFFFF])


# --- Renogy Rover (§2.2) ---------------------------------------------------------


def test_renogy_temperatures_are_sign_magnitude_bytes():
    controller = reg("renogy-rover", "controller_temp_c")
    battery = reg("renogy-rover", "battery_temp_c")
    assert controller.address == battery.address == 0x0103
    assert decode(controller, [0x198A]) == 25
    assert decode(battery, [0x198A]) == -10  # 0x8A: sign bit + 10, not -118


def test_renogy_soc_from_document_example():
    r = reg("renogy-rover", "battery_soc_pct")
    assert r.address == 0x0100
    assert decode(r, [0x0064]) == 100


def test_renogy_soc_ignores_the_unused_high_byte():
    assert decode(reg("renogy-rover", "battery_soc_pct"), [0xAB37]) == 0x37


def test_renogy_charging_state_is_the_low_byte():
    r = reg("renogy-rover", "charge_state")
    assert r.address == 0x0120
    # doc §3.14: E4 02 = load on, brightness 100 %, MPPT charging -> bulk
    assert decode(r, [0xE402]) == "bulk"
    assert decode(r, [0x0005]) == "float"
    assert decode(r, [0x0004]) == "absorption"
    assert decode(r, [0x0000]) == "off"


def test_renogy_charging_current_is_not_net_battery_current():
    fields = load_register_map("renogy-rover").fields
    assert "battery_current_a" not in fields


def test_renogy_block_is_one_read():
    blocks = plan_reads(load_register_map("renogy-rover"))
    assert [(b.address, b.count) for b in blocks] == [(0x0100, 33)]


# --- Victron GX (§3) -------------------------------------------------------------


def test_victron_battery_current_is_signed():
    r = reg("victron-gx-battery", "battery_current_a")
    assert r.address == 261
    assert decode(r, [0xFFF6]) == pytest.approx(-1.0)


def test_victron_battery_soc_has_tenths():
    r = reg("victron-gx-battery", "battery_soc_pct")
    assert r.address == 266
    assert decode(r, [875]) == pytest.approx(87.5)


def test_victron_system_battery_power_negative_is_discharging():
    r = reg("victron-gx", "battery_power_w")
    assert r.address == 842
    assert decode(r, [0xFF38]) == -200


def test_victron_system_voltage_has_tenths_only():
    assert decode(reg("victron-gx", "battery_voltage_v"), [132]) == pytest.approx(13.2)


def test_victron_yield_today_in_wh():
    r = reg("victron-gx-solarcharger", "pv_yield_today_wh")
    assert r.address == 784
    assert decode(r, [12]) == 1200


def test_victron_pv_power_is_high_word_first():
    r = reg("victron-gx-solarcharger", "pv_power_w")
    assert r.address == 792
    assert decode(r, [0x0000, 1234]) == 1234


def test_victron_solarcharger_output_current_is_not_net_battery_current():
    assert "battery_current_a" not in load_register_map("victron-gx-solarcharger").fields


def test_victron_unavailable_temperature_is_not_zero_degrees():
    # the GX serves an unavailable D-Bus value as raw 0 (VE.Direct MPPTs have no sensor)
    with pytest.raises(NotAvailable):
        decode(reg("victron-gx-solarcharger", "battery_temp_c"), [0])
    assert decode(reg("victron-gx-solarcharger", "battery_temp_c"), [0xFFFF]) == pytest.approx(-0.1)


@pytest.mark.parametrize("raw", [11, 252])
def test_victron_external_control_state_is_dropped_not_guessed(raw):
    with pytest.raises(OutOfRange):
        decode(reg("victron-gx-solarcharger", "charge_state"), [raw])


# --- the schema refuses broken maps ------------------------------------------------

HEADER = """\
model: test-device
vendor: Test
name: Test device
datasheet: "test document"
link:
  transports: [rtu]
  default_unit: 1
  serial: {baudrate: 9600}
registers:
"""

PV_VOLTAGE = """\
  - field: pv_voltage_v
    address: 0x3100
    function: input
    type: uint16
    scale: 0.01
    unit: V
    valid: [0, 200]
    datasheet: "test entry 3100"
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the ``occurrence``-th line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in the test YAML"
    return hits[occurrence - 1]


def entry_or_key_line(text: str, entry: str, key: str) -> set[int]:
    """The line a register-level error must name: the offending key's, not the entry's first line."""
    assert line_of(text, entry) < line_of(text, key)
    return {line_of(text, key)}


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_yaml(RegisterMap, text, "x.yaml")
    return info.value


def test_the_negative_tests_start_from_a_valid_map():
    rmap = validate_yaml(RegisterMap, HEADER + PV_VOLTAGE, "x.yaml")
    assert rmap.fields == ["pv_voltage_v"]


def test_unknown_key_in_a_register():
    text = HEADER + PV_VOLTAGE + "    colour: red\n"
    err = refused(text)
    issue = err.issues[0]
    assert issue.key == "registers[0].colour"
    assert issue.line == line_of(text, "colour:")
    assert "unknown key" in issue.message
    assert f"x.yaml:{issue.line}: registers[0].colour" in str(err)


def test_uint32_with_count_1():
    text = HEADER + """\
  - field: pv_power_w
    address: 0x3102
    function: input
    type: uint32
    count: 1
    word_order: low_first
    unit: W
    datasheet: "test entry 3102"
"""
    err = refused(text)
    issue = err.issues[0]
    assert issue.key.startswith("registers[0]")
    assert issue.line in entry_or_key_line(text, "field: pv_power_w", "count:")
    assert "count is 1" in issue.message and "uint32" in issue.message
    assert f"x.yaml:{issue.line}: {issue.key}:" in str(err)


def test_uint32_without_word_order():
    text = HEADER + """\
  - field: pv_power_w
    address: 0x3102
    function: input
    type: uint32
    unit: W
    datasheet: "test entry 3102"
"""
    err = refused(text)
    issue = err.issues[0]
    assert issue.key.startswith("registers[0]")
    assert issue.line in entry_or_key_line(text, "field: pv_power_w", "type: uint32")
    assert "word_order" in issue.message
    assert f"x.yaml:{issue.line}: {issue.key}:" in str(err)


def test_overlapping_registers():
    text = HEADER + """\
  - field: pv_power_w
    address: 0x3102
    function: input
    type: uint32
    word_order: low_first
    unit: W
    datasheet: "test entry 3102"
  - field: battery_voltage_v
    address: 0x3103
    function: input
    type: uint16
    unit: V
    datasheet: "test entry 3103"
"""
    err = refused(text)
    issue = err.issues[0]
    assert issue.key == "registers[1].address"
    assert issue.line == line_of(text, "address: 0x3103")
    assert "0x3103" in issue.message and "overlaps registers[0]" in issue.message
    assert f"x.yaml:{issue.line}: registers[1].address" in str(err)


def test_same_field_fed_twice():
    second = PV_VOLTAGE.replace("0x3100", "0x3104").replace("entry 3100", "entry 3104")
    text = HEADER + PV_VOLTAGE + second
    err = refused(text)
    issue = err.issues[0]
    assert issue.key == "registers[1].field"
    assert issue.line == line_of(text, "field: pv_voltage_v", occurrence=2)
    assert "already fed by registers[0]" in issue.message
    assert f"x.yaml:{issue.line}: registers[1].field" in str(err)


def test_unit_differs_from_the_contract():
    text = HEADER + PV_VOLTAGE.replace("unit: V", "unit: mV")
    err = refused(text)
    issue = err.issues[0]
    assert issue.key.startswith("registers[0]")
    assert issue.line in entry_or_key_line(text, "field: pv_voltage_v", "unit: mV")
    assert "'mV'" in issue.message and "'V'" in issue.message
    assert f"x.yaml:{issue.line}: {issue.key}:" in str(err)


def test_valid_range_beyond_the_contract():
    text = HEADER + PV_VOLTAGE.replace("valid: [0, 200]", "valid: [0, 300]")
    err = refused(text)
    issue = err.issues[0]
    assert issue.key.startswith("registers[0]")
    assert issue.line in entry_or_key_line(text, "field: pv_voltage_v", "valid: [0, 300]")
    assert "exceeds the contract" in issue.message and "250" in issue.message
    assert f"x.yaml:{issue.line}: {issue.key}:" in str(err)


def test_invalid_raw_value_must_be_possible_for_the_type():
    text = HEADER + PV_VOLTAGE.replace("    type: uint16\n", "    type: int16\n") + "    invalid: [0xFFFF]\n"
    issue = refused(text).issues[0]
    assert issue.key == "registers[0].invalid" and issue.line == line_of(text, "invalid:")
    assert "can never come out of a int16" in issue.message


def test_charge_state_takes_unit_state_and_no_scale():
    text = HEADER + """\
  - field: charge_state
    address: 0x3201
    function: input
    type: uint16
    scale: 0.1
    unit: V
    enum: {0: "off", 1: float}
    datasheet: "test entry 3201"
"""
    found = {(i.key, i.line) for i in refused(text).issues}
    assert ("registers[0].unit", line_of(text, "unit: V")) in found
    assert ("registers[0].scale", line_of(text, "scale: 0.1")) in found


def test_a_boolean_field_decodes_to_true_or_false():
    text = HEADER + """\
  - field: shore_power
    address: 0x2000
    function: input
    type: uint16
    mask: 0x0001
    unit: bool
    datasheet: "test entry 2000"
"""
    reg = validate_yaml(RegisterMap, text, "x.yaml").registers[0]
    assert decode(reg, [0x0003]) is True and decode(reg, [0x0002]) is False
    assert decode(reg, encode(reg, True, [0])) is True
