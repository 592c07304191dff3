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
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from app.config import Settings
from app.errors import Forbidden, ValidationFailed
from app.models import OrgUnit, User
from app.models.issue import IssueStatus
from app.services import orgs, stats_query
from app.services.moments import MAX_YEAR, MIN_YEAR, check_day
from app.services.permissions import user_org
from app.services.stats_query import Columns, QuantityRow, quantities

S = IssueStatus
# Grades by score: the first threshold reached.
GRADES = (("A", 90.0), ("B", 75.0), ("C", 60.0), ("D", 40.0))


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
    columns = stats_query.columns(session, select_columns(*(col(c) for c in wanted)))
    return {row[0]: Unit(*row) for row in zip(*columns.values(), strict=True)}


# --- /stats ----------------------------------------------------------------------------------


class Counts(BaseModel):
    total: int = Field(description="issues reported in the period")
    by_status: dict[str, int] = Field(description="…by their status now")
    by_category: dict[str, int]
    by_org_unit: dict[str, int] = Field(description="…by responsible unit")


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
    columns = stats_query.period_columns(
        session, user, org, (period.start, period.end), now, by_category_and_status=True
    )
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
        quantities=quantities(columns),
        indicators=indicators(tally),
        volume=tally.volume,
        # The scope is its own peer group: full volume band when it had work.
        score=(value := score(tally, volume_band(tally.volume, tally.volume), settings)),
        grade=grade(value),
    )


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in sorted(counts.items()) if n}


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
    columns = stats_query.period_columns(
        session, user, None, (period.start, period.end), now, by_category_and_status=False
    )
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
