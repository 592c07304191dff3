"""The audit trail's anchors: signed checkpoints, the public key, and one issue's verdict."""

from datetime import date
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import PlainTextResponse

from app.deps import CurrentUser, EvidenceIssue, SessionDep, SettingsDep
from app.errors import Forbidden, ValidationFailed
from app.models.base import MAX_ID, Text, utcnow
from app.models.checkpoint import CheckpointPage
from app.openapi import problem_responses
from app.routers.api import ONE_ITEM_ERRORS, authenticated_router
from app.services import audit_search, checkpoints, verification

router = authenticated_router(tags=["audit"])


@router.get("/api/v1/audit/checkpoints", responses=problem_responses(Forbidden, ValidationFailed))
def list_checkpoints(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    issue_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> CheckpointPage:
    """Signed chain heads of the issues you may see (Ed25519), with the public key."""
    return checkpoints.listing(session, settings, user, issue_id=issue_id, after=after, limit=limit)


@router.get("/api/v1/audit/issues", responses=problem_responses(Forbidden, ValidationFailed))
def search_issues(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    q: Annotated[Text | None, Query(max_length=100, description="code or text")] = None,
    org_unit: Annotated[Text | None, Query(max_length=40)] = None,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
    flag: Annotated[Text | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """The auditor's search: by code or text, office, reporting period (days), photo flag."""
    return audit_search.search(
        session,
        settings,
        user,
        q=q,
        org_unit=org_unit,
        date_from=date_from,
        date_to=date_to,
        flag=flag,
        limit=limit,
        now=utcnow(),
    )


@router.get(
    "/api/v1/issues/{issue_id}/verification",
    response_model=dict[str, Any],
    responses=problem_responses(Forbidden, *ONE_ITEM_ERRORS),
)
def issue_verification(
    issue: EvidenceIssue, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Whether the issue's hash chain, its rows, checkpoints and originals hold now."""
    return verification.issue_verdict(session, settings, issue)


@router.get("/api/v1/audit/public-key", response_class=PlainTextResponse)
def public_key(settings: SettingsDep) -> PlainTextResponse:
    """The PEM public key that verifies the checkpoints (any signed-in user; the operator
    publishes it beyond: `gridproof checkpoint --public-key`)."""
    key = checkpoints.private_key(settings).public_key()
    return PlainTextResponse(
        checkpoints.public_key_pem(key), headers={"X-Key-Id": checkpoints.key_id(key)}
    )
