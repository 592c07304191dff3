"""The answer of GET /api/v1/issues/nearby: open issues near a point, nearest first."""

from pydantic import BaseModel

from app.models.issue import IssuePublic


class NearbyIssue(IssuePublic):
    # Great-circle distance from the asked point, rounded to 0.1 m.
    distance_m: float


class NearbyIssues(BaseModel):
    radius_m: float
    items: list[NearbyIssue]
