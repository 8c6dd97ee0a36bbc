"""The camper's stops (``firmware-config/demo/stops.yaml``): where it parks in each neighbourhood.

The edge agent needs them for one thing: inside a stop's geofence a parked
camper's position snaps to the stop (edge/position_filter.py), so the public
map shows "at Bustecche", not a dot wandering around a car park. The schedule
names stops by ``id``, so ids are stable, lowercase and dashed.

The file is a YAML list of ``{id, name, neighbourhood, address, lat, lon,
radius_m}`` (the schedule's own :class:`camperhub.schedule.Stop`: one model of
a stop for the edge and the server); every problem is reported with file, line and key
(camperhub.yamlconf), like the edge config.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import RootModel

from camperhub.schedule import Stop
from camperhub.yamlconf import PathKey, load_model

__all__ = ["DEMO_STOPS_FILE", "Stop", "StopList", "load_stops"]


class StopList(RootModel[list[Stop]]):
    """The whole stops file."""

    def cross_check(self) -> list[tuple[PathKey, str]]:
        """Ids must be unique: the schedule refers to stops by id."""
        seen: dict[str, int] = {}
        problems: list[tuple[PathKey, str]] = []
        for i, stop in enumerate(self.root):
            if stop.id in seen:
                problems.append(((i, "id"), f"stop id {stop.id!r} is used by stop {seen[stop.id]} too"))
            seen.setdefault(stop.id, i)
        return problems


#: The demo's stops, shipped with the repository.
DEMO_STOPS_FILE = Path(__file__).resolve().parent.parent / "firmware-config" / "demo" / "stops.yaml"


def load_stops(path: str | Path = DEMO_STOPS_FILE) -> list[Stop]:
    """Read and validate a stops file; ConfigError lists every problem with its line."""
    return list(load_model(StopList, path).root)
