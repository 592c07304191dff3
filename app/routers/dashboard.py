"""Dashboards: the period's stats, the rankings of offices, communities and grid cells, and
the flags the command awards."""

from datetime import date
from typing import Annotated

from fastapi import Body, Path, Query, Response

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.errors import BadRequest, Forbidden, NotFound, PeriodNotEnded, ValidationFailed
from app.models.base import utcnow
from app.openapi import problem_responses
from app.responses import model_json
from app.routers.api import authenticated_router
from app.services import periods, rankings_flags, stats_view
from app.services import rankings as service
from app.services.periods import NamedPeriod
from app.services.rankings import GroupBy, RankingPeriod, Rankings
from app.services.rankings_flags import AwardPublic, AwardRequest, FlagHistory
from app.services.stats import RankedKind
from app.services.stats_view import PeriodStats

router = authenticated_router(prefix="/api/v1", tags=["dashboards"])

MOMENT = "a date (YYYY-MM-DD, the zone's local day) or an ISO 8601 datetime"
WEEK = "an ISO week, YYYY-Www (2026-W49)"


@router.get(
    "/stats",
    response_model=PeriodStats,
    # org_unit: unknown (404) or outside the caller's unit (403).
    responses=problem_responses(Forbidden, NotFound, ValidationFailed),
)
def get_stats(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    from_: Annotated[str | None, Query(alias="from", description=f"start: {MOMENT}")] = None,
    to: Annotated[str | None, Query(description=f"end, a date included whole: {MOMENT}")] = None,
    period: Annotated[NamedPeriod | None, Query(description="本周, 上周, 本月, 上月")] = None,
    week: Annotated[str | None, Query(description=WEEK)] = None,
    org_unit: Annotated[str | None, Query(description="an org unit within yours")] = None,
    group_by: Annotated[GroupBy | None, Query(description="figures per unit or cell")] = None,
) -> Response:
    """Counts (by source too), open and overdue, quantities, indicators, the score (default:
    this week; a range of at most a year)."""
    now = utcnow()
    chosen = periods.resolve(period, week, from_, to, settings.zone, now)
    answer = stats_view.period_stats(session, settings, user, chosen, org_unit, group_by, now)
    return model_json(answer)


@router.get("/rankings", response_model=Rankings, responses=problem_responses(ValidationFailed))
def get_rankings(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    period: RankingPeriod = RankingPeriod.WEEK,
    day: Annotated[date | None, Query(alias="date", description="a day of the period")] = None,
    week: Annotated[str | None, Query(description=WEEK)] = None,
    kind: RankedKind = RankedKind.OFFICE,
    group_by: GroupBy = GroupBy.ORG_UNIT,
) -> Response:
    """Offices (or communities, grid cells) ranked by score, with red and black flags (computed
    and awarded) and the trend against the period before."""
    now = utcnow()
    period_kind, day = service.resolve_ranking_period(period, day, week, settings.zone, now)
    answer = service.rankings(
        session, settings, user, period_kind, day, kind, now, group_by, name=period.value
    )
    return model_json(answer)


@router.post(
    "/rankings/{week}/flags",
    status_code=201,
    response_model=AwardPublic,
    # BadRequest: a body that is not JSON at all.
    responses=problem_responses(BadRequest, Forbidden, NotFound, PeriodNotEnded, ValidationFailed),
)
def award_flag(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    week: Annotated[str, Path(description=WEEK)],
    request: Annotated[AwardRequest, Body()],
) -> AwardPublic:
    """The command centre's supervisors award (or take away) a unit's flag for an ended week."""
    return rankings_flags.award_flag(session, settings, user, week, request, utcnow())


@router.get(
    "/rankings/history",
    response_model=FlagHistory,
    responses=problem_responses(Forbidden, NotFound, ValidationFailed),
)
def get_flag_history(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    org_unit: Annotated[str, Query(description="a ranked unit within yours")],
    weeks: Annotated[int, Query(description="how many weeks (1–53)")] = 12,
    week: Annotated[str | None, Query(description=f"the latest, {WEEK}; default: last")] = None,
) -> Response:
    """A unit's rank and flags (computed and awarded) week by week, the latest first."""
    now = utcnow()
    answer = rankings_flags.history(session, settings, user, org_unit, weeks, now, week)
    return model_json(answer)
