"""The zone's bounding area (辖区范围): where a photo's EXIF position is still plausible.

The grid's extent when a grid exists (the bounding box of its current cells), else the
`zone_bbox` setting, else none (and then nothing is outside). Either is widened by
`zone_margin_m`, so that a photo taken across the road from the zone's edge is not flagged.
"""

import math
from dataclasses import dataclass

import shapely
from sqlmodel import Session

from app.config import Settings
from app.services.geo import EARTH_RADIUS_M
from app.services.issue_list import parse_bbox

METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180


@dataclass(frozen=True)
class Area:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


# The grid's extent per routing index (its token names the grid's revision).
_extents: dict[str, tuple[float, float, float, float]] = {}


def zone_area(session: Session, settings: Settings) -> Area | None:
    """The zone's bounding area in WGS-84, widened by the margin; None when none is known."""
    # Imported here: grid reads the state machine, whose checks read this module.
    from app.services import grid

    index = grid.index_for(session)
    if index is not None:
        if index.token not in _extents:
            bounds = shapely.total_bounds(index.tree.geometries)
            _extents[index.token] = tuple(float(v) for v in bounds)  # type: ignore[assignment]
        box = _extents[index.token]
    elif settings.zone_bbox:
        box = parse_bbox(settings.zone_bbox)
    else:
        return None
    min_lon, min_lat, max_lon, max_lat = box
    d_lat = settings.zone_margin_m / METRES_PER_DEGREE
    middle = math.radians((min_lat + max_lat) / 2)
    d_lon = d_lat / max(math.cos(middle), 1e-6)
    return Area(min_lon - d_lon, min_lat - d_lat, max_lon + d_lon, max_lat + d_lat)


def outside(area: Area | None, gps: tuple[float, float] | None) -> bool:
    """A photo's EXIF position lies outside the zone (False when either is unknown)."""
    return area is not None and gps is not None and not area.contains(gps[0], gps[1])
