"""The edge config file and `camperhub check-config`: every problem named with file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from camperhub.edge.config import EdgeConfig, MqttUrl, load_edge_config
from camperhub.edge.registermap import REPO_ROOT
from camperhub.yamlconf import ConfigError, validate_yaml

EXAMPLES = sorted((REPO_ROOT / "firmware-config" / "edge").glob("*.yaml"))

GOOD = """\
camper: varese-1
mqtt:
  url: mqtt://varese-1:secret@127.0.0.1:1883
devices:
  - map: epever-tracer-an
    transport: rtu:///dev/ttyUSB0?baudrate=115200
"""


def check_config(*files: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camperhub.cli", "check-config", *map(str, files)], capture_output=True, text=True, timeout=60
    )


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_yaml(EdgeConfig, text, "edge.yaml")
    return [str(i) for i in err.value.issues]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_are_valid(example: Path):
    config = load_edge_config(example)
    assert config.devices


def test_a_good_config_uses_map_defaults():
    config = validate_yaml(EdgeConfig, GOOD, "edge.yaml")
    assert config.devices[0].interval_s == 5 and config.mqtt.parsed.port == 1883
    assert config.mqtt.parsed.redacted() == "mqtt://varese-1@127.0.0.1:1883"


def test_missing_device_map_is_named_with_its_line():
    found = issues(GOOD.replace("epever-tracer-an", "epever-tracer-zz"))
    assert len(found) == 1 and found[0].startswith("edge.yaml:5: devices[0].map: ")
    assert "register map 'epever-tracer-zz' not found" in found[0]


def test_every_problem_is_reported_at_once():
    text = """\
camper: Varese 1
mqtt:
  url: http://broker
devices:
  - map: epever-tracer-an
    transport: serial:/dev/ttyUSB0
    interval_s: 0
    colour: red
"""
    found = issues(text)
    assert any(f.startswith("edge.yaml:1: camper:") and "pattern" in f for f in found)
    assert any(f.startswith("edge.yaml:3: mqtt.url:") and "mqtt:// or mqtts://" in f for f in found)
    assert any(f.startswith("edge.yaml:6: devices[0].transport:") and "tcp:// or rtu://" in f for f in found)
    assert any(f.startswith("edge.yaml:7: devices[0].interval_s:") for f in found)
    assert any(f.startswith("edge.yaml:8: devices[0].colour: unknown key") for f in found)


def test_transport_the_device_does_not_speak():
    found = issues(GOOD.replace("rtu:///dev/ttyUSB0?baudrate=115200", "tcp://127.0.0.1:502"))
    assert found == ["edge.yaml:6: devices[0].transport: epever-tracer-an speaks rtu, not tcp"]


def test_two_devices_feeding_one_field_must_say_which_wins():
    text = """\
camper: varese-1
mqtt:
  url: mqtt://varese-1:x@127.0.0.1
devices:
  - map: victron-gx-solarcharger
    transport: tcp://127.0.0.1
  - map: victron-gx-battery
    transport: tcp://127.0.0.1
"""
    found = issues(text)
    assert any(f.startswith("edge.yaml:7: devices[1].map: field battery_voltage_v is fed by devices[0] too") for f in found)
    fixed = text.replace("transport: tcp://127.0.0.1\n  - map: victron-gx-battery", "transport: tcp://127.0.0.1\n    exclude_fields: [battery_voltage_v, battery_temp_c]\n  - map: victron-gx-battery")
    validate_yaml(EdgeConfig, fixed, "edge.yaml")


def test_bad_serial_option_and_mqtt_url():
    assert "unknown serial option 'speed'" in issues(GOOD.replace("baudrate=115200", "speed=115200"))[0]
    with pytest.raises(ValueError, match="needs a host"):
        MqttUrl.parse("mqtt://")


def test_check_config_cli_accepts_good_files_and_maps(tmp_path: Path):
    good = tmp_path / "edge.yaml"
    good.write_text(GOOD)
    res = check_config(good, "epever-tracer-an", *EXAMPLES)
    assert res.returncode == 0, res.stderr
    assert f"{good}: OK (edge config)" in res.stdout and "epever-tracer-an.yaml: OK (register map)" in res.stdout


def test_check_config_cli_lists_errors_and_exits_non_zero(tmp_path: Path):
    bad_map = tmp_path / "bad-map.yaml"
    bad_map.write_text(
        (REPO_ROOT / "firmware-config/devices/epever-tracer-an.yaml").read_text().replace("scale: 0.01\n    unit: V\n    valid: [0, 200]", "scale: 0.01\n    unit: mV\n    valid: [0, 200]", 1)
    )
    bad_edge = tmp_path / "edge.yaml"
    bad_edge.write_text(GOOD.replace("epever-tracer-an", "nope"))
    res = check_config(bad_map, bad_edge, tmp_path / "missing.yaml")
    assert res.returncode == 1
    err = res.stderr.splitlines()
    assert any(line.startswith(f"{bad_map}:") and "registers[0].unit: 'mV' differs from the contract's 'V'" in line for line in err), err
    assert any(line.startswith(f"{bad_edge}:5: devices[0].map:") for line in err), err
    assert any(str(tmp_path / "missing.yaml") in line and "cannot read" in line for line in err), err
