"""The contract module: topics, envelopes, ranges, and the committed JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from camperhub import contract as c

SCHEMA_FILE = Path(c.__file__).parent / "schema" / "telemetry-v1.schema.json"
TS = 1_764_057_600_000


def test_committed_schema_is_in_sync_with_the_models():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == c.json_schema_text(), "run `camperhub schema`"


def test_envelopes_built_by_the_models_validate_against_the_schema():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    payload = c.make_envelope("varese-1", "energy", [{"seq": 1, "ts": TS, "battery_voltage_v": 13.2, "charge_state": "float"}])
    jsonschema.validate(payload, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**payload, "camper": "Varese 1"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**payload, "samples": [{"seq": 1, "ts": TS, "battery_voltage_v": "13"}]}, schema)


def test_topics():
    assert c.topic("varese-1", c.Stream.ENERGY) == "camperhub/v1/varese-1/energy"
    assert c.command_topic("varese-1", "mode") == "camperhub/v1/varese-1/cmd/mode"
    assert c.parse_topic("camperhub/v1/varese-1/status") == ("varese-1", c.Stream.STATUS)
    for bad in ("camperhub/v1/Varese/energy", "camperhub/v1/varese-1/weather", "camperhub/v2/varese-1/energy", "x"):
        with pytest.raises(ValueError):
            c.parse_topic(bad)
    with pytest.raises(ValueError, match="does not match"):
        c.topic("a" * 33, "energy")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 2, "camper": "varese-1", "stream": "energy", "samples": []}', "unsupported contract version"),
        (b'{"v": 1, "camper": "varese-1", "stream": "weather", "samples": []}', "unknown stream"),
        (b'{"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 1, "ts": 1000}]}', "samples.0.ts"),
        (b'{"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 1, "ts": 1764057600000, "battery_voltage_v": 655.35}]}', "battery_voltage_v"),
        (b'{"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 1, "ts": 1764057600000, "bogus_w": 1}]}', "bogus_w"),
        (b'{"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 2, "ts": 1764057600000}, {"seq": 2, "ts": 1764057600001}]}', "seq must increase"),
        (b'{"v": 1, "camper": "varese-2", "stream": "energy", "samples": [{"seq": 1, "ts": 1764057600000}]}', "does not match topic camper"),
    ],
)
def test_bad_envelopes_are_refused_with_a_reason(payload: bytes, reason: str):
    with pytest.raises(c.ContractError, match=reason):
        c.decode_envelope(payload, "camperhub/v1/varese-1/energy")


def test_oversize_payload_is_refused():
    with pytest.raises(c.ContractError, match="exceeds"):
        c.decode_envelope(b" " * (c.MAX_PAYLOAD_BYTES + 1))


def test_round_trip_keeps_values_and_drops_absent_fields():
    raw = c.encode_envelope("varese-1", "energy", [{"seq": 7, "ts": TS, "pv_power_w": 120.5}])
    env = c.decode_envelope(raw, "camperhub/v1/varese-1/energy")
    assert env.samples[0].fields() == {"pv_power_w": 120.5}
    assert b"battery_soc_pct" not in raw  # absent, never a fake zero


def test_field_specs_carry_units_and_ranges():
    specs = c.field_specs()
    assert specs["battery_soc_pct"].unit == "%" and specs["battery_soc_pct"].maximum == 100
    assert specs["battery_current_a"].minimum < 0  # signed: positive = charging
    assert all(name.endswith(("_v", "_a", "_w", "_pct", "_c", "_wh", "_cycles")) or name in ("battery_cycles", "readings_n") for name in specs)


def test_mode_command_needs_minutes_for_live():
    assert c.ModeCommand(mode="live", minutes=60).minutes == 60
    with pytest.raises(ValueError, match="minutes"):
        c.ModeCommand(mode="live")


def test_a_gzip_envelope_decodes_like_its_json():
    samples = [{"seq": i, "ts": 1764057600000 + i * 5000, "battery_voltage_v": 12.5, "charge_state": "float"} for i in range(1, 61)]
    plain = c.encode_envelope("varese-1", "energy", samples)
    packed = c.encode_envelope("varese-1", "energy", samples, compress=True)
    assert packed[:2] == c.GZIP_MAGIC and len(packed) < len(plain) / 4
    assert c.decode_envelope(packed, "camperhub/v1/varese-1/energy") == c.decode_envelope(plain, "camperhub/v1/varese-1/energy")


def test_a_gzip_bomb_or_a_truncated_gzip_is_refused_with_its_reason():
    bomb = c.gzip_payload(b"{" + b" " * (c.MAX_INFLATED_BYTES + 10) + b"}")
    assert len(bomb) < c.MAX_PAYLOAD_BYTES
    with pytest.raises(c.ContractError, match="inflates past"):
        c.decode_envelope(bomb, "camperhub/v1/varese-1/energy")
    packed = c.encode_envelope("varese-1", "energy", [{"seq": 1, "ts": 1764057600000}], compress=True)
    with pytest.raises(c.ContractError, match="truncated gzip"):
        c.decode_envelope(packed[:-6], "camperhub/v1/varese-1/energy")
    with pytest.raises(c.ContractError, match="corrupt gzip"):
        c.decode_envelope(c.GZIP_MAGIC + b"\x07" + bytes(7) + b"garbage", "camperhub/v1/varese-1/energy")


def test_readings_lost_detail_checks_its_range():
    ok = c.ReadingsLost(stream="energy", reason="dropped", seq_first=10, seq_last=20, n=11)
    assert c.ReadingsLost.model_validate_json(ok.model_dump_json()) == ok
    with pytest.raises(ValueError, match="seq_last before seq_first"):
        c.ReadingsLost(stream="energy", reason="unsynced", seq_first=20, seq_last=10, n=1)
