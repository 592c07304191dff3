"""The issue list: filters and an opaque keyset cursor over (updated_at, id)."""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from app.errors import ValidationFailed
from app.models import Issue, User
from app.models.base import MAX_ID
from app.models.issue import IssueStatus
from app.services import orgs
from app.services.permissions import visible_issues

MAX_LIMIT = 200
MAX_GEOJSON_LIMIT = 5000


@dataclass
class IssueFilters:
    status: list[IssueStatus] = field(default_factory=list)
    category: str | None = None
    org_unit: str | None = None
    overdue: bool | None = None
    bbox: str | None = None
    updated_since: datetime | None = None
    q: str | None = None


def encode_cursor(issue: Issue) -> str:
    raw = json.dumps([issue.updated_at.isoformat(), issue.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, issue_id = json.loads(raw)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or type(issue_id) is not int or not 0 < issue_id <= MAX_ID:
            raise ValueError
        return moment, issue_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationFailed("cursor is not one this server handed out", field="cursor") from None


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in text.split(","))
    except ValueError:
        raise ValidationFailed("bbox is minLon,minLat,maxLon,maxLat", field="bbox") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ValidationFailed("bbox is out of range or inverted", field="bbox")
    return min_lon, min_lat, max_lon, max_lat


def list_issues(
    session: Session,
    user: User,
    filters: IssueFilters,
    now: datetime,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Issue], str | None, bool]:
    """One page: (issues, cursor to resume after the last one, whether more follow)."""
    query = select(Issue).where(visible_issues(session, user))
    if filters.status:
        query = query.where(col(Issue.status).in_(filters.status))
    if filters.category:
        query = query.where(Issue.category_code == filters.category)
    if filters.org_unit:
        query = query.where(
            orgs.in_subtree(Issue.org_unit_id, orgs.by_code(session, filters.org_unit))
        )
    if filters.overdue is not None:
        overdue = and_(col(Issue.status) == IssueStatus.DISPATCHED, col(Issue.deadline_at) < now)
        query = query.where(overdue if filters.overdue else ~overdue)
    if filters.bbox:
        min_lon, min_lat, max_lon, max_lat = parse_bbox(filters.bbox)
        query = query.where(
            col(Issue.lon).between(min_lon, max_lon), col(Issue.lat).between(min_lat, max_lat)
        )
    if filters.updated_since:
        query = query.where(col(Issue.updated_at) >= filters.updated_since)
    if filters.q:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", filters.q) + "%"  # the text, literally
        columns = (Issue.description, Issue.code, Issue.address)
        query = query.where(or_(*(col(c).ilike(pattern, escape="\\") for c in columns)))
    if cursor:
        at, issue_id = decode_cursor(cursor)
        query = query.where(
            or_(
                col(Issue.updated_at) > at,
                and_(col(Issue.updated_at) == at, col(Issue.id) > issue_id),
            )
        )
    query = query.order_by(col(Issue.updated_at), col(Issue.id)).limit(limit + 1)
    rows = list(session.exec(query))
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1]) if page else cursor
    return page, next_cursor, has_more
