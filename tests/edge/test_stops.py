"""The demo stops file and its loader: what the schedule refers to by id, and what positions snap to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from camperhub.edge.config import PositionConfig
from camperhub.edge.position_filter import haversine_m
from camperhub.edge.stops import DEMO_STOPS_FILE, load_stops
from camperhub.yamlconf import ConfigError

#: Varese's municipal area, generously: a stop outside it is a typo in the coordinates.
VARESE_BOX = (45.78, 45.86, 8.74, 8.88)


def test_demo_stops_are_varese_neighbourhoods_with_separate_geofences() -> None:
    stops = load_stops()
    assert DEMO_STOPS_FILE.name == "stops.yaml"
    ids = [s.id for s in stops]
    assert ids == ["bustecche", "san-fermo", "bobbiate", "valle-olona", "biumo-inferiore", "giubiano"]
    for s in stops:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.id)
        assert VARESE_BOX[0] < s.lat < VARESE_BOX[1] and VARESE_BOX[2] < s.lon < VARESE_BOX[3], s
        assert 80 <= s.radius_m <= 150
        assert s.name and s.neighbourhood and s.address
    # no point is inside two geofences: a parked camper is at one stop, never two
    for i, a in enumerate(stops):
        for b in stops[i + 1 :]:
            assert haversine_m(a.lat, a.lon, b.lat, b.lon) > a.radius_m + b.radius_m, (a.id, b.id)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "stops.yaml"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """\
- id: a-stop
  name: A
  neighbourhood: A
  address: via A 1
  lat: 45.81
  lon: 8.82
  radius_m: 100
"""


def test_duplicate_ids_are_refused_with_their_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_stops(_write(tmp_path, GOOD + GOOD))
    (issue,) = exc.value.issues
    assert issue.line == 8 and "a-stop" in issue.message


@pytest.mark.parametrize("change, key", [
    (("id: a-stop", "id: A Stop"), "id"),
    (("lat: 45.81", "lat: 95.0"), "lat"),
    (("radius_m: 100", "radius_m: 5"), "radius_m"),
    (("  address: via A 1\n", ""), "address"),
    (("radius_m: 100", "radius_m: 100\n  colour: red"), "colour"),
])
def test_bad_stops_are_refused_naming_the_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_stops(_write(tmp_path, GOOD.replace(*change)))
    assert any(i.key.endswith(key) for i in exc.value.issues), exc.value.issues


def test_position_config_checks_its_stops_file(tmp_path: Path) -> None:
    assert PositionConfig(stops_file=DEMO_STOPS_FILE).stops_file == DEMO_STOPS_FILE
    assert PositionConfig().stops_file is None
    with pytest.raises(ValidationError, match="stops file is invalid"):
        PositionConfig(stops_file=_write(tmp_path, GOOD.replace("lat: 45.81", "lat: north")))
    with pytest.raises(ValidationError, match="cannot read file"):
        PositionConfig(stops_file=tmp_path / "missing.yaml")
    with pytest.raises(ValidationError, match="max_interval_s"):
        PositionConfig(min_interval_s=600, max_interval_s=300)
