"""Request dependencies: settings, the session, the current user and role gates.

Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in the
threadpool, and each such hop costs more than the work of these (measured: seven hops made a
third of an authenticated request's time). Only what reads the database runs there.
"""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app import gate
from app.config import Settings
from app.db import get_engine, get_read_engine
from app.errors import Forbidden, PreconditionRequired, Unauthenticated, VersionConflict, english
from app.models import Issue, Role, User
from app.models.base import MAX_ID, as_aware, utcnow
from app.models.issue import IssueStatus
from app.services import idempotency, moments, signing
from app.services.issue_list import IssueFilters
from app.services.objects import ObjectStore
from app.services.permissions import get_visible, may_read_evidence
from app.services.signing import PhotoLinks, Signer
from app.services.storage import Storage


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_storage(settings: SettingsDep) -> Storage:
    """This replica's local folder: the temp files that uploads are spooled into."""
    return Storage(settings.upload_dir)


StorageDep = Annotated[Storage, Depends(get_storage)]


async def get_store(request: Request) -> ObjectStore:
    """The object store of originals and derivatives (opened once, in create_app)."""
    store: ObjectStore = request.app.state.store
    return store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


async def get_signer(request: Request, settings: SettingsDep) -> Signer:
    """The photo links' signer, read from the database by the app's first request that needs it
    (requests racing there read the same row: services/app_secrets.py)."""
    signer: Signer | None = getattr(request.app.state, "signer", None)
    if signer is None:
        signer = await run_in_threadpool(signing.load_signer, settings)
        request.app.state.signer = signer
    return signer


SignerDep = Annotated[Signer, Depends(get_signer)]


async def get_photo_links(signer: SignerDep) -> PhotoLinks:
    """Signed photo links for this answer (services/signing.py: one expiry per window)."""
    return signer.links(utcnow())


PhotoLinksDep = Annotated[PhotoLinks, Depends(get_photo_links)]


async def get_session(request: Request, settings: SettingsDep) -> AsyncIterator[Session]:
    # GET and HEAD only read (no route behind them writes): they take the read engine.
    reads = request.method in ("GET", "HEAD")
    engine = (get_read_engine if reads else get_engine)(settings.database_url)
    # Opening a session does no I/O (it connects on first use). Closing a writer's may (a
    # rollback); closing a reader's only hands its connection back (on PostgreSQL, autocommit
    # leaves nothing to roll back; on SQLite, ending a read transaction touches no page).
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
    finally:
        if reads:
            session.close()
        else:
            await run_in_threadpool(session.close)


SessionDep = Annotated[Session, Depends(get_session)]


async def get_english(request: Request) -> bool:
    """The reader asked for English (Accept-Language: en…): texts for people follow it."""
    return english(request)


English = Annotated[bool, Depends(get_english)]

_bearer = HTTPBearer(auto_error=False)


async def get_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated(gate.NO_TOKEN)
    return credentials.credentials


TokenDep = Annotated[str, Depends(get_token)]


async def get_current_user(request: Request, session: SessionDep, _token: TokenDep) -> User:
    """The token's user, as app/gate.py looked it up before the body was read: no second
    query. The user and their unit join the request's session (no I/O), where the scope checks
    find the unit (permissions.user_org) without a query."""
    caller = gate.caller_of(request.scope)
    if caller is None:  # a dead token (or, outside /api/v1, one the gate never looked up)
        raise Unauthenticated(gate.BAD_TOKEN)
    session.add(caller.user)
    session.add(caller.org)
    session.info["caller_org_unit"] = caller.org  # held: the identity map holds rows weakly
    return caller.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise Forbidden("Only admins may do this")
    return user


AdminUser = Annotated[User, Depends(require_admin)]


async def get_if_match(if_match: Annotated[str | None, Header()] = None) -> int:
    """The issue version a write is made against (If-Match: "<version>")."""
    if if_match is None:
        raise PreconditionRequired()
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise VersionConflict(f"If-Match {if_match!r} is not a version of this issue")
    return int(text)


IfMatchVersion = Annotated[int, Depends(get_if_match)]


async def get_idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str | None:
    """The Idempotency-Key of a write that may be retried (1–200 characters)."""
    return idempotency.check_key(key)


IdempotencyKey = Annotated[str | None, Depends(get_idempotency_key)]
IssueId = Annotated[int, Path(ge=1, le=MAX_ID)]
PhotoId = Annotated[int, Path(ge=1, le=MAX_ID)]


def get_current_issue(issue_id: IssueId, session: SessionDep, user: CurrentUser) -> Issue:
    """The issue in the path, if the caller may see it (404 otherwise)."""
    return get_visible(session, issue_id, user)


CurrentIssue = Annotated[Issue, Depends(get_current_issue)]


async def get_evidence_issue(issue: CurrentIssue, user: CurrentUser) -> Issue:
    """The issue, if the caller may also read its originals and audit trail."""
    if not may_read_evidence(user, issue):
        raise Forbidden(
            "Originals, events and evidence are for supervisors, auditors, admins and the reporter"
        )
    return issue


EvidenceIssue = Annotated[Issue, Depends(get_evidence_issue)]


async def get_issue_filters(
    settings: SettingsDep,
    status: Annotated[list[IssueStatus] | None, Query()] = None,
    category: str | None = None,
    org_unit: str | None = None,
    overdue: bool | None = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    updated_since: datetime | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    reported_by: Annotated[
        Literal["me"] | None, Query(description="me: only the issues you reported (我的上报)")
    ] = None,
    extension_pending: Annotated[
        bool | None, Query(description="true: a 延期申请 awaits a supervisor's decision")
    ] = None,
) -> IssueFilters:
    """The filters of GET /api/v1/issues, shared by the map and the ledger exports."""
    aware = as_aware(updated_since, settings.zone) if updated_since else None
    since = moments.check_moment(aware, "updated_since") if aware else None
    return IssueFilters(
        status or [],
        category,
        org_unit,
        overdue,
        bbox,
        since,
        q,
        reported_by_me=reported_by == "me",
        extension_pending=extension_pending,
    )


IssueFiltersDep = Annotated[IssueFilters, Depends(get_issue_filters)]
