"""The grid in use: the routing index (属地), where a new issue lies, and the cells' answers.

The index is an STRtree of the current cells' polygons, built once per process and grid
revision (the token of the latest import) and refreshed by an import. Every lookup reads the
token (one indexed query), so an import by the CLI or another server process is seen at once.
"""

import threading
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import shape
from sqlalchemy import func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.models import GridCell, GridImport, Issue, OrgUnit, User
from app.models.geo import Crs
from app.models.grid import LEVEL_RANK, GridCellPublic, GridLevel
from app.services.geo import from_wgs84
from app.services.issues import OPEN_STATUSES
from app.services.permissions import user_org, visible_issues


@dataclass(frozen=True)
class LocatedCell:
    code: str
    name: str
    level: GridLevel
    org_unit_id: int


class GridIndex:
    """Point-in-polygon over the current cells: the finest cell containing a point."""

    def __init__(self, token: str, cells: list[LocatedCell], polygons: list[Any], root: int):
        self.token = token
        self.cells = cells
        self.tree = shapely.STRtree(polygons)
        # Where a point in no cell goes: the top of the org tree above the grid (指挥中心).
        self.root_unit_id = root

    def locate(self, lat: float, lon: float) -> LocatedCell | None:
        hits = self.tree.query(shapely.Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        # On a shared edge both cells contain the point: the finest level wins, then the
        # smallest code, so the same point always lands in the same cell.
        found = (self.cells[i] for i in hits.tolist())
        return min(found, key=lambda c: (-LEVEL_RANK[c.level], c.code))


_indexes: dict[str, GridIndex] = {}
_lock = threading.Lock()


def _current() -> Any:
    return col(GridCell.retired_at).is_(None)


# Built once: building the statement per report cost more than running it.
_LATEST_TOKEN = select_columns(col(GridImport.token)).order_by(col(GridImport.id).desc()).limit(1)


def _token(session: Session) -> str | None:
    token: str | None = session.connection().execute(_LATEST_TOKEN).scalar()
    return token


def _key(session: Session) -> str:
    return session.get_bind().engine.url.render_as_string(hide_password=False)


def index_for(session: Session) -> GridIndex | None:
    """The routing index of the database's current grid; None when no grid was imported."""
    token = _token(session)
    if token is None:
        return None
    cached = _indexes.get(_key(session))
    if cached is not None and cached.token == token:
        return cached
    return refresh_index(session)


# Plain rows, no ORM objects: the index of 10,000 cells is built in a fraction of a second.
_CURRENT_CELLS = (
    select_columns(
        col(GridCell.code),
        col(GridCell.name),
        col(GridCell.level),
        col(GridCell.org_unit_id),
        col(GridCell.geometry),
        col(OrgUnit.path),
    )
    .join(OrgUnit, col(OrgUnit.id) == col(GridCell.org_unit_id))
    .where(col(GridCell.retired_at).is_(None))
    .order_by(col(GridCell.code))
)


def refresh_index(session: Session) -> GridIndex | None:
    """Build the index from the current cells (after an import, or for a new revision)."""
    token = _token(session)
    if token is None:
        return None
    rows = session.connection().execute(_CURRENT_CELLS).all()
    cells = [LocatedCell(r.code, r.name, GridLevel(r.level), r.org_unit_id) for r in rows]
    polygons = [shape(r.geometry) for r in rows]
    coarsest = min(rows, key=lambda r: (LEVEL_RANK[GridLevel(r.level)], r.code), default=None)
    root = int(coarsest.path.strip("/").split("/")[0]) if coarsest else 0
    index = GridIndex(token, cells, polygons, root)
    with _lock:
        _indexes[_key(session)] = index
    return index


def locate(session: Session, lat: float, lon: float) -> LocatedCell | None:
    """The finest current cell containing the WGS-84 point, or None (no grid, or outside)."""
    index = index_for(session)
    return index.locate(lat, lon) if index else None


def placement(
    session: Session, lat: float, lon: float, reporter_unit_id: int, *, route: bool = True
) -> dict[str, Any]:
    """The fields of a new issue that say where it lies and which unit is responsible.

    Without a grid: the reporter's unit, as before grids existed. In a cell: the cell's unit
    (属地), or the reporter's when `route` is false (fixed on the spot). In no cell: flagged
    outside_grid and sent to the top of the org tree (the command centre's queue)."""
    index = index_for(session)
    if index is None:
        return {"org_unit_id": reporter_unit_id}
    cell = index.locate(lat, lon)
    if cell is None:
        unit = index.root_unit_id if route else reporter_unit_id
        return {"org_unit_id": unit, "outside_grid": True}
    return {
        "org_unit_id": cell.org_unit_id if route else reporter_unit_id,
        "grid_cell_code": cell.code,
        "grid_cell_name": cell.name,
    }


def _cells_in_scope(session: Session, user: User) -> list[Any]:
    """The current cells whose unit is the caller's or below, with unit code and worker."""
    path = user_org(session, user).path
    return list(
        session.exec(
            select(GridCell, OrgUnit.code, User.username)
            .join(OrgUnit, col(OrgUnit.id) == col(GridCell.org_unit_id))
            .outerjoin(User, col(User.id) == col(GridCell.worker_id))
            .where(_current(), col(OrgUnit.path).startswith(path))
            .order_by(col(GridCell.code))
        ).all()
    )


def _public(cell: GridCell, unit: str, worker: str | None) -> GridCellPublic:
    return GridCellPublic(
        code=cell.code,
        name=cell.name,
        level=GridLevel(cell.level),
        parent=cell.parent_code,
        org_unit=unit,
        worker=worker,
        version=cell.version,
        valid_from=cell.valid_from,
        bbox=[cell.min_lon, cell.min_lat, cell.max_lon, cell.max_lat],
    )


def list_cells(session: Session, user: User) -> list[GridCellPublic]:
    return [_public(*row) for row in _cells_in_scope(session, user)]


def open_issues_by_cell(session: Session, user: User) -> dict[str, int]:
    """Open issues the caller may see, counted by the cell they were routed to."""

    query = (
        select(Issue.grid_cell_code, func.count())
        .where(col(Issue.grid_cell_code).is_not(None), col(Issue.status).in_(OPEN_STATUSES))
        .where(visible_issues(session, user))
        .group_by(col(Issue.grid_cell_code))
    )
    return {code: count for code, count in session.exec(query).all() if code}


def _converted(geometry: dict[str, Any], crs: Crs) -> dict[str, Any]:
    if crs == Crs.WGS84:
        return geometry

    def ring(points: list[list[float]]) -> list[list[float]]:
        return [[round(v, 7) for v in reversed(from_wgs84(lat, lon, crs))] for lon, lat in points]

    single = geometry["type"] == "Polygon"
    polygons = [geometry["coordinates"]] if single else geometry["coordinates"]
    converted = [[ring(r) for r in polygon] for polygon in polygons]
    coordinates = converted[0] if single else converted
    return {"type": geometry["type"], "coordinates": coordinates}


def feature_collection(session: Session, user: User, crs: Crs = Crs.WGS84) -> dict[str, Any]:
    """The caller's cells as RFC 7946 features, with their open issues for shading a map."""
    counts = open_issues_by_cell(session, user)
    features = []
    for cell, unit, worker in _cells_in_scope(session, user):
        properties = _public(cell, unit, worker).model_dump(mode="json", exclude={"bbox"})
        properties["open_issues"] = counts.get(cell.code, 0)
        features.append(
            {
                "type": "Feature",
                "id": cell.code,
                "geometry": _converted(cell.geometry, crs),
                "properties": properties,
            }
        )
    return {"type": "FeatureCollection", "coordinate_system": crs.value, "features": features}
