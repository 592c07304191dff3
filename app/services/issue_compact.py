"""The compact list (`GET /api/v1/issues?view=compact`): what a dashboard's list and map show.

The list's own query also reads each issue's unit code (COMPACT_COLUMNS); one narrow query more
reads the photos' ids, kinds and flags. No photo records, no names, no allowed actions (which
need the viewer's scope and the photos' uploaders), and a smaller model to validate and
serialise: two queries instead of three, and a seventh of the full answer's bytes.
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Row, bindparam
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from app.models import Issue, OrgUnit, Photo, User
from app.models.geo import Crs
from app.models.issue import IssueCompact, IssueCompactPage, is_overdue
from app.models.photo import PhotoKind
from app.services.issue_list import ISSUE_COLUMNS, IssueFilters, Pages, list_issues
from app.services.present import _point  # the one rounding of a point in a CRS
from app.services.rows import named_rows

_PHOTO_FLAGS = (
    select_columns(col(Photo.issue_id), col(Photo.id), col(Photo.kind), col(Photo.flags))
    .where(col(Photo.issue_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Photo.id))
)
_UNIT_CODE = (
    select_columns(col(OrgUnit.code))
    .where(col(OrgUnit.id) == col(Issue.org_unit_id))
    .scalar_subquery()
    .label("org_unit_code")
)
# What issue_list.list_issues reads for a compact page: the issue and its unit's code.
COMPACT_COLUMNS = [*ISSUE_COLUMNS, _UNIT_CODE]
_COMPACT = TypeAdapter(list[IssueCompact])


def compact_page(
    session: Session,
    user: User,
    filters: IssueFilters,
    now: datetime,
    limit: int,
    cursor: str | None,
    crs: Crs = Crs.WGS84,
    pages: Pages = list_issues,
) -> IssueCompactPage:
    """One page of the list (`pages`: list_issues or by_deadline, same filters, order and
    cursor as the full view), compact."""
    rows, next_cursor, has_more = pages(session, user, filters, now, limit, cursor, COMPACT_COLUMNS)
    items = issues_compact(session, rows, now, crs)
    return IssueCompactPage(items=items, next_cursor=next_cursor, has_more=has_more)


def issues_compact(
    session: Session, rows: Sequence[Row[Any]], now: datetime, crs: Crs = Crs.WGS84
) -> list[IssueCompact]:
    """The page's rows (list_issues with COMPACT_COLUMNS) as compact answers, in their order."""
    connection = session.connection()
    photos: dict[int, list[Any]] = defaultdict(list)
    for photo in named_rows(connection.execute(_PHOTO_FLAGS, {"ids": [r.id for r in rows]})):
        photos[photo.issue_id].append(photo)
    return _COMPACT.validate_python([_compact(r, photos[r.id], now, crs) for r in rows])


def _compact(row: Row[Any], photos: list[Any], now: datetime, crs: Crs) -> dict[str, Any]:
    lat, lon = _point(row.lat, row.lon, crs)
    before = next((p for p in photos if p.kind == PhotoKind.BEFORE), None)
    return {
        "id": row.id,
        "code": row.code,
        "category": row.category_code,
        "status": row.status,
        "lat": lat,
        "lon": lon,
        "org_unit": row.org_unit_code,
        "address": row.address,
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
