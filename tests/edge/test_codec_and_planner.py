"""Pure logic: the codec's round trip for every data type, and the planner against the exhaustive minimum."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camperhub.edge.bench import minimum_requests
from camperhub.edge.codec import OutOfRange, decode, encode, raw_value
from camperhub.edge.planner import plan_reads
from camperhub.edge.registermap import DataType, Function, Link, Register, RegisterMap, Requests


def _reg(type_: str, **kw) -> Register:
    base = {"field": "battery_current_a", "address": 100, "function": "input", "type": type_, "unit": "A", "datasheet": "test"}
    if DataType(type_).register_count == 2:
        base["word_order"] = kw.pop("word_order", "high_first")
    if DataType(type_).is_byte:
        base["byte"] = kw.pop("byte", "low")
    return Register(**{**base, **kw})


@pytest.mark.parametrize("word_order", ["low_first", "high_first"])
@given(raw=st.integers(-(2**31), 2**31 - 1))
def test_int32_round_trip_in_both_word_orders(word_order: str, raw: int):
    reg = _reg("int32", word_order=word_order, scale=1, valid=None)
    words = encode(reg, raw) if -500 <= raw <= 500 else None
    if words is not None:
        assert decode(reg, words) == raw
    lo, hi = (raw & 0xFFFF), ((raw >> 16) & 0xFFFF)
    assert raw_value(reg, [lo, hi] if word_order == "low_first" else [hi, lo]) == raw


@given(value=st.integers(-127, 127))
def test_sign_magnitude_bytes_round_trip_and_leave_the_other_byte(value: int):
    low = _reg("sm8", byte="low", field="battery_temp_c", unit="°C", valid=None)
    high = _reg("sm8", byte="high", field="controller_temp_c", unit="°C", valid=None)
    words = encode(low, value, [0xAB00])
    assert words[0] >> 8 == 0xAB
    words = encode(high, 25, words)
    assert raw_value(low, words) == value and raw_value(high, words) == 25
    if -40 <= value <= 80:  # the contract's battery temperature range
        assert decode(low, words) == value
    else:
        with pytest.raises(OutOfRange):
            decode(low, words)


@given(value=st.floats(-300, 300, allow_nan=False).map(lambda v: round(v, 2)))
def test_scaled_int16_round_trip_within_one_step(value: float):
    reg = _reg("int32", scale=0.01)
    assert decode(reg, encode(reg, value)) == pytest.approx(value, abs=0.01)


def test_float32_and_out_of_range_and_not_finite():
    reg = _reg("float32", scale=1)
    assert decode(reg, encode(reg, -12.5)) == -12.5
    with pytest.raises(OutOfRange, match="outside"):
        decode(reg, encode(reg, 1000.0))
    with pytest.raises(OutOfRange, match="not a finite number"):
        decode(reg, [0x7FC0, 0x0000])  # NaN


@st.composite
def register_maps(draw) -> RegisterMap:
    """Random maps: registers of 1 or 2 words at random non-overlapping addresses."""
    n = draw(st.integers(1, 12))
    fields = ["pv_voltage_v", "pv_current_a", "pv_power_w", "battery_voltage_v", "battery_current_a", "battery_power_w",
              "battery_soc_pct", "battery_temp_c", "load_current_a", "load_power_w", "controller_temp_c", "pv_yield_today_wh"]
    address = draw(st.integers(0, 50))
    regs = []
    for i in range(n):
        address += draw(st.integers(0, 12))
        type_ = draw(st.sampled_from(["uint16", "int32"]))
        spec = {"field": fields[i], "address": address, "function": draw(st.sampled_from(["input", "holding"])), "type": type_,
                "unit": {"_v": "V", "_a": "A", "_w": "W", "pct": "%", "_c": "°C", "wh": "Wh"}[next(k for k in ("_v", "_a", "_w", "pct", "_c", "wh") if fields[i].endswith(k))],
                "datasheet": "doc x"}
        if type_ == "int32":
            spec["word_order"] = "low_first"
        regs.append(spec)
        address += 2 if type_ == "int32" else 1
    return RegisterMap.model_validate({
        "model": "random", "vendor": "x", "name": "x", "datasheet": "doc x",
        "link": Link(transports=["tcp"], default_unit=1),
        "requests": Requests(max_registers=draw(st.integers(2, 20)), max_gap=draw(st.integers(0, 6))),
        "registers": regs,
    })


@settings(max_examples=300, deadline=None)
@given(rmap=register_maps())
def test_planner_covers_every_register_within_limits_and_is_minimal(rmap: RegisterMap):
    blocks = plan_reads(rmap)
    covered = [r for b in blocks for r in b.registers]
    assert sorted(id(r) for r in covered) == sorted(id(r) for r in rmap.registers)
    for b in blocks:
        assert b.count <= rmap.requests.max_registers
        for r in b.registers:
            assert b.address <= r.address and r.address + r.register_count <= b.address + b.count
            assert r.function is b.function
        ordered = sorted(b.registers, key=lambda r: r.address)
        for before, after in zip(ordered, ordered[1:]):
            assert after.address - (before.address + before.register_count) <= rmap.requests.max_gap
    assert len(blocks) == minimum_requests(rmap)


def test_planner_respects_excluded_fields():
    rmap = RegisterMap.model_validate({
        "model": "test-map", "vendor": "x", "name": "x", "datasheet": "doc x", "link": {"transports": ["tcp"], "default_unit": 1},
        "requests": {"max_registers": 10, "max_gap": 0},
        "registers": [
            {"field": "pv_voltage_v", "address": 0, "function": "holding", "type": "uint16", "unit": "V", "datasheet": "doc x"},
            {"field": "pv_current_a", "address": 5, "function": "holding", "type": "uint16", "unit": "A", "datasheet": "doc x"},
        ],
    })
    assert [(b.function, b.address, b.count) for b in plan_reads(rmap, {"pv_current_a"})] == [(Function.HOLDING, 5, 1)]
