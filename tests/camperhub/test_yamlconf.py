"""YAML loading with file, line and key in every error."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from camperhub.yamlconf import ConfigError, load_model, validate_yaml


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[_Inner]


def test_errors_name_line_and_key():
    text = "name: x\nitems:\n  - port: 1\n  - port: nope\n    colour: red\n"
    with pytest.raises(ConfigError) as err:
        validate_yaml(_Outer, text, "f.yaml")
    lines = [str(i) for i in err.value.issues]
    assert "f.yaml:4: items[1].port: Input should be a valid integer, unable to parse string as an integer" in lines
    assert "f.yaml:5: items[1].colour: unknown key (not allowed here; check the spelling)" in lines


def test_missing_key_duplicate_key_and_bad_yaml():
    with pytest.raises(ConfigError, match="f.yaml:1: items: required key is missing"):
        validate_yaml(_Outer, "name: x\n", "f.yaml")
    with pytest.raises(ConfigError, match="f.yaml:2: name: duplicate key"):
        validate_yaml(_Outer, "name: x\nname: y\nitems: []\n", "f.yaml")
    with pytest.raises(ConfigError, match=r"f.yaml:3: \(top level\): not valid YAML"):
        validate_yaml(_Outer, "name: x\nitems: [\n", "f.yaml")
    with pytest.raises(ConfigError, match="file is empty"):
        validate_yaml(_Outer, "", "f.yaml")


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_model(_Outer, tmp_path / "missing.yaml")
