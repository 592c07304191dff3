"""GeoJSON grids for the tests, over the zone of tests/factories.py (D, A, B, A1, A1G, B1).

Offices A (west) and B (east) meet at lon 113.78; cells A1G and B1G share that edge.
"""

import copy
import json
from typing import Any

EDGE_LON = 113.78
# Points (lat, lon) and where they land.
IN_A1G = (34.755, 113.775)
IN_B1G = (34.755, 113.785)
ON_SHARED_EDGE = (34.755, EDGE_LON)
IN_A1_ONLY = (34.745, 113.765)  # community A1, in no 网格
PARIS = (48.8566, 2.3522)


def square(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(
    code: str, name: str, level: str, parent: str | None, unit: str, geometry: dict[str, Any]
) -> dict[str, Any]:
    properties = {"code": code, "name": name, "level": level, "parent": parent, "org_unit": unit}
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def zone_grid() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            feature("D", "经开区", "区", None, "D", square(113.70, 34.70, 113.86, 34.80)),
            feature(
                "A", "祥云办事处", "街道·办事处", "D", "A", square(113.70, 34.70, 113.78, 34.80)
            ),
            feature(
                "B", "九龙办事处", "街道·办事处", "D", "B", square(113.78, 34.70, 113.86, 34.80)
            ),
            feature("A1", "远大社区", "社区", "A", "A1", square(113.76, 34.74, 113.78, 34.77)),
            feature("B1", "毛庄社区", "社区", "B", "B1", square(113.78, 34.74, 113.80, 34.77)),
            feature(
                "A1G", "远大第一网格", "网格", "A1", "A1G", square(113.77, 34.75, 113.78, 34.76)
            ),
            feature(
                "B1G", "毛庄第一网格", "网格", "B1", "B1", square(113.78, 34.75, 113.79, 34.76)
            ),
        ],
    }


def dumps(collection: dict[str, Any]) -> bytes:
    return json.dumps(collection, ensure_ascii=False).encode()


def changed_grid() -> dict[str, Any]:
    """B1G renamed and grown north; community B1 no longer in the file."""
    grid = copy.deepcopy(zone_grid())
    features = [f for f in grid["features"] if f["properties"]["code"] != "B1"]
    for f in features:
        if f["properties"]["code"] == "B1G":
            f["properties"]["name"] = "毛庄网格（调整后）"
            f["properties"]["parent"] = "B"
            f["geometry"] = square(113.78, 34.75, 113.79, 34.765)
    grid["features"] = features
    return grid


BOWTIE = {
    "type": "Polygon",
    "coordinates": [
        [[113.7, 34.7], [113.71, 34.71], [113.71, 34.7], [113.7, 34.71], [113.7, 34.7]]
    ],
}


def _with(index: int, **changes: Any) -> bytes:
    grid = zone_grid()
    target = grid["features"][index]
    for key, value in changes.items():
        if key == "geometry":
            target["geometry"] = value
        else:
            target["properties"][key] = value
    return dumps(grid)


def _open_ring() -> bytes:
    grid = zone_grid()
    ring = grid["features"][5]["geometry"]["coordinates"][0]
    ring[-1] = [113.771, 34.75]
    return dumps(grid)


def _overlapping() -> bytes:
    grid = zone_grid()
    grid["features"][6]["geometry"] = square(113.775, 34.75, 113.79, 34.76)  # into A1G
    return dumps(grid)


# (what is wrong, file bytes, the feature index named (None: the file), a word of the message)
REFUSED: list[tuple[str, bytes, int | None, str]] = [
    ("not_json", b"PK\x03\x04 not json", None, "GeoJSON"),
    ("not_a_collection", b'{"type": "Feature"}', None, "FeatureCollection"),
    ("no_features", b'{"type": "FeatureCollection", "features": []}', None, "没有任何要素"),
    ("self_intersection", _with(5, geometry=BOWTIE), 5, "自相交"),
    ("ring_not_closed", _open_ring(), 5, "环未闭合"),
    ("out_of_range", _with(6, geometry=square(113.78, 34.75, 193.79, 34.76)), 6, "超出范围"),
    ("duplicate_code", _with(6, code="A1G"), 6, "code 重复"),
    ("unknown_unit", _with(4, org_unit="NOPE"), 4, "未知的组织单位"),
    ("unknown_parent", _with(3, parent="NOPE"), 3, "未知的上级网格"),
    ("unknown_level", _with(3, level="村"), 3, "level"),
    ("overlap", _overlapping(), 6, "重叠"),
]
