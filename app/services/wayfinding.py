"""Where an issue is and how to get there: navigation links for 高德地图 and 百度地图, and an
address hint for issues reported without an address (the nearest known one, with its distance).

The links take the map providers' own coordinate systems (GCJ-02 for AMap, BD-09 for Baidu),
converted from the stored WGS-84 point with app/services/geo.py.
"""

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Row, and_, or_
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from app.models import Issue
from app.services.flag_text import length
from app.services.geo import EARTH_RADIUS_M, distance_m, wgs84_to_bd09, wgs84_to_gcj02

# How far another issue's address still helps to find this one.
ADDRESS_HINT_RADIUS_M = 300.0
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
AMAP_MARKER = "https://uri.amap.com/marker"
BAIDU_MARKER = "https://api.map.baidu.com/marker"


def navigation(lat: float, lon: float, name: str) -> dict[str, str]:
    """Links that open 高德地图 / 百度地图 (app or web) with a marker at the WGS-84 point."""
    g_lat, g_lon = wgs84_to_gcj02(lat, lon)
    b_lat, b_lon = wgs84_to_bd09(lat, lon)
    amap = {
        "position": f"{g_lon:.6f},{g_lat:.6f}",
        "name": name,
        "src": "gridproof",
        "coordinate": "gaode",
        "callnative": "1",
    }
    baidu = {
        "location": f"{b_lat:.6f},{b_lon:.6f}",
        "title": name,
        "content": name,
        "coord_type": "bd09ll",
        "output": "html",
        "src": "gridproof",
    }
    return {
        "amap": f"{AMAP_MARKER}?{urlencode(amap)}",
        "baidu": f"{BAIDU_MARKER}?{urlencode(baidu)}",
    }


def address_hints(
    session: Session, issues: Sequence[Issue | Row[Any]], *, english: bool = False
) -> dict[int, str | None]:
    """Per issue: its address; else the nearest other issue's address within the radius, with
    its distance ("距 XX 约 120 m"); else its grid cell's name; else None. One query a page."""
    hints: dict[int, str | None] = {}
    lost = []
    for issue in issues:
        if issue.address:
            hints[issue.id or 0] = issue.address
        else:
            lost.append(issue)
    known = _addresses_near(session, lost)
    for issue in lost:
        hints[issue.id or 0] = _hint(issue, known, english)
    return hints


def _box(lat: float, lon: float) -> tuple[float, float]:
    d_lat = ADDRESS_HINT_RADIUS_M / METRES_PER_DEGREE
    return d_lat, d_lat / max(math.cos(math.radians(lat)), 1e-6)


def _addresses_near(session: Session, issues: Sequence[Issue | Row[Any]]) -> list[Any]:
    if not issues:
        return []
    boxes = []
    for issue in issues:
        d_lat, d_lon = _box(issue.lat, issue.lon)
        boxes.append(
            and_(
                col(Issue.lat).between(issue.lat - d_lat, issue.lat + d_lat),
                col(Issue.lon).between(issue.lon - d_lon, issue.lon + d_lon),
            )
        )
    query = select_columns(col(Issue.id), col(Issue.lat), col(Issue.lon), col(Issue.address))
    query = query.where(col(Issue.address).is_not(None), col(Issue.address) != "", or_(*boxes))
    return list(session.connection().execute(query).all())


def _hint(issue: Issue | Row[Any], known: list[Any], english: bool) -> str | None:
    near = [
        (distance_m(issue.lat, issue.lon, row.lat, row.lon), row.id, row.address)
        for row in known
        if row.id != issue.id
    ]
    near = [n for n in near if n[0] <= ADDRESS_HINT_RADIUS_M]
    if near:
        metres, _, address = min(near)
        if english:
            return f"about {length(metres)} from {address}"
        return f"距 {address} 约 {length(metres)}"
    if issue.grid_cell_name:
        name = issue.grid_cell_name
        return f"in grid cell {name}" if english else f"位于网格 {name}"
    return None
