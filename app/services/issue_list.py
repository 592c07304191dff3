"""The issue list and change feed: filters and an opaque keyset cursor over (change_seq, id)."""

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, or_, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.errors import ValidationFailed
from app.models import Issue, User
from app.models.base import MAX_ID
from app.models.issue import IssueStatus
from app.services import orgs
from app.services.permissions import visible_issues

# An issue read as a plain row (every column of Issue, by the same names).
IssueRow = Row[Any]
ISSUE_COLUMNS = list(sa_inspect(Issue).columns)

MAX_LIMIT = 200
MAX_GEOJSON_LIMIT = 5000
_MAX_SEQ = 2**63 - 1


@dataclass
class IssueFilters:
    status: list[IssueStatus] = field(default_factory=list)
    category: str | None = None
    org_unit: str | None = None
    overdue: bool | None = None
    bbox: str | None = None
    updated_since: datetime | None = None
    q: str | None = None


def encode_cursor(change_seq: int, issue_id: int) -> str:
    raw = json.dumps(["c", change_seq, issue_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The (change_seq, issue id) a cursor of `encode_cursor` points after."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
        if isinstance(value, list) and len(value) == 3 and value[0] == "c":
            _, change_seq, issue_id = value
            if _whole(change_seq, _MAX_SEQ) and _whole(issue_id, MAX_ID):
                return change_seq, issue_id
        raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationFailed("cursor is not one this server handed out", field="cursor") from None


def _whole(value: object, largest: int) -> bool:
    """A JSON integer (not a bool) that a column can hold."""
    return type(value) is int and 0 <= value <= largest


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in text.split(","))
    except ValueError:
        raise ValidationFailed("bbox is minLon,minLat,maxLon,maxLat", field="bbox") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ValidationFailed("bbox is out of range or inverted", field="bbox")
    return min_lon, min_lat, max_lon, max_lat


def filtered(
    session: Session, user: User, filters: IssueFilters, now: datetime
) -> SelectOfScalar[Issue]:
    """The issues this user may see, narrowed by the filters (unordered)."""
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
    return query


def list_issues(
    session: Session,
    user: User,
    filters: IssueFilters,
    now: datetime,
    limit: int = 50,
    cursor: str | None = None,
    columns: Sequence[Any] = ISSUE_COLUMNS,
) -> tuple[list[IssueRow], str, bool]:
    """One page of the change feed: (issues, cursor after the last one, whether more follow).

    Ordered by change_seq (then id, for rows loaded around the services with 0): every write
    moves the issue to the end, and numbers become visible in commit order, so a client that
    follows the cursor sees every issue at its latest version (see services/changes.py).
    `columns`: Issue's (the default), or more read in the same query (issue_compact.py).
    """
    seq, issue_id = decode_cursor(cursor) if cursor else (0, 0)
    query = filtered(session, user, filters, now)
    if cursor:
        query = query.where(tuple_(col(Issue.change_seq), col(Issue.id)) > tuple_(seq, issue_id))
    query = query.order_by(col(Issue.change_seq), col(Issue.id)).limit(limit + 1)
    # Plain rows, not ORM objects: a page is only read, and loading 50 issues as objects cost
    # a tenth of the answer's time.
    rows = list(session.connection().execute(query.with_only_columns(*columns)).all())
    page, has_more = rows[:limit], len(rows) > limit
    if page:
        seq, issue_id = page[-1].change_seq, page[-1].id or 0
    return page, encode_cursor(seq, issue_id), has_more
