"""The compact list (`GET /api/v1/issues?view=compact`): what a dashboard's list and map show.

Built from the list's own rows plus one narrow query for the photos' ids, kinds and flags and
one for the units' codes: no photo records, no names, no allowed actions (which need the
viewer's scope and the photos' uploaders), and a smaller model to validate and serialise.
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Row, bindparam
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from app.models import OrgUnit, Photo
from app.models.geo import Crs
from app.models.issue import IssueCompact, is_overdue
from app.models.photo import PhotoKind
from app.services.present import _point  # the one rounding of a point in a CRS

_PHOTO_FLAGS = (
    select_columns(col(Photo.issue_id), col(Photo.id), col(Photo.kind), col(Photo.flags))
    .where(col(Photo.issue_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Photo.id))
)
_UNIT_CODES = select_columns(col(OrgUnit.id), col(OrgUnit.code)).where(
    col(OrgUnit.id).in_(bindparam("ids", expanding=True))
)
_COMPACT = TypeAdapter(list[IssueCompact])


def issues_compact(
    session: Session, rows: Sequence[Row[Any]], now: datetime, crs: Crs = Crs.WGS84
) -> list[IssueCompact]:
    """The page's rows (from issue_list.list_issues) as compact answers, in their order."""
    connection = session.connection()
    photos: dict[int, list[Any]] = defaultdict(list)
    for photo in connection.execute(_PHOTO_FLAGS, {"ids": [r.id for r in rows]}).all():
        photos[photo.issue_id].append(photo)
    unit_ids = list({r.org_unit_id for r in rows})
    units: dict[Any, str] = {r[0]: r[1] for r in connection.execute(_UNIT_CODES, {"ids": unit_ids})}
    return _COMPACT.validate_python([_compact(r, photos[r.id], units, now, crs) for r in rows])


def _compact(
    row: Row[Any], photos: list[Any], units: dict[Any, str], now: datetime, crs: Crs
) -> dict[str, Any]:
    lat, lon = _point(row.lat, row.lon, crs)
    before = next((p for p in photos if p.kind == PhotoKind.BEFORE), None)
    return {
        "id": row.id,
        "code": row.code,
        "category": row.category_code,
        "status": row.status,
        "lat": lat,
        "lon": lon,
        "org_unit": units[row.org_unit_id],
        "grid_cell": (
            {"code": row.grid_cell_code, "name": row.grid_cell_name} if row.grid_cell_code else None
        ),
        "outside_grid": row.outside_grid,
        "reported_at": row.reported_at,
        "deadline": row.deadline_at,
        "overdue": is_overdue(row, now),
        "rework_count": row.rework_count,
        "source": row.source,
        "version": row.version,
        "updated_at": row.updated_at,
        "photo_count": len(photos),
        "thumb": f"/api/v1/photos/{before.id}/thumb" if before else None,
        "flags": sorted({flag for p in photos for flag in p.flags}),
        "crs": crs,
    }
