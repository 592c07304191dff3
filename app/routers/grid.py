"""The grid: its cells (list and GeoJSON) and the open issues near a point.

Included before the issues router: /api/v1/issues/nearby must not be read as an issue id.
"""

from typing import Annotated

from fastapi import Query, Response
from fastapi.responses import JSONResponse

from app.deps import CurrentUser, PhotoLinksDep, SessionDep
from app.errors import ValidationFailed
from app.models.base import utcnow
from app.models.geo import Crs
from app.models.grid import GridCellPublic
from app.models.nearby import NearbyIssues
from app.openapi import problem_responses
from app.responses import model_json
from app.routers.api import authenticated_router
from app.services import grid, nearby

router = authenticated_router(prefix="/api/v1", tags=["grid"])
ERRORS = problem_responses(ValidationFailed)

CrsParam = Annotated[Crs, Query(description="coordinate system: wgs84, gcj02, bd09")]


@router.get("/grid", response_model=list[GridCellPublic], responses=ERRORS)
def list_grid(session: SessionDep, user: CurrentUser) -> list[GridCellPublic]:
    """The current grid cells whose responsible unit is yours or below it."""
    return grid.list_cells(session, user)


@router.get(
    "/grid.geojson",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}}, **ERRORS},
)
def grid_geojson(session: SessionDep, user: CurrentUser, crs: CrsParam = Crs.WGS84) -> Response:
    """The same cells as a GeoJSON FeatureCollection, with their open issues."""
    body = grid.feature_collection(session, user, crs)
    return JSONResponse(body, media_type="application/geo+json")


@router.get("/issues/nearby", response_model=NearbyIssues, responses=ERRORS)
def issues_nearby(
    session: SessionDep,
    user: CurrentUser,
    links: PhotoLinksDep,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    category: Annotated[str | None, Query(max_length=40)] = None,
    radius_m: Annotated[
        float, Query(gt=0, le=nearby.MAX_RADIUS_M, allow_inf_nan=False)
    ] = nearby.DEFAULT_RADIUS_M,
    crs: CrsParam = Crs.WGS84,
) -> Response:
    """Open issues you may see within radius_m (default 100 m, at most 5 km), nearest first."""
    found = nearby.nearby_issues(
        session,
        user,
        lat,
        lon,
        radius_m=radius_m,
        category=category,
        crs=crs,
        now=utcnow(),
        links=links,
    )
    return model_json(found)
