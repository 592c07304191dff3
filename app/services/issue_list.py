"""The issue list and change feed: filters and an opaque keyset cursor over (change_seq, id)."""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, tuple_
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
# Past every id (ids are 32-bit): a position after every issue with the same change_seq.
_AFTER_ALL_IDS = MAX_ID
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


@dataclass(frozen=True)
class FeedPosition:
    """Where a cursor points: after (change_seq, id), or (legacy) after (updated_at, id)."""

    change_seq: int | None = None
    issue_id: int = 0
    updated_at: datetime | None = None


def decode_cursor(cursor: str) -> FeedPosition:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
        if isinstance(value, list) and len(value) == 3 and value[0] == "c":
            _, change_seq, issue_id = value
            if _whole(change_seq, _MAX_SEQ) and _whole(issue_id, MAX_ID):
                return FeedPosition(change_seq=change_seq, issue_id=issue_id)
            raise ValueError
        # Cursors handed out before the feed was ordered by change: [updated_at, id].
        at, issue_id = value
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not _whole(issue_id, MAX_ID):
            raise ValueError
        return FeedPosition(issue_id=issue_id, updated_at=moment)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationFailed("cursor is not one this server handed out", field="cursor") from None


def _whole(value: object, largest: int) -> bool:
    """A JSON integer (not a bool) that a column can hold."""
    return type(value) is int and 0 <= value <= largest


def _resolve_legacy(session: Session, position: FeedPosition) -> tuple[int, int]:
    """The change position of a legacy (updated_at, id) cursor.

    The migration numbered the issues in their old (updated_at, id) order, and a later change
    moves an issue past the old positions, so the issues at or before the old position are
    exactly those numbered up to the largest number found there.
    """
    assert position.updated_at is not None
    at, issue_id = position.updated_at, position.issue_id
    seq = session.exec(
        select(func.max(Issue.change_seq)).where(
            or_(
                col(Issue.updated_at) < at,
                and_(col(Issue.updated_at) == at, col(Issue.id) <= issue_id),
            )
        )
    ).one()
    return (seq or 0), _AFTER_ALL_IDS if seq else 0


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
) -> tuple[list[IssueRow], str, bool]:
    """One page of the change feed: (issues, cursor after the last one, whether more follow).

    Ordered by change_seq (then id, for rows loaded around the services with 0): every write
    moves the issue to the end, and numbers become visible in commit order, so a client that
    follows the cursor sees every issue at its latest version (see services/changes.py).
    """
    seq, issue_id = 0, 0
    if cursor:
        position = decode_cursor(cursor)
        if position.change_seq is None:
            seq, issue_id = _resolve_legacy(session, position)
        else:
            seq, issue_id = position.change_seq, position.issue_id
    query = filtered(session, user, filters, now)
    if cursor:
        query = query.where(tuple_(col(Issue.change_seq), col(Issue.id)) > tuple_(seq, issue_id))
    query = query.order_by(col(Issue.change_seq), col(Issue.id)).limit(limit + 1)
    # Plain rows, not ORM objects: a page is only read, and loading 50 issues as objects cost
    # a tenth of the answer's time.
    rows = list(session.connection().execute(query.with_only_columns(*ISSUE_COLUMNS)).all())
    page, has_more = rows[:limit], len(rows) > limit
    if page:
        seq, issue_id = page[-1].change_seq, page[-1].id or 0
    return page, encode_cursor(seq, issue_id), has_more
