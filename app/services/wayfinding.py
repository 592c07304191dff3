"""Where an issue is and how to get there: navigation links for 高德地图 and 百度地图, and an
address hint for issues reported without an address (the nearest known one, with its distance).

The links take the map providers' own coordinate systems (GCJ-02 for AMap, BD-09 for Baidu),
converted from the stored WGS-84 point with app/services/geo.py. The nearest address is looked
up once, when the issue is reported (`nearest_address`), and stored with it: answers read it
from the row and a list page runs no query for it.
"""

import math
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from sqlalchemy import Row
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from app.models import Issue
from app.services.flag_text import length
from app.services.geo import EARTH_RADIUS_M, distance_m, gcj02_to_bd09, wgs84_to_gcj02

# How far another issue's address still helps to find this one.
ADDRESS_HINT_RADIUS_M = 300.0
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
AMAP_MARKER = "https://uri.amap.com/marker"
BAIDU_MARKER = "https://api.map.baidu.com/marker"


def navigation(lat: float, lon: float, name: str) -> dict[str, str]:
    """Links that open 高德地图 / 百度地图 (app or web) with a marker at the WGS-84 point."""
    amap, baidu = _marker_links(lat, lon, name)
    return {"amap": amap, "baidu": baidu}


# Remembered by point and name (the links depend on nothing else): a dashboard polls the same
# page of issues every few seconds, and the two conversions and three formats cost ~15 µs an
# issue. Built as plain strings (the one quoted part is the name): urlencode cost 40 µs.
@lru_cache(maxsize=8192)
def _marker_links(lat: float, lon: float, name: str) -> tuple[str, str]:
    g_lat, g_lon = wgs84_to_gcj02(lat, lon)
    b_lat, b_lon = gcj02_to_bd09(g_lat, g_lon)  # = wgs84_to_bd09, without a second GCJ-02 pass
    label = quote(name, safe="")
    return (
        f"{AMAP_MARKER}?position={g_lon:.6f},{g_lat:.6f}&name={label}"
        "&src=gridproof&coordinate=gaode&callnative=1",
        f"{BAIDU_MARKER}?location={b_lat:.6f},{b_lon:.6f}&title={label}"
        f"&content={label}&coord_type=bd09ll&output=html&src=gridproof",
    )


def nearest_address(session: Session, lat: float, lon: float) -> tuple[str, float] | None:
    """The address of the nearest issue that has one within the radius, and its distance."""
    d_lat = ADDRESS_HINT_RADIUS_M / METRES_PER_DEGREE
    d_lon = d_lat / max(math.cos(math.radians(lat)), 1e-6)
    query = select_columns(col(Issue.lat), col(Issue.lon), col(Issue.address)).where(
        col(Issue.lat).between(lat - d_lat, lat + d_lat),
        col(Issue.lon).between(lon - d_lon, lon + d_lon),
        col(Issue.address).is_not(None),
        col(Issue.address) != "",
    )
    near = [
        (distance_m(lat, lon, row.lat, row.lon), row.address)
        for row in session.connection().execute(query)
    ]
    found = min((n for n in near if n[0] <= ADDRESS_HINT_RADIUS_M), default=None)
    return (found[1], found[0]) if found else None


def address_hint(issue: Issue | Row[Any], *, english: bool = False) -> str | None:
    """The address; else the nearest known one with its distance ("距 XX 约 120 m"); else the
    grid cell's name; else None."""
    if issue.address:
        return str(issue.address)
    if issue.nearby_address and issue.nearby_address_m is not None:
        far = length(issue.nearby_address_m)
        if english:
            return f"about {far} from {issue.nearby_address}"
        return f"距 {issue.nearby_address} 约 {far}"
    if issue.grid_cell_name:
        name = issue.grid_cell_name
        return f"in grid cell {name}" if english else f"位于网格 {name}"
    return None
