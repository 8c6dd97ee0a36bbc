"""The fast line-protocol encoder is byte-identical to influxdb-client's Point."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from camperhub.store.lineprotocol import encode_line

keys = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=12)
values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))


@settings(max_examples=500, deadline=None)
@given(
    measurement=keys.filter(lambda m: not m.startswith("#")),
    tags=st.dictionaries(keys, st.one_of(st.none(), keys), max_size=3),
    fields=st.dictionaries(keys, values, max_size=6),
    ts=st.integers(0, 2**53),
)
def test_same_bytes_as_point(measurement, tags, fields, ts):
    point = Point(measurement).time(ts, WritePrecision.MS)
    for k, v in tags.items():
        point = point.tag(k, v)
    for k, v in fields.items():
        point = point.field(k, v)
    assert encode_line(measurement, tags, fields, ts) == point.to_line_protocol()


def test_a_typical_energy_point():
    line = encode_line("energy", {"camper": "varese-1"}, {"seq": 7, "battery_voltage_v": 13.0, "charge_state": 'bu"lk', "shore_power": False}, 1764057600000)
    assert line == 'energy,camper=varese-1 battery_voltage_v=13,charge_state="bu\\"lk",seq=7i,shore_power=false 1764057600000'


@settings(max_examples=300, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {"seq": st.integers(0, 2**62)},
        optional={
            "pv_power_w": st.floats(0, 10_000), "battery_current_a": st.floats(-500, 500), "battery_soc_pct": st.integers(0, 100),
            "charge_state": st.sampled_from(["bulk", "float"]), "shore_power": st.booleans(), "battery_cycles": st.integers(0, 10_000),
        },
    ),
    ts=st.integers(1_577_836_800_000, 2**44),
)
def test_the_stores_contract_encoder_writes_the_same_line(fields, ts):
    """InfluxStore's one-pass encoder for contract samples = the generic encoder = Point (floats coerced as the contract says)."""
    from camperhub.contract import Stream
    from camperhub.store.base import StoredSample
    from camperhub.store.influx import _encode_sample

    expected = {k: (float(v) if k == "battery_soc_pct" else v) for k, v in fields.items()}
    assert _encode_sample(StoredSample("varese-1", Stream.ENERGY, ts, fields)) == encode_line("energy", {"camper": "varese-1"}, expected, ts)
