"""Rankings: units (or grid cells) ranked by score, with the computed red and black flags, the
flags the command awarded (services/rankings_flags.py) and the trend against the period before.

The indicators, the score and the query are those of /stats (services/stats.py).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlmodel import Session

from app.config import Settings
from app.errors import ValidationFailed
from app.models import User
from app.models.grid import LEVEL_RANK, GridLevel
from app.services import grid, stats_query
from app.services.moments import check_day
from app.services.periods import NamedPeriod, PeriodInfo, info, named_period, previous, week_period
from app.services.permissions import user_org
from app.services.stats import (
    Indicators,
    Period,
    PeriodKind,
    RankedKind,
    Tally,
    calendar_period,
    grade,
    indicators,
    score,
    units,
    volume_band,
)

Flag = Literal["red", "black"]
MIN_UNITS_FOR_FLAGS = 3


class GroupBy(StrEnum):
    ORG_UNIT = "org_unit"
    GRID_CELL = "grid_cell"


class RankingPeriod(StrEnum):
    """A calendar week or month (the one containing `date`), or one named from today."""

    WEEK = "week"
    MONTH = "month"
    THIS_WEEK = "this_week"
    LAST_WEEK = "last_week"
    THIS_MONTH = "this_month"
    LAST_MONTH = "last_month"


def resolve_ranking_period(
    period: RankingPeriod, day: date | None, week: str | None, zone: ZoneInfo, now: datetime
) -> tuple[PeriodKind, date]:
    """The kind of period and a day in it, from `period` and `date`, or from an ISO week."""
    if week:
        if day is not None or period not in (RankingPeriod.WEEK,):
            raise ValidationFailed("give a week or period and date, not both", field="week")
        return PeriodKind.WEEK, week_period(week, zone).start.date()
    if period in (RankingPeriod.WEEK, RankingPeriod.MONTH):
        return PeriodKind(period.value), day or now.astimezone(zone).date()
    if day is not None:
        raise ValidationFailed(f"period={period} names its own dates: no date", field="date")
    named = named_period(NamedPeriod(period.value), zone, now)
    kind = PeriodKind.WEEK if period.endswith("week") else PeriodKind.MONTH
    return kind, named.start.date()


class Award(BaseModel):
    """A flag the command awarded (or took away: flag null) for the period."""

    flag: Flag | None
    note: str
    awarded_by: str
    awarded_at: datetime


class Trend(BaseModel):
    """Against the period before."""

    rank: int | None = Field(description="the rank then")
    score: float | None = Field(description="the score then")
    direction: Literal["up", "down", "same", "new"] | None = Field(
        description="the rank moved up (better), down, stayed; new: unranked before"
    )


class RankingItem(BaseModel):
    rank: int | None = Field(description="1 = best; null for a unit without work in the period")
    org_unit: str = Field(description="the unit's code (the cell's code with group_by=grid_cell)")
    name: str
    indicators: Indicators
    volume: int
    score: float | None
    grade: str | None
    flag: Flag | None = Field(description="computed from the score: the suggestion")
    awarded: Award | None = Field(default=None, description="the command's decision, if any")
    final_flag: Flag | None = Field(
        default=None, description="the awarded flag once the command decided the period, else flag"
    )
    missed_reports: int = Field(default=0, description="漏报: external reports in its cells")
    reported: int = Field(default=0, description="issues reported in the period")
    trend: Trend | None = None


class Rankings(BaseModel):
    period: PeriodKind
    from_: datetime = Field(serialization_alias="from")
    to: datetime = Field(description="the end of the period, excluded")
    kind: RankedKind
    group_by: GroupBy = GroupBy.ORG_UNIT
    period_info: PeriodInfo
    flags_decided: bool = Field(
        default=False, description="the command awarded flags for this period (final_flag)"
    )
    items: list[RankingItem]


@dataclass(frozen=True)
class Ranked:
    """One ranked unit or cell: its code, name and the rows of the aggregate that are its."""

    code: str
    name: str
    rows: list[int]


def rankings(
    session: Session,
    settings: Settings,
    user: User,
    period_kind: PeriodKind,
    day: date,
    kind: RankedKind,
    now: datetime,
    group_by: GroupBy = GroupBy.ORG_UNIT,
    *,
    with_trend: bool = True,
    name: str | None = None,
) -> Rankings:
    """The units of `kind` (or the grid cells) within the caller's unit, ranked by score, with
    red and black flags, the command's awards, and the trend against the period before."""
    from app.services import rankings_flags  # the awards read rankings back (history)

    period = calendar_period(period_kind, check_day(day, "date"), settings.zone)
    items = ranked_items(session, settings, user, period, kind, group_by, now)
    if with_trend:
        before = previous(period, period_kind, settings.zone)
        then = ranked_items(session, settings, user, before, kind, group_by, now)
        _add_trend(items, {item.org_unit: item for item in then})
    decided = False
    if group_by == GroupBy.ORG_UNIT and period_kind == PeriodKind.WEEK:
        decided = rankings_flags.apply_awards(session, period, items)
    for item in items:
        if not decided:
            item.final_flag = item.flag
    return Rankings(
        period=period_kind,
        from_=period.start,
        to=period.end,
        kind=kind,
        group_by=group_by,
        period_info=info(period, name or period_kind.value, settings.zone),
        flags_decided=decided,
        items=items,
    )


def ranked_items(
    session: Session,
    settings: Settings,
    user: User,
    period: Period,
    kind: RankedKind,
    group_by: GroupBy,
    now: datetime,
) -> list[RankingItem]:
    """Every unit (or cell) in the caller's scope, ranked, with the computed flags."""
    extra = ("grid_cell_code",) if group_by == GroupBy.GRID_CELL else ()
    window = (period.start, period.end)
    columns = stats_query.period_columns(
        session, user, None, window, now, by_category_and_status=False, extra=extra
    )
    if group_by == GroupBy.GRID_CELL:
        groups = _cells(session, user, columns["grid_cell_code"])
    else:
        groups = _units_of_kind(session, user, kind, columns["org_unit_id"])
    tallies = [(group, Tally.of(columns, group.rows)) for group in groups]
    busiest = max((t.volume for _, t in tallies), default=0)
    items = [_item(g, t, busiest, settings, columns) for g, t in tallies]
    rank(items)
    return items


def rank(items: list[RankingItem]) -> None:
    """Sort by score (ties: larger volume, then code); rank those with work; flag the ends."""
    items.sort(
        key=lambda item: (item.score is None, -(item.score or 0), -item.volume, item.org_unit)
    )
    with_work = [item for item in items if item.volume > 0]
    for position, item in enumerate(with_work, start=1):
        item.rank = position
    if len(with_work) >= MIN_UNITS_FOR_FLAGS:
        with_work[0].flag = "red"
        with_work[-1].flag = "black"


def _units_of_kind(
    session: Session, user: User, kind: RankedKind, unit_of_row: Iterable[int]
) -> list[Ranked]:
    mine = user_org(session, user)
    every = units(session)
    ranked = {u.id: u for u in every.values() if u.kind == kind and u.path.startswith(mine.path)}
    # Each unit's issues count for the ranked unit it is, or lies under.
    owner = {
        u.id: next((i for i in reversed(u.lineage()) if i in ranked), None) for u in every.values()
    }
    rows_of: dict[int, list[int]] = {unit_id: [] for unit_id in ranked}
    for row, org_unit_id in enumerate(unit_of_row):
        unit_id = owner.get(org_unit_id)
        if unit_id is not None:
            rows_of[unit_id].append(row)
    return [Ranked(ranked[i].code, ranked[i].name, rows) for i, rows in rows_of.items()]


def _cells(session: Session, user: User, cell_of_row: Iterable[str | None]) -> list[Ranked]:
    """The finest current cells in the caller's scope; an issue counts for the cell it was
    routed to."""
    cells = grid.list_cells(session, user)
    finest = max((cell.level for cell in cells), key=_level_rank, default=None)
    rows_of: dict[str, list[int]] = {c.code: [] for c in cells if c.level == finest}
    for row, code in enumerate(cell_of_row):
        if code in rows_of:
            rows_of[code].append(row)
    names = {cell.code: cell.name for cell in cells}
    return [Ranked(code, names[code], rows) for code, rows in rows_of.items()]


def _level_rank(level: str) -> int:
    return LEVEL_RANK[GridLevel(level)]


def _item(
    group: Ranked, tally: Tally, busiest: int, settings: Settings, columns: stats_query.Columns
) -> RankingItem:
    value = score(tally, volume_band(tally.volume, busiest), settings)
    return RankingItem(
        rank=None,
        org_unit=group.code,
        name=group.name,
        indicators=indicators(tally),
        volume=tally.volume,
        score=value,
        grade=grade(value),
        flag=None,
        missed_reports=sum(columns["missed_reports"][i] for i in group.rows),
        reported=sum(columns["reported"][i] for i in group.rows),
    )


def _add_trend(items: list[RankingItem], before: dict[str, RankingItem]) -> None:
    for item in items:
        then = before.get(item.org_unit)
        if item.rank is None:
            direction = None
        elif then is None or then.rank is None:
            direction = "new"
        else:
            direction = (
                "up" if item.rank < then.rank else "down" if item.rank > then.rank else "same"
            )
        item.trend = Trend(
            rank=then.rank if then else None,
            score=then.score if then else None,
            direction=direction,
        )
