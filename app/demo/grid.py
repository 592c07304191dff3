"""The demo's grid: a generated but plausible 经开区 of 5 offices, 36 communities, 144 cells.

A 12 × 12 lattice of 网格 over the demo zone, corners jittered (shared by neighbours, so
cells meet edge to edge), grouped 2 × 2 into communities and by columns into offices; each
level is the union of the one below. The demo's own communities and grid units are the first
of their office; the others are added as org units. Generated from a fixed seed: loading it
again changes nothing.
"""

import json
import random
from typing import Any

import shapely
from shapely.geometry import mapping
from sqlalchemy import update
from sqlmodel import Session, col, select

from app.models import Issue
from app.services import changes, grid, grid_import, orgs

WEST, SOUTH, EAST, NORTH = 113.725, 34.715, 113.835, 34.785
SIDE = 12  # cells per side
BLOCK = 2  # cells per community side
# The office of each column of communities (west to east).
OFFICE_COLUMNS = ["XY", "XY", "JL", "JH", "CH", "MH"]
OFFICE_NAMES = {"XY": "祥云", "JL": "九龙", "JH": "京航", "CH": "潮河", "MH": "明湖"}
# The communities and grid units the demo already has: the first of their office.
KNOWN_COMMUNITIES = {
    "XY": ("XY-YD", "远大社区"),
    "JL": ("JL-MZ", "毛庄社区"),
    "JH": ("JH-ZY", "中烟社区"),
    "CH": ("CH-HD", "河东社区"),
}
# (community, cell number): the demo's grid unit and its grid worker.
KNOWN_GRIDS = {
    ("XY-YD", 1): ("XY-YD-01", "wang"),
    ("XY-YD", 2): ("XY-YD-02", None),
    ("JL-MZ", 1): ("JL-MZ-01", "li"),
    ("JH-ZY", 1): ("JH-ZY-01", "zhao"),
}
COMMUNITY_WORDS = [
    "远大",
    "毛庄",
    "中烟",
    "河东",
    "老庄",
    "桥南",
    "滨河",
    "国基",
    "航海",
    "龙飞",
    "锦绣",
    "绿博",
    "双湖",
    "杨湾",
    "新城",
    "文锦",
    "朝阳",
    "贾庄",
    "前程",
    "金岱",
    "东赵",
    "曹古",
    "南曹",
    "大孟",
    "小李",
    "冯庄",
    "刘庄",
    "王庄",
    "陈庄",
    "朱庄",
    "马寨",
    "青年",
    "瑞锦",
    "凤栖",
    "华夏",
    "明德",
]


def _corners(rng: random.Random) -> list[list[tuple[float, float]]]:
    step_x, step_y = (EAST - WEST) / SIDE, (NORTH - SOUTH) / SIDE
    rows = []
    for i in range(SIDE + 1):
        row = []
        for j in range(SIDE + 1):
            inner = 0 < i < SIDE and 0 < j < SIDE
            dx = rng.uniform(-0.3, 0.3) * step_x if inner else 0.0
            dy = rng.uniform(-0.3, 0.3) * step_y if inner else 0.0
            row.append((round(WEST + j * step_x + dx, 6), round(SOUTH + i * step_y + dy, 6)))
        rows.append(row)
    return rows


def _feature(code: str, name: str, level: str, parent: str | None, unit: str, shape: Any) -> Any:
    geometry = json.loads(json.dumps(mapping(shape)))  # tuples → lists
    properties = {"code": code, "name": name, "level": level, "parent": parent, "org_unit": unit}
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def _communities() -> list[tuple[str, str, str]]:
    """(code, name, office) of each community, row by row of community blocks."""
    blocks = SIDE // BLOCK
    numbered: dict[str, int] = {}
    found = []
    for row in range(blocks):
        for column in range(blocks):
            office = OFFICE_COLUMNS[column]
            numbered[office] = numbered.get(office, 0) + 1
            word = COMMUNITY_WORDS[(row * blocks + column) % len(COMMUNITY_WORDS)]
            code, name = f"{office}-C{numbered[office]:02d}", f"{word}社区"
            if numbered[office] == 1 and office in KNOWN_COMMUNITIES:
                code, name = KNOWN_COMMUNITIES[office]
            found.append((code, name, office))
    return found


def demo_grid() -> dict[str, Any]:
    """The FeatureCollection (the same every time)."""
    corners = _corners(random.Random(2026))
    communities = _communities()
    blocks = SIDE // BLOCK
    features: list[Any] = []
    community_shapes: dict[str, list[Any]] = {}
    office_shapes: dict[str, list[Any]] = {}
    for i in range(SIDE):
        for j in range(SIDE):
            ring = [corners[i][j], corners[i][j + 1], corners[i + 1][j + 1], corners[i + 1][j]]
            cell = shapely.Polygon(ring)
            code, community_name, office = communities[(i // BLOCK) * blocks + j // BLOCK]
            number = (i % BLOCK) * BLOCK + j % BLOCK + 1
            unit, worker = KNOWN_GRIDS.get((code, number), (code, None))
            feature = _feature(
                f"{code}-G{number}", f"{community_name}第{number}网格", "网格", code, unit, cell
            )
            if worker:
                feature["properties"]["worker"] = worker
            features.append(feature)
            community_shapes.setdefault(code, []).append(cell)
    for code, name, office in communities:
        shape = shapely.union_all(community_shapes[code])
        office_shapes.setdefault(office, []).append(shape)
        features.append(_feature(code, name, "社区", office, code, shape))
    offices = []
    for office, shapes in office_shapes.items():
        offices.append(shapely.union_all(shapes))
        name = f"{OFFICE_NAMES[office]}办事处"
        features.append(_feature(office, name, "街道·办事处", "JKQ", office, offices[-1]))
    district = shapely.union_all(offices)
    features.append(_feature("JKQ", "经开区", "区", None, "JKQ", district))
    return {"type": "FeatureCollection", "features": features}


def load_demo_grid(session: Session) -> None:
    """Add the communities the demo lacks, import the grid, and place the demo's issues."""
    known = {code for code, _name in KNOWN_COMMUNITIES.values()}
    for code, name, office in _communities():
        if code not in known:
            orgs.add_org(session, code, name, "community", office)
    data = json.dumps(demo_grid(), ensure_ascii=False).encode()
    result = grid_import.import_grid(session, data)
    _place_unplaced_issues(session)
    print(f"Demo grid: {result.added + result.changed + result.unchanged} cells.")


def _place_unplaced_issues(session: Session) -> None:
    """The demo's issues are reported before its grid is loaded (they stay with the units that
    handle them): they get the cell they lie in, so the map shades cells by them."""
    unplaced = session.exec(
        select(Issue).where(col(Issue.grid_cell_code).is_(None), col(Issue.outside_grid).is_(False))
    ).all()
    placed = 0
    for issue in unplaced:
        cell = grid.locate(session, issue.lat, issue.lon)
        if cell is not None:
            session.execute(
                update(Issue)
                .where(col(Issue.id) == issue.id)
                .values(grid_cell_code=cell.code, grid_cell_name=cell.name)
            )
            placed += 1
    if placed:
        changes.bump(session)
    session.commit()
