"""Dashboards: the period's stats and the rankings of offices, communities and grid cells."""

from datetime import date
from typing import Annotated

from fastapi import Query, Response

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.errors import Forbidden, NotFound, ValidationFailed
from app.models.base import utcnow
from app.openapi import problem_responses
from app.responses import model_json
from app.routers.api import authenticated_router
from app.services import stats as service
from app.services.stats import PeriodKind, RankedKind, Rankings, Stats

router = authenticated_router(prefix="/api/v1", tags=["dashboards"])

MOMENT = "a date (YYYY-MM-DD, the zone's local day) or an ISO 8601 datetime"


@router.get(
    "/stats",
    response_model=Stats,
    # org_unit: unknown (404) or outside the caller's unit (403).
    responses=problem_responses(Forbidden, NotFound, ValidationFailed),
)
def get_stats(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    from_: Annotated[str | None, Query(alias="from", description=f"start: {MOMENT}")] = None,
    to: Annotated[str | None, Query(description=f"end, a date included whole: {MOMENT}")] = None,
    org_unit: Annotated[str | None, Query(description="an org unit within yours")] = None,
) -> Response:
    """Counts, open and overdue, quantities, indicators and the score (default: this week)."""
    now = utcnow()
    period = service.resolve_period(from_, to, settings.zone, now)
    return model_json(service.period_stats(session, settings, user, period, org_unit, now))


@router.get("/rankings", response_model=Rankings, responses=problem_responses(ValidationFailed))
def get_rankings(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    period: PeriodKind = PeriodKind.WEEK,
    day: Annotated[date | None, Query(alias="date", description="a day of the period")] = None,
    kind: RankedKind = RankedKind.OFFICE,
) -> Response:
    """Offices (or communities, grid cells) ranked by score, with red and black flags."""
    now = utcnow()
    day = day or now.astimezone(settings.zone).date()
    return model_json(service.rankings(session, settings, user, period, day, kind, now))
