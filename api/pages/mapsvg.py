"""The map of the stops as inline SVG, drawn server-side: it works offline and without JavaScript.

Web Mercator pixel coordinates (over a town the same as an equirectangular
projection to within a fraction of a per cent), so that optional map tiles,
served from ``CAMPERHUB_API_TILE_URL`` when configured, line up exactly.
Without a tile URL nothing leaves the app: a plain background, the stops as
labelled points, and the camper's public position (the stop it is at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TILE = 256
WIDTH, HEIGHT = 640.0, 400.0
PAD = 48.0
MAX_ZOOM = 17


def world_px(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """Web Mercator pixel position of a WGS84 point at ``zoom``."""
    scale = TILE * 2**zoom
    x = (lon + 180.0) / 360.0 * scale
    s = math.sin(math.radians(max(-85.0511, min(85.0511, lat))))
    y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * scale
    return x, y


@dataclass(frozen=True)
class MapPoint:
    id: str
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class MapTile:
    href: str
    x: float
    y: float
    size: float


@dataclass(frozen=True)
class MapView:
    width: float
    height: float
    points: list[MapPoint]
    tiles: list[MapTile]


def layout(stops: list[tuple[str, str, float, float]], tile_url: str | None = None) -> MapView:
    """Fit ``(id, label, lat, lon)`` stops into the view box; tiles only with a ``tile_url`` template."""
    if not stops:
        return MapView(WIDTH, HEIGHT, [], [])
    lats = [s[2] for s in stops]
    lons = [s[3] for s in stops]
    zoom = MAX_ZOOM
    while zoom > 0:
        x0, y0 = world_px(max(lats), min(lons), zoom)
        x1, y1 = world_px(min(lats), max(lons), zoom)
        if x1 - x0 <= WIDTH - 2 * PAD and y1 - y0 <= HEIGHT - 2 * PAD:
            break
        zoom -= 1
    x0, y0 = world_px(max(lats), min(lons), zoom)
    x1, y1 = world_px(min(lats), max(lons), zoom)
    # centre the stops' bounding box in the view
    ox = x0 - (WIDTH - (x1 - x0)) / 2
    oy = y0 - (HEIGHT - (y1 - y0)) / 2
    points = []
    for sid, label, lat, lon in stops:
        x, y = world_px(lat, lon, zoom)
        points.append(MapPoint(sid, label, round(x - ox, 1), round(y - oy, 1)))
    tiles: list[MapTile] = []
    if tile_url:
        n = 2**zoom
        for tx in range(int(ox // TILE), int((ox + WIDTH) // TILE) + 1):
            for ty in range(max(0, int(oy // TILE)), min(n - 1, int((oy + HEIGHT) // TILE)) + 1):
                href = tile_url.format(z=zoom, x=tx % n, y=ty, s="a")
                tiles.append(MapTile(href, round(tx * TILE - ox, 1), round(ty * TILE - oy, 1), TILE))
    return MapView(WIDTH, HEIGHT, points, tiles)
