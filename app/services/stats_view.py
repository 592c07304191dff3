"""/stats as the dashboard asks for it: the period named, reports counted by source (our grid
workers or an external system: 12345, 随手拍 …), 漏报, and the figures per org unit or grid cell.

The counts and indicators are those of services/stats.py, from the same one aggregate query
(grouped by source too, and by grid cell when asked).
"""

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel, Field
from sqlmodel import Session

from app.config import Settings
from app.models import User
from app.services import grid, stats_query
from app.services.periods import Chosen, PeriodInfo
from app.services.rankings import GroupBy
from app.services.stats import (
    Indicators,
    Stats,
    Tally,
    grade,
    indicators,
    scope_org,
    score,
    stats_of,
    units,
    volume_band,
)

# The key of reports made by Gridproof's own users in by_source.
OWN_SOURCE = "gridproof"


class Group(BaseModel):
    key: str | None = Field(description="the unit's or cell's code (null: issues in no cell)")
    name: str
    worker: str | None = Field(default=None, description="the cell's grid worker")
    reported: int
    open: int
    overdue: int
    missed_reports: int = Field(description="漏报: reported by an external system")
    indicators: Indicators
    volume: int
    score: float | None
    grade: str | None


class PeriodStats(Stats):
    period: PeriodInfo
    by_source: dict[str, int] = Field(
        description=f"issues reported in the period by source ({OWN_SOURCE!r}: our own users)"
    )
    missed_reports: int = Field(
        description="漏报: issues an external system reported in the period inside a grid cell, "
        "counted against the cell's grid worker"
    )
    group_by: GroupBy | None = None
    groups: list[Group] | None = None


def period_stats(
    session: Session,
    settings: Settings,
    user: User,
    chosen: Chosen,
    org_code: str | None,
    group_by: GroupBy | None,
    now: datetime,
) -> PeriodStats:
    """/stats for the chosen period, by source, and per unit or cell when asked."""
    org = scope_org(session, user, org_code)
    extra = ("source", "grid_cell_code") if group_by == GroupBy.GRID_CELL else ("source",)
    period = chosen.period
    columns = stats_query.period_columns(
        session,
        user,
        org,
        (period.start, period.end),
        now,
        by_category_and_status=True,
        extra=extra,
    )
    base = stats_of(columns, period, org, settings)
    by_source: dict[str, int] = defaultdict(int)
    for source, reported in zip(columns["source"], columns["reported"], strict=True):
        if reported:
            by_source[source or OWN_SOURCE] += reported
    groups = None
    if group_by is not None:
        groups = _groups(session, user, settings, columns, group_by)
    return PeriodStats(
        **base.model_dump(),
        period=chosen.info,
        by_source=dict(sorted(by_source.items())),
        missed_reports=sum(columns["missed_reports"]),
        group_by=group_by,
        groups=groups,
    )


def _groups(
    session: Session,
    user: User,
    settings: Settings,
    columns: stats_query.Columns,
    group_by: GroupBy,
) -> list[Group]:
    workers: dict[str | None, str | None] = {}
    if group_by == GroupBy.GRID_CELL:
        keys = list(columns["grid_cell_code"])
        cells = {cell.code: cell for cell in grid.list_cells(session, user)}
        names: dict[str, str] = {code: cell.name for code, cell in cells.items()}
        workers = {code: cell.worker for code, cell in cells.items()}
    else:
        keys = list(columns["org_unit"])
        names = {unit.code: unit.name for unit in units(session).values()}
    rows_of: dict[str | None, list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        rows_of[key].append(row)
    tallies = {key: Tally.of(columns, rows) for key, rows in rows_of.items()}
    busiest = max((t.volume for t in tallies.values()), default=0)
    groups = []
    for key, rows in rows_of.items():
        tally = tallies[key]
        value = score(tally, volume_band(tally.volume, busiest), settings)
        groups.append(
            Group(
                key=key,
                name=(names.get(key) or key) if key else "网格外",
                worker=workers.get(key),
                reported=sum(columns["reported"][i] for i in rows),
                open=sum(columns["open"][i] for i in rows),
                overdue=sum(columns["overdue"][i] for i in rows),
                missed_reports=sum(columns["missed_reports"][i] for i in rows),
                indicators=indicators(tally),
                volume=tally.volume,
                score=value,
                grade=grade(value),
            )
        )
    groups.sort(key=lambda g: (g.key is None, g.key or ""))
    return groups
