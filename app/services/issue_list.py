"""The issue list and change feed: filters and an opaque keyset cursor over (change_seq, id)."""

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.errors import ValidationFailed
from app.models import Issue, User
from app.models.base import MAX_ID
from app.models.issue import IssueStatus
from app.services import orgs
from app.services.permissions import visible_issues
from app.services.rows import named_rows

# An issue read as a plain row (every column of Issue, by the same names): a named tuple.
IssueRow = Any
ISSUE_COLUMNS = list(sa_inspect(Issue).columns)

MAX_LIMIT = 200
MAX_GEOJSON_LIMIT = 5000
_MAX_SEQ = 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class IssueFilters:
    status: list[IssueStatus] = field(default_factory=list)
    category: str | None = None
    org_unit: str | None = None
    overdue: bool | None = None
    bbox: str | None = None
    updated_since: datetime | None = None
    q: str | None = None
    # 我的上报: only the issues the caller reported (reported_by=me).
    reported_by_me: bool = False
    # The supervisors' queue of 延期申请: issues with a pending extension request (or without).
    extension_pending: bool | None = None


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
    if filters.reported_by_me:
        query = query.where(Issue.reported_by_id == user.id)
    if filters.extension_pending is not None:
        pending = col(Issue.extension_deadline_at).is_not(None)
        query = query.where(pending if filters.extension_pending else ~pending)
    if filters.q:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", filters.q) + "%"  # the text, literally
        columns = (Issue.description, Issue.code, Issue.address)
        query = query.where(or_(*(col(c).ilike(pattern, escape="\\") for c in columns)))
    return query


def encode_deadline_cursor(deadline: datetime | None, issue_id: int) -> str:
    at = None if deadline is None else (deadline - EPOCH) // timedelta(microseconds=1)
    raw = json.dumps(["d", at, issue_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_deadline_cursor(cursor: str) -> tuple[int | None, int]:
    """The (deadline in µs since the epoch or None, issue id) a deadline cursor points after."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, list) and len(value) == 3 and value[0] == "d":
            _, at, issue_id = value
            if (at is None or _whole(at, _MAX_SEQ)) and _whole(issue_id, MAX_ID):
                return at, issue_id
        raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationFailed("cursor is not one this server handed out", field="cursor") from None


def by_deadline(
    session: Session,
    user: User,
    filters: IssueFilters,
    now: datetime,
    limit: int = 50,
    cursor: str | None = None,
    columns: Sequence[Any] = ISSUE_COLUMNS,
) -> tuple[list[IssueRow], str | None, bool]:
    """One page of the supervisors' queue, nearest deadline first and issues without one last
    (then by id): a keyset over (deadline is null, deadline, id), so pages neither skip nor
    repeat an issue whose deadline stays put."""
    query = filtered(session, user, filters, now)
    deadline, no_deadline = col(Issue.deadline_at), col(Issue.deadline_at).is_(None)
    if cursor:
        at, issue_id = decode_deadline_cursor(cursor)
        if at is None:
            query = query.where(no_deadline, col(Issue.id) > issue_id)
        else:
            moment = EPOCH + timedelta(microseconds=at)
            later = or_(deadline > moment, and_(deadline == moment, col(Issue.id) > issue_id))
            query = query.where(or_(later, no_deadline))
    query = query.order_by(no_deadline, deadline, col(Issue.id)).limit(limit + 1)
    rows = named_rows(session.connection().execute(query.with_only_columns(*columns)))
    page, has_more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    if last is None:
        return page, cursor, has_more
    return page, encode_deadline_cursor(last.deadline_at, last.id), has_more


# A page function of the list: list_issues (the change feed) or by_deadline (the queue).
Pages = Callable[..., tuple[list[IssueRow], str | None, bool]]


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
    # a tenth of the answer's time (named tuples: see services/rows.py).
    rows = named_rows(session.connection().execute(query.with_only_columns(*columns)))
    page, has_more = rows[:limit], len(rows) > limit
    if page:
        seq, issue_id = page[-1].change_seq, page[-1].id or 0
    return page, encode_cursor(seq, issue_id), has_more
