"""Dashboards: counts, indicators, the composite score and the rankings, by aggregate SQL.

One grouped query answers everything: over the issues that matter to the period (each picked
through an index, so the cost follows the period's volume rather than the table's size) joined
to their events of the period, grouped by responsible unit (and category and status). The few
hundred aggregate rows are rolled up in Python to the scope, to each category, or to the
office / community / grid cell each unit lies under.

The definitions (also in the README, "Dashboards: stats, indicators and rankings"):

- period: [from, to), instants; calendar weeks start on Monday, in the zone's time zone.
- due (应结案): dispatched issues whose deadline falls in the period and whose outcome is known:
  closed, or the deadline has passed. Rejected and duplicate issues are never due.
- closed: due issues closed before the period's end. closed_on_time: closed at or before the
  deadline.
- dispatched (应处置): issues with a `dispatch` event in the period whose outcome is known:
  rectified, or the deadline has passed. rectified_on_time: the (latest, accepted or pending)
  rectification at or before the deadline.
- rectifications_submitted: `submit_rectification` events in the period, plus issues reported
  already fixed (立行立改); verify_fail: `verify_fail` events in the period.
- overdue_open (超期未结): issues past their deadline and not closed at the period's end (or now,
  when that is earlier), whenever they were due.
- volume: the issues that are due or dispatched in the period (each once).
"""

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

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

from app.config import Settings
from app.db import PLAN_EACH_TIME
from app.errors import Forbidden, ValidationFailed
from app.models import Category, Issue, IssueEvent, OrgUnit, User
from app.models.base import UTCDateTime
from app.models.issue import IssueStatus
from app.services import orgs
from app.services.issues import Action
from app.services.moments import MAX_YEAR, MIN_YEAR, check_day
from app.services.permissions import VISIBLE_TO_CALLER, caller_params, user_org

S = IssueStatus
OPEN = (S.REPORTED, S.ACCEPTED, S.DISPATCHED, S.RECTIFIED)
ENDED_WITHOUT_FIX = (S.REJECTED, S.DUPLICATE)
REPORT_ACTION = "report"
DUE_SOON = timedelta(hours=24)
# Grades by score: the first threshold reached.
GRADES = (("A", 90.0), ("B", 75.0), ("C", 60.0), ("D", 40.0))
# An aggregate query's result by column name: a few hundred rows, summed without a Python loop.
Columns = dict[str, tuple[Any, ...]]


class PeriodKind(StrEnum):
    WEEK = "week"
    MONTH = "month"


class RankedKind(StrEnum):
    OFFICE = "office"
    COMMUNITY = "community"
    GRID = "grid"


# --- Periods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The instants [start, end)."""

    start: datetime
    end: datetime


def calendar_period(kind: PeriodKind, day: date, zone: ZoneInfo) -> Period:
    """The calendar week (Monday start) or month that contains the zone's local `day`."""
    if kind == PeriodKind.WEEK:
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return Period(datetime.combine(first, time(), zone), datetime.combine(after, time(), zone))


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# "…T10:00+08:00" sent unencoded in a query string arrives as "…T10:00 08:00".
_LOST_PLUS = re.compile(r"(T\S+) (\d{2}:?\d{2})$")


def parse_moment(text: str, zone: ZoneInfo, name: str, *, end: bool) -> datetime:
    """A date (the zone's local day, included whole as an end) or an ISO 8601 datetime."""
    text = text.strip()
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            moment = datetime.combine(day, time(), zone)
        else:
            moment = datetime.fromisoformat(_LOST_PLUS.sub(r"\1+\2", text))
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"{name}: {text!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 datetime",
            field=name,
        ) from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValidationFailed(f"{name}: {text!r} is out of range", field=name)
    # A wall time without offset is the zone's local time.
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def resolve_period(
    from_text: str | None, to_text: str | None, zone: ZoneInfo, now: datetime
) -> Period:
    """The asked period; by default the current week, or the week that `to` ends in."""
    if to_text:
        end = parse_moment(to_text, zone, "to", end=True)
    else:
        end = calendar_period(PeriodKind.WEEK, now.astimezone(zone).date(), zone).end
    if from_text:
        start = parse_moment(from_text, zone, "from", end=False)
    else:
        last_day = (end - timedelta(microseconds=1)).astimezone(zone).date()
        start = calendar_period(PeriodKind.WEEK, last_day, zone).start
    if start >= end:
        raise ValidationFailed(
            f"from ({start.isoformat()}) must be before to ({end.isoformat()})", field="from"
        )
    return Period(start.astimezone(zone), end.astimezone(zone))


# --- Indicators and the score ----------------------------------------------------------------


@dataclass
class Tally:
    """The counts behind the indicators; they add up from units to any unit above them."""

    due: int = 0
    closed: int = 0
    closed_on_time: int = 0
    dispatched: int = 0
    rectified_on_time: int = 0
    rectifications_submitted: int = 0
    verify_fail: int = 0
    overdue_open: int = 0
    volume: int = 0

    @classmethod
    def of(cls, columns: Columns, rows: Iterable[int] | None = None) -> "Tally":
        """The sums of the same-named aggregate columns (over the given rows, else all)."""
        if rows is None:
            return cls(*(int(sum(columns[f.name])) for f in fields(cls)))
        picked = list(rows)
        return cls(*(int(sum(columns[f.name][i] for i in picked)) for f in fields(cls)))


class Indicators(BaseModel):
    closure_rate: float | None = Field(description="结案率: closed / due")
    on_time_closure_rate: float | None = Field(description="按期结案率: closed_on_time / due")
    on_time_rectification_rate: float | None = Field(
        description="按期处置率: rectified_on_time / dispatched"
    )
    rework_rate: float | None = Field(description="返工率: verify_fail / rectifications_submitted")
    overdue_open: int = Field(description="超期未结")
    due: int
    closed: int
    closed_on_time: int
    dispatched: int
    rectified_on_time: int
    rectifications_submitted: int
    verify_fail: int


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def indicators(tally: Tally) -> Indicators:
    return Indicators(
        closure_rate=_rounded(_ratio(tally.closed, tally.due)),
        on_time_closure_rate=_rounded(_ratio(tally.closed_on_time, tally.due)),
        on_time_rectification_rate=_rounded(_ratio(tally.rectified_on_time, tally.dispatched)),
        rework_rate=_rounded(_ratio(tally.verify_fail, tally.rectifications_submitted)),
        overdue_open=tally.overdue_open,
        due=tally.due,
        closed=tally.closed,
        closed_on_time=tally.closed_on_time,
        dispatched=tally.dispatched,
        rectified_on_time=tally.rectified_on_time,
        rectifications_submitted=tally.rectifications_submitted,
        verify_fail=tally.verify_fail,
    )


def volume_band(volume: int, busiest: int) -> float:
    """The volume compared with the busiest unit ranked beside it, in quarters."""
    if volume <= 0 or busiest <= 0:
        return 0.0
    share = volume / busiest
    if share >= 0.75:
        return 1.0
    if share >= 0.5:
        return 0.75
    if share >= 0.25:
        return 0.5
    return 0.25


def score(tally: Tally, band: float, settings: Settings) -> float | None:
    """0–100, the weighted mean of the parts that are defined; None without work."""
    if tally.volume == 0:
        return None
    rework = _ratio(tally.verify_fail, tally.rectifications_submitted)
    parts = [
        (settings.score_weight_closure, _ratio(tally.closed, tally.due)),
        (
            settings.score_weight_on_time_rectification,
            _ratio(tally.rectified_on_time, tally.dispatched),
        ),
        (settings.score_weight_rework, None if rework is None else max(0.0, 1.0 - rework)),
        (settings.score_weight_volume, band),
    ]
    defined = [(weight, value) for weight, value in parts if value is not None]
    total = sum(weight for weight, _ in defined)
    if total <= 0:
        return None
    return round(100 * sum(weight * value for weight, value in defined) / total, 1)


def grade(value: float | None) -> str | None:
    if value is None:
        return None
    return next((letter for letter, floor in GRADES if value >= floor), "E")


# --- The aggregate query --------------------------------------------------------------------

# The query's parameters; the statement is built once per shape and reused (see _period_query).
START, END, NOW, CUT, SOON = (
    bindparam(name, type_=UTCDateTime()) for name in ("start", "end", "now", "cut", "soon")
)


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.count().filter(condition)


def _within(column: Any) -> ColumnElement[bool]:
    return and_(column >= START, column < END)


def _period_columns(
    session: Session,
    user: User,
    org: OrgUnit | None,
    period: Period,
    now: datetime,
    *,
    by_category_and_status: bool,
) -> Columns:
    """Per responsible unit (and category and status): the period's counts and the live ones,
    of the issues the user may see (within `org` when given)."""
    cut = min(period.end, now)
    dialect = session.get_bind().dialect.name
    query = _period_query(dialect, by_category_and_status, past=cut < now, within_org=bool(org))
    values = {"start": period.start, "end": period.end, "now": now, "cut": cut}
    values |= caller_params(session, user) | {"org_path": org.path if org else None}
    return _columns(session, query, values | {"soon": now + DUE_SOON})


@lru_cache(maxsize=16)
def _period_query(dialect: str, by_category_and_status: bool, past: bool, within_org: bool) -> Any:
    """The statement, built once per shape: the caller's scope and the rest are parameters."""
    action = col(IssueEvent.action)
    fixed_on_the_spot = and_(action == REPORT_ACTION, col(IssueEvent.to_status) == S.RECTIFIED)
    submitted = or_(action == Action.SUBMIT_RECTIFICATION, fixed_on_the_spot)
    events = (
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

    def pick(*conditions: ColumnElement[bool]) -> Any:
        return select_columns(*(col(column) for column in PERIOD_ISSUE_COLUMNS)).where(*conditions)

    # Every issue any count below can be true for; each condition has its index.
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
        # An event moves its issue's updated_at to the event's time or later (issues._touch),
        # so "changed since the start" holds every issue with an event in the period, and it is
        # one range of an index instead of a lookup per id. (For a past period it would be
        # nearly every issue changed since, and the ids are cheaper.)
        relevant.append(col(Issue.updated_at) >= START)
    if dialect == "postgresql":
        # One pass over the heap for the union of the indexes (a BitmapOr).
        issue = pick(or_(*relevant)).subquery("p")
    else:
        # SQLite scans the whole table for such an OR; a UNION keeps each part on its index.
        issue = union(*(pick(condition) for condition in relevant)).subquery("p")

    status, deadline = issue.c.status, issue.c.deadline_at
    closed_at, rectified_at = issue.c.closed_at, issue.c.rectified_at
    counted = status.not_in(ENDED_WITHOUT_FIX)
    due = and_(_within(deadline), counted, or_(deadline <= NOW, closed_at.is_not(None)))
    dispatched = and_(
        events.c.dispatches > 0, counted, or_(rectified_at.is_not(None), deadline <= NOW)
    )
    closed_in_period = _within(closed_at)
    dispatched_now = status == S.DISPATCHED
    keys: list[Any] = [issue.c.org_unit_id]
    if by_category_and_status:
        # With the names the answer shows, so that no other query is needed for them.
        keys += [
            col(OrgUnit.code).label("org_unit"),
            issue.c.category_code.label("category"),
            col(Category.name).label("category_name"),
            col(Category.unit).label("category_unit"),
            status,
        ]
    query = (
        select_columns(
            *keys,
            _count_if(_within(issue.c.reported_at)).label("reported"),
            _count_if(closed_in_period).label("closed_in_period"),
            func.sum(case((closed_in_period, issue.c.quantity))).label("quantity"),
            _count_if(due).label("due"),
            _count_if(and_(due, closed_at < END)).label("closed"),
            _count_if(and_(due, closed_at <= deadline)).label("closed_on_time"),
            _count_if(dispatched).label("dispatched"),
            _count_if(and_(dispatched, rectified_at <= deadline)).label("rectified_on_time"),
            _count_if(or_(due, dispatched)).label("volume"),
            _count_if(
                and_(deadline < CUT, counted, or_(closed_at.is_(None), closed_at >= CUT))
            ).label("overdue_open"),
            _count_if(status.in_(OPEN)).label("open"),
            _count_if(and_(dispatched_now, deadline < NOW)).label("overdue"),
            _count_if(and_(dispatched_now, deadline >= NOW, deadline < SOON)).label(
                "due_within_24h"
            ),
            func.coalesce(func.sum(events.c.submitted), 0).label("rectifications_submitted"),
            func.coalesce(func.sum(events.c.failed), 0).label("verify_fail"),
        )
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
)


def _id_among(dialect: str, issue_ids: Any) -> ColumnElement[bool]:
    """Issue.id in a small set of ids, looked up by primary key on every engine."""
    if dialect == "postgresql":
        # `= ANY(array)` makes PostgreSQL probe the primary key once per id (a bitmap index
        # scan beside the others); with `IN (subquery)` it may prefer to read the whole table.
        ids = select_columns(func.array_agg(issue_ids)).scalar_subquery()
        return col(Issue.id) == any_(cast(ids, ARRAY(Integer)))
    return col(Issue.id).in_(select_columns(issue_ids))


def _columns(session: Session, query: Executable, params: dict[str, Any] | None = None) -> Columns:
    """The result of a Core query (in the session's transaction), column by column."""
    result = session.connection().execute(query, params)
    keys = list(result.keys())
    rows = result.all()
    columns = zip(*rows, strict=True) if rows else [() for _ in keys]
    return dict(zip(keys, columns, strict=True))


@dataclass(frozen=True)
class Unit:
    id: int
    code: str
    name: str
    kind: str
    path: str

    def lineage(self) -> list[int]:
        """The ids from the top of the tree down to this unit."""
        return [int(part) for part in self.path.strip("/").split("/") if part]


def _units(session: Session) -> dict[int, Unit]:
    wanted = (OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.kind, OrgUnit.path)
    columns = _columns(session, select_columns(*(col(c) for c in wanted)))
    return {row[0]: Unit(*row) for row in zip(*columns.values(), strict=True)}


# --- /stats ----------------------------------------------------------------------------------


class Counts(BaseModel):
    total: int = Field(description="issues reported in the period")
    by_status: dict[str, int] = Field(description="…by their status now")
    by_category: dict[str, int]
    by_org_unit: dict[str, int] = Field(description="…by responsible unit")


class QuantityRow(BaseModel):
    category: str
    name: str
    unit: str
    quantity: float = Field(description="summed over the issues closed in the period")
    issues: int


class Stats(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime = Field(description="the end of the period, excluded")
    org_unit: str | None
    counts: Counts
    open: int = Field(description="open now (reported, accepted, dispatched, rectified)")
    overdue: int = Field(description="dispatched and past the deadline now")
    due_within_24h: int = Field(description="dispatched, deadline within the next 24 hours")
    quantities: list[QuantityRow]
    indicators: Indicators
    volume: int
    score: float | None
    grade: str | None


def _scope_org(session: Session, user: User, code: str | None) -> OrgUnit | None:
    """The asked org unit, if it lies within the caller's own (403 when not, 422 if unknown)."""
    if not code:
        return None
    org = orgs.by_code(session, code)
    if not orgs.is_within(org, user_org(session, user)):
        raise Forbidden(f"{code} is outside your unit", field="org_unit")
    return org


def period_stats(
    session: Session,
    settings: Settings,
    user: User,
    period: Period,
    org_code: str | None,
    now: datetime,
) -> Stats:
    """Counts, live counts, quantities, indicators and the score of what the caller may see."""
    org = _scope_org(session, user, org_code)
    columns = _period_columns(session, user, org, period, now, by_category_and_status=True)
    tally = Tally.of(columns)
    by_status = dict.fromkeys(S, 0)
    by_category: dict[str, int] = defaultdict(int)
    by_unit: dict[str, int] = defaultdict(int)
    keyed = zip(
        columns["reported"],
        columns["status"],
        columns["category"],
        columns["org_unit"],
        strict=True,
    )
    for reported, status, category, unit in keyed:
        if reported:
            by_status[status] += reported
            by_category[category] += reported
            by_unit[unit] += reported
    return Stats(
        from_=period.start,
        to=period.end,
        org_unit=org.code if org else None,
        counts=Counts(
            total=sum(by_status.values()),
            by_status={str(status): n for status, n in by_status.items()},
            by_category=_nonzero(by_category),
            by_org_unit=_nonzero(by_unit),
        ),
        open=sum(columns["open"]),
        overdue=sum(columns["overdue"]),
        due_within_24h=sum(columns["due_within_24h"]),
        quantities=_quantities(columns),
        indicators=indicators(tally),
        volume=tally.volume,
        # The scope is its own peer group: full volume band when it had work.
        score=(value := score(tally, volume_band(tally.volume, tally.volume), settings)),
        grade=grade(value),
    )


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in sorted(counts.items()) if n}


def _quantities(columns: Columns) -> list[QuantityRow]:
    issues: dict[str, int] = defaultdict(int)
    amounts: dict[str, float] = defaultdict(float)
    names: dict[str, tuple[str, str]] = {}
    closed = zip(
        columns["category"],
        columns["category_name"],
        columns["category_unit"],
        columns["closed_in_period"],
        columns["quantity"],
        strict=True,
    )
    for category, name, unit, count, quantity in closed:
        if count:
            issues[category] += count
            amounts[category] += quantity or 0.0
            names[category] = (name, unit)
    return [
        QuantityRow(
            category=code,
            name=names[code][0],
            unit=names[code][1],
            quantity=round(amounts[code], 2),
            issues=issues[code],
        )
        for code in sorted(issues)
    ]


# --- /rankings -------------------------------------------------------------------------------


class RankingItem(BaseModel):
    rank: int | None = Field(description="1 = best; null for a unit without work in the period")
    org_unit: str
    name: str
    indicators: Indicators
    volume: int
    score: float | None
    grade: str | None
    flag: Literal["red", "black"] | None


class Rankings(BaseModel):
    period: PeriodKind
    from_: datetime = Field(serialization_alias="from")
    to: datetime = Field(description="the end of the period, excluded")
    kind: RankedKind
    items: list[RankingItem]


MIN_UNITS_FOR_FLAGS = 3


def rankings(
    session: Session,
    settings: Settings,
    user: User,
    period_kind: PeriodKind,
    day: date,
    kind: RankedKind,
    now: datetime,
) -> Rankings:
    """The units of `kind` within the caller's unit, ranked by score, with red and black flags."""
    period = calendar_period(period_kind, check_day(day, "date"), settings.zone)
    mine = user_org(session, user)
    units = _units(session)
    ranked = {u.id: u for u in units.values() if u.kind == kind and u.path.startswith(mine.path)}
    # Each unit's issues count for the ranked unit it is, or lies under.
    owner = {
        u.id: next((i for i in reversed(u.lineage()) if i in ranked), None) for u in units.values()
    }
    columns = _period_columns(session, user, None, period, now, by_category_and_status=False)
    rows_of: dict[int, list[int]] = {unit_id: [] for unit_id in ranked}
    for row, org_unit_id in enumerate(columns["org_unit_id"]):
        unit_id = owner.get(org_unit_id)
        if unit_id is not None:
            rows_of[unit_id].append(row)
    tallies = {unit_id: Tally.of(columns, rows) for unit_id, rows in rows_of.items()}
    busiest = max((t.volume for t in tallies.values()), default=0)
    items = [_item(ranked[i], t, busiest, settings) for i, t in tallies.items()]
    items.sort(
        key=lambda item: (item.score is None, -(item.score or 0), -item.volume, item.org_unit)
    )
    with_work = [item for item in items if item.volume > 0]
    for position, item in enumerate(with_work, start=1):
        item.rank = position
    if len(with_work) >= MIN_UNITS_FOR_FLAGS:
        with_work[0].flag = "red"
        with_work[-1].flag = "black"
    return Rankings(
        period=period_kind,
        from_=period.start,
        to=period.end,
        kind=kind,
        items=items,
    )


def _item(unit: Unit, tally: Tally, busiest: int, settings: Settings) -> RankingItem:
    value = score(tally, volume_band(tally.volume, busiest), settings)
    return RankingItem(
        rank=None,
        org_unit=unit.code,
        name=unit.name,
        indicators=indicators(tally),
        volume=tally.volume,
        score=value,
        grade=grade(value),
        flag=None,
    )
