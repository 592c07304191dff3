"""The dashboards' one aggregate query, built once per shape and run with parameters.

Over the issues that matter to the period (each picked through an index, so the cost follows
the period's volume rather than the table's size) joined to their events of the period,
grouped by responsible unit (and category and status). The definitions of the counts are in
services/stats.py.
"""

from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Executable,
    Integer,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    or_,
    union,
)
from sqlalchemy import select as select_columns
from sqlalchemy.sql.util import ClauseAdapter
from sqlmodel import Session, col

from app.db import PLAN_EACH_TIME
from app.models import Category, Issue, IssueEvent, OrgUnit, User
from app.models.base import UTCDateTime
from app.models.issue import IssueStatus
from app.services import orgs
from app.services.issues import OPEN_STATUSES, Action
from app.services.permissions import VISIBLE_TO_CALLER, caller_params

S = IssueStatus
OPEN = tuple(sorted(OPEN_STATUSES))
ENDED_WITHOUT_FIX = (S.REJECTED, S.DUPLICATE)
REPORT_ACTION = "report"
DUE_SOON = timedelta(hours=24)
# An aggregate query's result by column name: a few hundred rows, summed without a Python loop.
Columns = dict[str, tuple[Any, ...]]


# The query's parameters; the statement is built once per shape and reused (see _period_query).
START, END, NOW, CUT, SOON = (
    bindparam(name, type_=UTCDateTime()) for name in ("start", "end", "now", "cut", "soon")
)


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.count().filter(condition)


def _within(column: Any) -> ColumnElement[bool]:
    return and_(column >= START, column < END)


def period_columns(
    session: Session,
    user: User,
    org: OrgUnit | None,
    period: tuple[datetime, datetime],
    now: datetime,
    *,
    by_category_and_status: bool,
    extra: tuple[str, ...] = (),
) -> Columns:
    """Per responsible unit (and category and status, and the `extra` issue columns, e.g.
    source, grid_cell_code): the period's counts and the live ones, of the issues the user may
    see (within `org` when given)."""
    start, end = period
    cut = min(end, now)
    dialect = session.get_bind().dialect.name
    shape = (by_category_and_status, cut < now, bool(org), extra)
    query = _period_query(dialect, *shape)
    values = {"start": start, "end": end, "now": now, "cut": cut}
    values |= caller_params(session, user) | {"org_path": org.path if org else None}
    return columns(session, query, values | {"soon": now + DUE_SOON})


@lru_cache(maxsize=16)
def _period_query(
    dialect: str, by_category_and_status: bool, past: bool, within_org: bool, extra: tuple[str, ...]
) -> Any:
    """The statement, built once per shape: the caller's scope and the rest are parameters."""
    events = _period_events()
    issue = _period_issues(dialect, past, events)
    keys: list[Any] = [issue.c.org_unit_id, *(issue.c[name] for name in extra)]
    if by_category_and_status:
        # With the names the answer shows, so that no other query is needed for them.
        keys += [
            col(OrgUnit.code).label("org_unit"),
            issue.c.category_code.label("category"),
            col(Category.name).label("category_name"),
            col(Category.unit).label("category_unit"),
            issue.c.status,
        ]
    query = (
        select_columns(*keys, *_counts(issue, events))
        .select_from(issue)
        .outerjoin(events, events.c.issue_id == issue.c.id)
        .group_by(*keys)
    )
    if by_category_and_status:
        query = query.join(OrgUnit, col(OrgUnit.id) == issue.c.org_unit_id).join(
            Category, col(Category.code) == issue.c.category_code
        )
    # The caller's scope (and the asked unit), moved from the issues table onto the period's.
    onto_period = ClauseAdapter(issue)
    query = query.where(onto_period.traverse(VISIBLE_TO_CALLER))
    if within_org:
        in_org = orgs.in_subtree_of(Issue.org_unit_id, bindparam("org_path"))
        query = query.where(onto_period.traverse(in_org))
    # Its best plan depends on the period and the table's size (see app/db.py).
    return query.execution_options(**{PLAN_EACH_TIME: True})


def _period_events() -> Any:
    """Per issue, its dispatches, submitted rectifications and failed checks in the period."""
    action = col(IssueEvent.action)
    fixed_on_the_spot = and_(action == REPORT_ACTION, col(IssueEvent.to_status) == S.RECTIFIED)
    submitted = or_(action == Action.SUBMIT_RECTIFICATION, fixed_on_the_spot)
    return (
        select_columns(
            col(IssueEvent.issue_id).label("issue_id"),
            _count_if(action == Action.DISPATCH).label("dispatches"),
            _count_if(submitted).label("submitted"),
            _count_if(action == Action.VERIFY_FAIL).label("failed"),
        )
        .where(
            or_(action.in_([Action.DISPATCH, Action.VERIFY_FAIL]), submitted),
            _within(col(IssueEvent.at)),
        )
        .group_by(col(IssueEvent.issue_id))
        .cte("ev")
    )


def _period_issues(dialect: str, past: bool, events: Any) -> Any:
    """Every issue any count can be true for, each picked through an index."""

    def pick(*conditions: ColumnElement[bool]) -> Any:
        return select_columns(*(col(column) for column in PERIOD_ISSUE_COLUMNS)).where(*conditions)

    relevant = [
        _within(col(Issue.reported_at)),
        _within(col(Issue.closed_at)),
        _within(col(Issue.deadline_at)),
        col(Issue.status).in_(OPEN),
    ]
    if past:
        # The issues with an event in the period, by id; and those overdue at its end but
        # closed since.
        relevant.append(_id_among(dialect, events.c.issue_id))
        relevant.append(and_(col(Issue.closed_at) >= CUT, col(Issue.deadline_at) < CUT))
    else:
        # An event moves its issue's updated_at to the event's time or later (changes.touch),
        # so "changed since the start" holds every issue with an event in the period, and it is
        # one range of an index instead of a lookup per id. (For a past period it would be
        # nearly every issue changed since, and the ids are cheaper.)
        relevant.append(col(Issue.updated_at) >= START)
    if dialect == "postgresql":
        # One pass over the heap for the union of the indexes (a BitmapOr).
        return pick(or_(*relevant)).subquery("p")
    # SQLite scans the whole table for such an OR; a UNION keeps each part on its index. The
    # parts take only the ids (which each index holds), and each issue's row is then read once:
    # a union of whole rows read most of them two or three times (the period's reports, closures
    # and deadlines are mostly the same issues) and sorted them all to drop the repeats.
    ids = union(*(select_columns(col(Issue.id)).where(condition) for condition in relevant))
    return pick(col(Issue.id).in_(ids)).subquery("p")


def _counts(issue: Any, events: Any) -> list[Any]:
    """The counted columns, over the period's issues joined to their events."""
    status, deadline = issue.c.status, issue.c.deadline_at
    closed_at, rectified_at = issue.c.closed_at, issue.c.rectified_at
    counted = status.not_in(ENDED_WITHOUT_FIX)
    due = and_(_within(deadline), counted, or_(deadline <= NOW, closed_at.is_not(None)))
    dispatched = and_(
        events.c.dispatches > 0, counted, or_(rectified_at.is_not(None), deadline <= NOW)
    )
    closed_in_period = _within(closed_at)
    dispatched_now = status == S.DISPATCHED
    in_cell = issue.c.grid_cell_code.is_not(None)
    return [
        _count_if(_within(issue.c.reported_at)).label("reported"),
        _count_if(closed_in_period).label("closed_in_period"),
        func.sum(case((closed_in_period, issue.c.quantity))).label("quantity"),
        func.sum(case((closed_in_period, issue.c.rectified_quantity))).label("rectified_quantity"),
        _count_if(due).label("due"),
        _count_if(and_(due, closed_at < END)).label("closed"),
        _count_if(and_(due, closed_at <= deadline)).label("closed_on_time"),
        _count_if(dispatched).label("dispatched"),
        _count_if(and_(dispatched, rectified_at <= deadline)).label("rectified_on_time"),
        _count_if(or_(due, dispatched)).label("volume"),
        _count_if(and_(deadline < CUT, counted, or_(closed_at.is_(None), closed_at >= CUT))).label(
            "overdue_open"
        ),
        # 漏报: reported by an external system (12345 …) in a grid cell, whose worker missed it.
        _count_if(and_(_within(issue.c.reported_at), issue.c.source.is_not(None), in_cell)).label(
            "missed_reports"
        ),
        _count_if(status.in_(OPEN)).label("open"),
        _count_if(and_(dispatched_now, deadline < NOW)).label("overdue"),
        _count_if(and_(dispatched_now, deadline >= NOW, deadline < SOON)).label("due_within_24h"),
        func.coalesce(func.sum(events.c.submitted), 0).label("rectifications_submitted"),
        func.coalesce(func.sum(events.c.failed), 0).label("verify_fail"),
    ]


PERIOD_ISSUE_COLUMNS = (
    Issue.id,
    Issue.org_unit_id,
    Issue.reported_by_id,
    Issue.category_code,
    Issue.status,
    Issue.reported_at,
    Issue.closed_at,
    Issue.deadline_at,
    Issue.rectified_at,
    Issue.quantity,
    Issue.rectified_quantity,
    Issue.source,
    Issue.grid_cell_code,
)


def _id_among(dialect: str, issue_ids: Any) -> ColumnElement[bool]:
    """Issue.id in a small set of ids, looked up by primary key on every engine."""
    if dialect == "postgresql":
        # `= ANY(array)` makes PostgreSQL probe the primary key once per id (a bitmap index
        # scan beside the others); with `IN (subquery)` it may prefer to read the whole table.
        ids = select_columns(func.array_agg(issue_ids)).scalar_subquery()
        return col(Issue.id) == any_(cast(ids, ARRAY(Integer)))
    return col(Issue.id).in_(select_columns(issue_ids))


class QuantityRow(BaseModel):
    category: str
    name: str
    unit: str
    quantity: float = Field(description="summed over the issues closed in the period")
    rectified_quantity: float = Field(
        description="整改数量: what submit_rectification gave, summed over the same issues"
    )
    issues: int


def quantities(columns: Columns) -> list[QuantityRow]:
    """Per category, the quantities of the issues closed in the period (as reported, and as
    rectified)."""
    issues: dict[str, int] = defaultdict(int)
    amounts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    names: dict[str, tuple[str, str]] = {}
    closed = zip(
        columns["category"],
        columns["category_name"],
        columns["category_unit"],
        columns["closed_in_period"],
        columns["quantity"],
        columns["rectified_quantity"],
        strict=True,
    )
    for category, name, unit, count, quantity, rectified in closed:
        if count:
            issues[category] += count
            amounts[category][0] += quantity or 0.0
            amounts[category][1] += rectified or 0.0
            names[category] = (name, unit)
    return [
        QuantityRow(
            category=code,
            name=names[code][0],
            unit=names[code][1],
            quantity=round(amounts[code][0], 2),
            rectified_quantity=round(amounts[code][1], 2),
            issues=issues[code],
        )
        for code in sorted(issues)
    ]


def columns(session: Session, query: Executable, params: dict[str, Any] | None = None) -> Columns:
    """The result of a Core query (in the session's transaction), column by column."""
    result = session.connection().execute(query, params)
    keys = list(result.keys())
    rows = result.all()
    columns = zip(*rows, strict=True) if rows else [() for _ in keys]
    return dict(zip(keys, columns, strict=True))
