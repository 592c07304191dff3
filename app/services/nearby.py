"""Open issues near a point (附近已有 2 个同类问题): the phone before a report, the supervisor
choosing a duplicate."""

import math
from datetime import datetime

from sqlmodel import Session, col, select

from app.models import Issue, User
from app.models.geo import Crs
from app.models.nearby import NearbyIssue, NearbyIssues
from app.services.geo import EARTH_RADIUS_M, distance_m, to_wgs84
from app.services.issues import OPEN_STATUSES
from app.services.permissions import visible_issues
from app.services.present import issues_public
from app.services.signing import PhotoLinks

DEFAULT_RADIUS_M = 100.0
MAX_RADIUS_M = 5000.0
MAX_ITEMS = 50
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180


def nearby_issues(
    session: Session,
    user: User,
    lat: float,
    lon: float,
    *,
    radius_m: float,
    category: str | None,
    crs: Crs,
    now: datetime,
    links: PhotoLinks,
) -> NearbyIssues:
    """The open issues the caller may see within radius_m of the point, nearest first."""
    lat, lon = to_wgs84(lat, lon, crs)
    # A box around the circle narrows the rows read; the distance decides.
    d_lat = radius_m / METRES_PER_DEGREE
    d_lon = d_lat / max(math.cos(math.radians(lat)), 1e-6)
    query = select(Issue).where(
        visible_issues(session, user),
        col(Issue.status).in_(OPEN_STATUSES),
        col(Issue.lat).between(lat - d_lat, lat + d_lat),
        col(Issue.lon).between(lon - d_lon, lon + d_lon),
    )
    if category:
        query = query.where(Issue.category_code == category)
    found = [(distance_m(lat, lon, i.lat, i.lon), i.id or 0, i) for i in session.exec(query)]
    near = sorted(f for f in found if f[0] <= radius_m)[:MAX_ITEMS]
    publics = issues_public(session, [i for _, _, i in near], user, now, crs, links=links)
    items = [
        NearbyIssue(**public.model_dump(), distance_m=round(d, 1))
        for public, (d, _, _) in zip(publics, near, strict=True)
    ]
    return NearbyIssues(radius_m=radius_m, items=items)
